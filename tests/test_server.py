"""End to end over loopback TCP: the local server and real client processes.

Every process is a `hockey-agent` command run as `python -m agent.cli ...`, exactly as a
user runs it; results are read from the JSON-lines logs.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    ENV,
    MALFORMED_METADATA,
    OTHER_TOKEN,
    TOKEN,
    build,
    events,
    finish,
    free_port,
    metadata,
    start_client,
    start_server,
)

from agent.game.rules import is_valid_action
from export.server import read_tokens

THIRD_TOKEN = "third-token-4242"


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_onnx_and_scripted_clients_play_full_games(tmp_path: Path, agent_file: Path) -> None:
    port = free_port()
    server = start_server(
        port, tmp_path / "server.jsonl", "--games", "2", "--token", TOKEN, "--token", OTHER_TOKEN, "--seed", "3"
    )
    onnx_client = start_client(port, TOKEN, tmp_path / "onnx.jsonl", str(agent_file), "--games", "2")
    # 'strong' needs the game, installed here (the client extra alone plays keeper, test_client_install.py)
    scripted = start_client(port, OTHER_TOKEN, tmp_path / "scripted.jsonl", "--scripted", "strong", "--games", "2")
    for process in (onnx_client, scripted, server):
        code, out = finish(process)
        assert code == 0, out
        assert TOKEN not in out and OTHER_TOKEN not in out

    games = events(tmp_path / "server.jsonl", "game")
    assert len(games) == 2
    for game in games:
        assert game["reason"] == "finished" and len(game["round_winners"]) == 4
        assert game["scores"] == [game["round_winners"].count(1), game["round_winners"].count(-1)]
    # player 1 alternates between the two clients
    assert {tuple(g["players"]) for g in games} == {("user1", "user2"), ("user2", "user1")}
    for log, name in ((tmp_path / "onnx.jsonl", "user1"), (tmp_path / "scripted.jsonl", "user2")):
        seen = events(log, "game")
        assert len(seen) == 2
        for client_game, server_game in zip(seen, games):
            me = server_game["players"].index(name)
            assert client_game["game_id"] == server_game["game_id"]
            assert [client_game["own_score"], client_game["other_score"]] == [
                server_game["scores"][me],
                server_game["scores"][1 - me],
            ]
            assert client_game["rounds_seen"] == 4  # every server reset detected, no false one
            assert client_game["steps"] == server_game["steps"]
            assert client_game["warnings"] == 0
        assert TOKEN not in log.read_text() and OTHER_TOKEN not in log.read_text()


def test_wrong_token_exits_non_zero_without_retrying(tmp_path: Path, agent_file: Path) -> None:
    port = free_port()
    server = start_server(port, tmp_path / "server.jsonl", "--token", TOKEN)
    try:
        client = start_client(
            port, "not-the-token", tmp_path / "client.jsonl", str(agent_file), "--retry-delay", "0.05"
        )
        code, out = finish(client, timeout=30)
    finally:
        server.terminate()
        finish(server)
    assert code == 3, out
    assert "authentication failed: unknown access token" in out
    assert "not-the-token" not in out
    assert events(tmp_path / "client.jsonl", "retry") == []
    assert len(events(tmp_path / "server.jsonl", "refused")) == 1


def test_unreachable_server_gives_up_with_a_clear_message(tmp_path: Path, agent_file: Path) -> None:
    client = start_client(
        free_port(), TOKEN, tmp_path / "client.jsonl", str(agent_file), "--max-retries", "3", "--retry-delay", "0.05"
    )
    code, out = finish(client, timeout=30)
    assert code == 1, out
    assert "giving up after 3 retries" in out
    assert [row["delay_s"] for row in events(tmp_path / "client.jsonl", "retry")] == [0.05, 0.1, 0.2]


def test_invalid_agent_file_refused_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    client = start_client(free_port(), TOKEN, tmp_path / "client.jsonl", str(bad))
    code, out = finish(client, timeout=30)
    assert code != 0
    assert "cannot use agent file" in out
    assert not (tmp_path / "client.jsonl").exists()


def test_clients_reconnect_after_server_restart(tmp_path: Path, agent_file: Path) -> None:
    port = free_port()
    logs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    first = start_server(port, tmp_path / "first.jsonl", "--token", TOKEN, "--token", OTHER_TOKEN)
    clients = [
        start_client(
            port, TOKEN, logs[0], str(agent_file), "--games", "1", "--retry-delay", "0.2", "--max-retries", "20"
        ),
        start_client(
            port,
            OTHER_TOKEN,
            logs[1],
            "--scripted",
            "shooter",
            "--games",
            "1",
            "--retry-delay",
            "0.2",
            "--max-retries",
            "20",
        ),
    ]
    try:
        # kill the first server in the middle of a game
        wait_for(lambda: all(events(log, "game_started") for log in logs))
        first.terminate()
        finish(first)
        wait_for(lambda: all(events(log, "retry") for log in logs))
        second = start_server(port, tmp_path / "second.jsonl", "--games", "1", "--token", TOKEN, "--token", OTHER_TOKEN)
        results = [finish(client) for client in clients]
        code, out = finish(second)
        assert code == 0, out
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
    for (code, out), log in zip(results, logs):
        assert code == 0, out
        assert len(events(log, "game_interrupted")) == 1
        assert len(events(log, "game")) == 1
        assert len(events(log, "connected")) == 2
    assert len(events(tmp_path / "second.jsonl", "game")) == 1


MALFORMED_SERVER = r"""
import json, math, sys
from twisted.internet import defer, protocol, reactor
from twisted.protocols import amp
from export.protocol import Auth, EndGame, Ready, StartGame, Step

observations = [[], [0.5] * 17, [0.5] * 19, [math.nan] * 18, [math.inf] * 18,
                [-math.inf] * 18, [1e308] * 18, [0.0] * 18]
answers = []

class Caller(amp.AMP):
    def connectionMade(self):
        super().connectionMade()
        self.play()

    @defer.inlineCallbacks
    def play(self):
        yield self.callRemote(Auth)
        yield self.callRemote(Ready)
        yield self.callRemote(StartGame, game_id=b"0123456789abcdef")
        for obs in observations:
            answer = yield self.callRemote(Step, obv=obs)
            answers.append(answer["action"])
        yield self.callRemote(EndGame, result=False, stats=[0.0, 0.0])
        with open(sys.argv[2], "w") as f:
            json.dump(answers, f)
        reactor.stop()

factory = protocol.ServerFactory.forProtocol(Caller)
port = reactor.listenTCP(0, factory, interface="127.0.0.1")
with open(sys.argv[1], "w") as f:
    f.write(str(port.getHost().port))
reactor.callLater(60, reactor.stop)
reactor.run()
"""


def test_malformed_steps_over_tcp(tmp_path: Path, agent_file: Path) -> None:
    port_file, answers_file = tmp_path / "port", tmp_path / "answers.json"
    server = subprocess.Popen(
        [sys.executable, "-c", MALFORMED_SERVER, str(port_file), str(answers_file)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: port_file.exists() and port_file.read_text().strip() != "")
    client = start_client(int(port_file.read_text()), TOKEN, tmp_path / "client.jsonl", str(agent_file), "--games", "1")
    code, out = finish(client)
    assert finish(server)[0] == 0
    assert code == 0, out
    answers = json.loads(answers_file.read_text())
    assert len(answers) == 8 and all(is_valid_action(a) for a in answers)
    assert len(events(tmp_path / "client.jsonl", "warning")) == 3  # repeated problems are not flooded
    assert "warning" in out


def test_read_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text("# the league\nalice aaa\nbbb  # anonymous\n\n")
    assert read_tokens(path) == {"aaa": "alice", "bbb": "user2"}
    path.write_text("a b c\n")
    with pytest.raises(ValueError, match="expected 'NAME TOKEN'"):
        read_tokens(path)
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no tokens"):
        read_tokens(path)


def test_ctrl_c_stops_cleanly(tmp_path: Path, agent_file: Path) -> None:
    port = free_port()
    server = start_server(port, tmp_path / "server.jsonl")
    log = tmp_path / "client.jsonl"
    client = start_client(port, TOKEN, log, str(agent_file))
    try:
        wait_for(lambda: events(log, "accepted"))
        client.send_signal(signal.SIGINT)
        code, out = finish(client, timeout=30)
    finally:
        server.terminate()
        finish(server)
    assert code == 0, out
    assert "stopped" in out and "tournament client" in out  # the summary table
    (last,) = events(log, "finished")
    assert last["exit_code"] == 0 and last["games"] == 0


def test_closed_stdout_does_not_stop_the_client(tmp_path: Path, agent_file: Path) -> None:
    """`hockey-agent client ... | head -1`: the reader goes away, the client plays on."""
    port = free_port()
    server = start_server(port, tmp_path / "server.jsonl", "--games", "1")
    log = tmp_path / "client.jsonl"
    client = start_client(port, TOKEN, log, str(agent_file), "--games", "1")
    assert client.stdout is not None
    client.stdout.readline()
    client.stdout.close()
    other = start_client(port, OTHER_TOKEN, tmp_path / "other.jsonl", "--scripted", "still", "--games", "1")
    assert client.wait(timeout=60) == 0
    for process in (other, server):
        assert finish(process)[0] == 0
    (game,) = events(log, "game")
    assert game["rounds_seen"] == 4


OVERSIZED_CLIENT = r"""
import sys
from twisted.internet import protocol, reactor
from twisted.protocols import amp
from export.protocol import Auth, EndGame, Error, Message, Ready, StartGame, Step

class Oversized(amp.AMP):
    @Auth.responder
    def auth(self):
        return {"token": sys.argv[2].encode(), "version": 1}

    @Ready.responder
    def ready(self):
        return {"ready": True}

    @StartGame.responder
    def start(self, game_id):
        return {}

    @Step.responder
    def step(self, obv):
        return {"action": [0.0] * 2000}  # 10,000 bytes: a box the server reads, but no action

    @EndGame.responder
    def end(self, result, stats):
        return {}

    @Error.responder
    def error(self, msg):
        print("error:", msg.decode()[:80], flush=True)
        return {}

    @Message.responder
    def message(self, msg):
        return {}

    def connectionLost(self, reason):
        print("disconnected", flush=True)
        reactor.stop()

protocol.ClientCreator(reactor, Oversized).connectTCP("127.0.0.1", int(sys.argv[1]))
reactor.callLater(60, reactor.stop)
reactor.run()
"""


def test_oversized_step_answer_over_tcp_loses_and_the_server_goes_on(tmp_path: Path) -> None:
    """A client answering 2,000 numbers loses its game and is disconnected; the others play on."""
    port = free_port()
    log = tmp_path / "server.jsonl"
    tokens = ("--token", TOKEN, "--token", OTHER_TOKEN, "--token", THIRD_TOKEN)
    server = start_server(port, log, "--games", "2", "--seed", "1", *tokens)
    attacker = subprocess.Popen(
        [sys.executable, "-c", OVERSIZED_CLIENT, str(port), THIRD_TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    first = start_client(port, TOKEN, tmp_path / "first.jsonl", "--scripted", "keeper", "--games", "2")
    try:
        wait_for(lambda: events(log, "game"))
        code, out = finish(attacker, timeout=10)
        assert code == 0 and "error: user3 sent an invalid answer" in out and "disconnected" in out, out
        second = start_client(port, OTHER_TOKEN, tmp_path / "second.jsonl", "--scripted", "shooter", "--games", "1")
        for process in (first, second, server):
            code, out = finish(process)
            assert code == 0, out
    finally:
        for process in (server, attacker, first):
            if process.poll() is None:
                process.kill()
    aborted, played = events(log, "game")
    assert aborted["players"] == ["user3", "user1"] or aborted["players"] == ["user1", "user3"]
    assert aborted["reason"].startswith("user3 sent an invalid answer") and len(aborted["reason"]) <= 200
    assert aborted["players"][aborted["winner"]] == "user1"
    assert played["reason"] == "finished" and sorted(played["players"]) == ["user1", "user2"]
    assert [g["outcome"] for g in events(tmp_path / "first.jsonl", "game")][0] == "win"


def test_endless_box_over_tcp_is_cut_off_while_a_game_is_played(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.jsonl"
    server = start_server(port, log, "--games", "1", "--token", TOKEN, "--token", OTHER_TOKEN)
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as flood:
            with pytest.raises(OSError):  # reset or broken pipe once the server cuts it off
                for index in range(2000):  # at most 130 MB
                    flood.sendall(b"\x00\x05" + b"k%04d" % index + b"\xff\xff" + b"v" * 65535)
                    sent += 65542
        assert sent < 4 * 2**20, f"{sent} bytes accepted before the cut"
        clients = [
            start_client(port, TOKEN, tmp_path / "a.jsonl", "--scripted", "keeper", "--games", "1"),
            start_client(port, OTHER_TOKEN, tmp_path / "b.jsonl", "--scripted", "shooter", "--games", "1"),
        ]
        for process in (*clients, server):
            code, out = finish(process)
            assert code == 0, out
    finally:
        if server.poll() is None:
            server.kill()
    (game,) = events(log, "game")
    assert game["reason"] == "finished"
    (dropped,) = events(log, "dropped")
    assert dropped["reason"] == "sent a box over 16384 bytes"


def test_second_connection_with_a_connected_token_is_refused(tmp_path: Path, agent_file: Path) -> None:
    port = free_port()
    log = tmp_path / "server.jsonl"
    server = start_server(port, log, "--games", "1", "--token", TOKEN, "--token", OTHER_TOKEN)
    first = start_client(port, TOKEN, tmp_path / "first.jsonl", str(agent_file), "--games", "1")
    try:
        wait_for(lambda: events(tmp_path / "first.jsonl", "accepted"))
        copy = start_client(port, TOKEN, tmp_path / "copy.jsonl", "--scripted", "still", "--retry-delay", "0.05")
        code, out = finish(copy, timeout=30)
        assert code == 3, out
        assert "this token is already connected" in out and TOKEN not in out
        other = start_client(port, OTHER_TOKEN, tmp_path / "other.jsonl", "--scripted", "keeper", "--games", "1")
        for process in (first, other, server):
            code, out = finish(process)
            assert code == 0, out
    finally:
        for process in (server, first):
            if process.poll() is None:
                process.kill()
    (game,) = events(log, "game")
    assert game["reason"] == "finished" and sorted(game["players"]) == ["user1", "user2"]
    assert [row["reason"] for row in events(log, "refused")] == ["token already connected"]


@pytest.mark.parametrize(
    "case", ["strings", "nested", "nulls", "dict-values", "deep-state", "deep-layout", "huge-state"]
)
def test_client_refuses_malformed_agent_metadata_in_one_line(tmp_path: Path, case: str) -> None:
    from click.testing import CliRunner

    from agent.cli.main import main

    changes, message = MALFORMED_METADATA[case]
    path = build(tmp_path / "bad.onnx", meta=metadata(**changes))
    args = ["client", str(path), "--server-url", "127.0.0.1", "--server-port", str(free_port()), "--token", TOKEN]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: cannot use agent file:") and message in line


def test_a_scripted_player_that_needs_the_game_is_refused_in_one_line_without_it(monkeypatch) -> None:
    from click.testing import CliRunner

    import export.client_cli as client_cli

    monkeypatch.setattr(client_cli, "_has_game", lambda: False)
    args = ["--server-url", "127.0.0.1", "--token", TOKEN, "--scripted", "strong"]
    res = CliRunner().invoke(client_cli.client, args)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "'strong' needs the game (Box2D)" in res.output and "pip install '.[train]'" in res.output
    assert "choices here: still, random, shooter, keeper" in " ".join(res.output.split())
    assert TOKEN not in res.output
