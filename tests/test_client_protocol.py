"""The client's answers to every server call, over the real AMP wire format (in memory).

The server side is a plain `amp.AMP` calling the client's protocol through Twisted's
in-memory transport (`twisted.test.iosim`), so every value goes through AMP's encoding;
the reactor is a fake clock, so backoff delays are checked without waiting.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import TOKEN
from rich.console import Console
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test import iosim

from export.client import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    ClientProtocol,
    TournamentClient,
    game_outcome,
    safe_action,
    sanitize_observation,
)
from export.protocol import PROTOCOL_VERSION, Auth, EndGame, Error, Message, Ready, StartGame, Step

VECTORS = Path(__file__).parent / "data" / "vectors.npz"


class Counting:
    """A policy that counts resets and remembers what it saw."""

    def __init__(self, action: Any = (0.5, -0.5, 0.0, 1.0)) -> None:
        self.action = action
        self.resets = 0
        self.seen: list[np.ndarray] = []

    def reset(self) -> None:
        self.resets += 1

    def act(self, obs: np.ndarray) -> Any:
        self.seen.append(obs)
        if isinstance(self.action, Exception):
            raise self.action
        return self.action


class Wire:
    """A client connected in memory to a bare AMP server that makes the calls."""

    def __init__(self, tmp_path: Path, policy: Any = None, **options: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.out = io.StringIO()
        self.log_path = tmp_path / "client.jsonl"
        self.policy = policy if policy is not None else Counting()
        self.client = TournamentClient(
            self.policy,
            TOKEN,
            "127.0.0.1",
            4711,
            reactor=self.reactor,
            log_path=self.log_path,
            console=Console(file=self.out, width=200),
            **options,
        )
        self.connect()

    def connect(self) -> None:
        self.server = amp.AMP()
        self.protocol = ClientProtocol(self.client)
        self.pump = iosim.connect(
            self.server, iosim.makeFakeServer(self.server), self.protocol, iosim.makeFakeClient(self.protocol)
        )

    def call(self, command: type[amp.Command], **arguments: Any) -> Any:
        results: list[Any] = []
        self.server.callRemote(command, **arguments).addBoth(results.append)
        self.pump.flush()
        assert results, "no answer"
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def step(self, obs: Any) -> list[float]:
        return self.call(Step, obv=list(obs))["action"]

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def close_from_server(self) -> None:
        self.server.transport.loseConnection()
        self.pump.flush()


def reset_obs(puck_x: float = 1.5) -> list[float]:
    obs = [0.0] * 18
    obs[0], obs[6], obs[12] = -3.0, 3.0, puck_x
    return obs


def valid(action: list[float]) -> bool:
    return len(action) == 4 and all(math.isfinite(v) and -1.0 <= v <= 1.0 for v in action)


def test_auth_ready_and_a_normal_step(tmp_path: Path) -> None:
    wire = Wire(tmp_path)
    answer = wire.call(Auth)
    assert answer == {"token": TOKEN.encode(), "version": PROTOCOL_VERSION}
    assert wire.call(Ready) == {"ready": True}
    wire.call(StartGame, game_id=bytes(range(16)))
    assert wire.step(reset_obs()) == [0.5, -0.5, 0.0, 1.0]
    started = wire.events()[-1]
    assert started["event"] == "game_started"
    assert started["game_id"] == "00010203-0405-0607-0809-0a0b0c0d0e0f"


MALFORMED = {
    "empty": [],
    "short": [0.1] * 17,
    "long": [0.1] * 19,
    "nan": reset_obs()[:5] + [math.nan] + reset_obs()[6:],
    "inf": [math.inf] * 18,
    "minus_inf": [-math.inf] + [0.0] * 17,
    "huge": [1e308] * 9 + [-1e308] * 9,
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_step_answers_a_valid_action_and_warns(tmp_path: Path, name: str) -> None:
    wire = Wire(tmp_path)
    wire.call(StartGame, game_id=b"x" * 16)
    assert valid(wire.step(MALFORMED[name]))
    warnings = [e for e in wire.events() if e["event"] == "warning"]
    assert len(warnings) == 1 and "observation" in warnings[0]["message"]
    assert "warning" in wire.out.getvalue()
    # and the client carries on normally
    assert wire.step(reset_obs()) == [0.5, -0.5, 0.0, 1.0]
    for seen in wire.policy.seen:
        assert seen.shape == (18,) and np.all(np.isfinite(seen))


@pytest.mark.parametrize(
    "action", [(np.nan, 0, 0, 0), (2.0, -3.0, 0.5, np.inf), (1, 2, 3), "left", RuntimeError("boom")]
)
def test_broken_policy_answers_a_valid_action(tmp_path: Path, action: Any) -> None:
    wire = Wire(tmp_path, policy=Counting(action))
    wire.call(StartGame, game_id=b"x" * 16)
    assert valid(wire.step(reset_obs()))
    assert any(e["event"] == "warning" for e in wire.events())


def test_step_without_start_game_still_answers(tmp_path: Path) -> None:
    wire = Wire(tmp_path)
    assert valid(wire.step(reset_obs()))
    # a game that ends without EndGame is counted as interrupted when the next one starts
    wire.call(StartGame, game_id=b"x" * 16)
    assert wire.client.stats.interrupted == 1 and wire.client.stats.games == 0


def test_onnx_agent_answers_through_the_wire(tmp_path: Path, agent_file: Path) -> None:
    from export.runtime import OnnxAgent

    path = agent_file
    wire = Wire(tmp_path, policy=OnnxAgent(path))
    reference = OnnxAgent(path)
    wire.call(StartGame, game_id=b"x" * 16)
    data = np.load(VECTORS)
    for obs in data["ep000/obs"][:30]:
        np.testing.assert_allclose(wire.step(obs), reference.act(obs), atol=1e-6)


def test_recurrent_state_reset_at_every_round(tmp_path: Path) -> None:
    """A game stream of 4 recorded rounds (terminal observations dropped, as the server does)."""
    data = np.load(VECTORS)
    wire = Wire(tmp_path)
    wire.call(StartGame, game_id=b"g" * 16)
    assert wire.policy.resets == 1
    for episode in (0, 1, 2, 3):
        for obs in data[f"ep{episode:03d}/obs"][:-1]:
            wire.step(obs)
        assert wire.policy.resets == episode + 1
    wire.call(EndGame, result=True, stats=[3.0, 1.0])
    game = [e for e in wire.events() if e["event"] == "game"][0]
    assert game["rounds_seen"] == 4 and game["outcome"] == "win"


def test_an_onnx_agent_s_action_repeat_restarts_at_every_round(tmp_path: Path) -> None:
    """The server asks every frame; an agent of repeat 2 runs its graph on the first frame of
    every detected round and every second frame after it (round 1 has an odd length, 251)."""
    from helpers import build, metadata

    from export.runtime import OnnxAgent

    path = build(tmp_path / "repeat2.onnx", meta=metadata(action_repeat="2"))
    wire = Wire(tmp_path, policy=OnnxAgent(path))
    graph_calls = 0
    run_graph = wire.policy.run_graph

    def counted(*args: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nonlocal graph_calls
        graph_calls += 1
        return run_graph(*args)

    wire.policy.run_graph = counted
    reference = OnnxAgent(path)
    data = np.load(VECTORS)
    wire.call(StartGame, game_id=b"g" * 16)
    for episode in (0, 1, 2, 3):
        reference.reset()
        frames = data[f"ep{episode:03d}/obs"][:-1]
        graph_calls = 0
        for obs in frames:
            np.testing.assert_allclose(wire.step(obs), reference.act(obs), atol=1e-6)
        assert graph_calls == (len(frames) + 1) // 2


def test_end_game_outcomes_totals_and_game_limit(tmp_path: Path) -> None:
    wire = Wire(tmp_path, games=4)
    for result, stats in ((True, [3.0, 1.0]), (False, [2.0, 2.0]), (False, [1.0, 2.0])):
        wire.call(StartGame, game_id=b"x" * 16)
        wire.call(EndGame, result=result, stats=stats)
    s = wire.client.stats
    assert (s.games, s.wins, s.draws, s.losses, s.rounds_won, s.rounds_lost) == (3, 1, 1, 1, 6.0, 5.0)
    assert wire.call(Ready) == {"ready": True}
    wire.call(EndGame, result=False, stats=[math.nan])  # malformed stats: counted, scores unknown
    assert wire.client.stats.losses == 2 and wire.client.stats.rounds_won == 6.0
    games = [e for e in wire.events() if e["event"] == "game"]
    assert [g["outcome"] for g in games] == ["win", "draw", "loss", "loss"]
    assert games[-1]["own_score"] is None
    # the 4th game reached the limit: the client closes the connection and finishes OK
    wire.reactor.advance(0)
    wire.pump.flush()
    assert wire.client.done.called
    assert wire.client.done.result == EXIT_OK
    assert "played 4 games" in wire.out.getvalue()


def test_token_never_printed_or_logged(tmp_path: Path) -> None:
    wire = Wire(tmp_path)
    wire.call(Auth)
    wire.call(Message, msg=f"hello {TOKEN}".encode())
    wire.call(Ready)
    wire.call(Error, msg=f"your token {TOKEN} is fine".encode())
    wire.call(StartGame, game_id=b"x" * 16)
    wire.step([math.nan] * 18)
    wire.call(EndGame, result=False, stats=[0.0, 1.0])
    wire.close_from_server()
    wire.reactor.advance(100)
    text = wire.out.getvalue() + wire.log_path.read_text()
    assert TOKEN not in text
    assert "hello ***" in text and "your token *** is fine" in text


def test_redaction_long_and_short_tokens() -> None:
    def redact(token: str, text: str) -> str:
        client = TournamentClient(
            Counting(), token, "h", 1, reactor=MemoryReactorClock(), console=Console(file=io.StringIO())
        )
        return client.redact(text)

    assert redact(TOKEN, f"x{TOKEN}y and {TOKEN}") == "x***y and ***"
    # a short token only as a whole word: ordinary words stay readable
    assert redact("a", "Authentication failed for a.") == "Authentication failed for ***."


def test_wrong_token_is_fatal_without_retry(tmp_path: Path) -> None:
    wire = Wire(tmp_path)
    wire.call(Auth)
    wire.call(Error, msg=b"authentication failed: unknown access token")
    wire.reactor.advance(1.0)  # the client hangs up itself if the server does not
    wire.pump.flush()
    assert wire.client.done.called and wire.client.done.result == EXIT_REFUSED
    wire.reactor.advance(1000)
    assert wire.reactor.tcpClients == []  # no reconnection attempt
    assert "authentication failed" in wire.out.getvalue() and "not retrying" in wire.out.getvalue()


def test_error_after_acceptance_only_reconnects(tmp_path: Path) -> None:
    wire = Wire(tmp_path, retry_delay=0.5)
    wire.call(Auth)
    wire.call(Ready)
    wire.call(Error, msg=b"your opponent left")
    wire.close_from_server()
    assert not wire.client.done.called
    wire.reactor.advance(0.5)
    assert len(wire.reactor.tcpClients) == 1  # reconnecting


def test_message_after_auth_means_accepted(tmp_path: Path) -> None:
    """comprl says "Authentication successful" long before matchmaking asks Ready."""
    wire = Wire(tmp_path, retry_delay=0.5)
    wire.call(Auth)
    wire.call(Message, msg=b"Authentication successful")
    wire.call(Error, msg=b"Timeout after 10s")
    wire.close_from_server()
    assert not wire.client.done.called
    wire.reactor.advance(0.5)
    assert len(wire.reactor.tcpClients) == 1


def test_backoff_doubles_then_gives_up(tmp_path: Path) -> None:
    wire = Wire(tmp_path, max_retries=5, retry_delay=0.5, max_delay=3.0)
    wire.client.connect()
    delays = []
    for attempt in range(6):
        wire.client._factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        if attempt < 5:
            (pending,) = wire.reactor.getDelayedCalls()
            delays.append(pending.getTime() - wire.reactor.seconds())
            wire.reactor.advance(delays[-1])
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert len(wire.reactor.tcpClients) == 6
    assert wire.client.done.result == EXIT_UNREACHABLE
    assert "giving up after 5 retries" in wire.out.getvalue()


def test_connection_drop_mid_game_is_counted_and_retried(tmp_path: Path) -> None:
    wire = Wire(tmp_path, retry_delay=0.25)
    wire.call(Auth)
    wire.call(Ready)
    wire.call(StartGame, game_id=b"x" * 16)
    wire.step(reset_obs())
    wire.server.transport.loseConnection()
    wire.pump.flush()
    assert wire.client.stats.interrupted == 1
    wire.reactor.advance(0.25)
    assert len(wire.reactor.tcpClients) == 1
    wire.connect()  # the server is back
    wire.call(Auth)
    assert wire.call(Ready) == {"ready": True}
    assert any(e["event"] == "game_interrupted" for e in wire.events())
    assert wire.client.stats.games == 0
    wire.client.stop()
    wire.pump.flush()
    assert wire.client.done.result == EXIT_OK


def test_helpers() -> None:
    assert sanitize_observation("abc")[0] is None
    obs, problem = sanitize_observation([1.0] * 18)
    assert problem is None and obs.dtype == np.float64
    assert safe_action([0.2, 0.3, -5, 5]) == ([0.2, 0.3, -1.0, 1.0], None)
    assert game_outcome(True, [1, 0])[0] == "win"
    assert game_outcome(False, [1, 1])[0] == "draw"
    assert game_outcome(False, "junk")[0] == "loss"
    with pytest.raises(ValueError, match="max_retries"):
        TournamentClient(Counting(), TOKEN, "h", 1, reactor=MemoryReactorClock(), max_retries=-1)
    with pytest.raises(ValueError, match="retry_delay"):
        TournamentClient(Counting(), TOKEN, "h", 1, reactor=MemoryReactorClock(), retry_delay=0)


def test_garbage_bytes_drop_the_connection_and_retry(tmp_path: Path) -> None:
    wire = Wire(tmp_path, retry_delay=0.5)
    wire.call(Auth)
    wire.call(Ready)
    wire.server.transport.write(b"\xff" * 300)
    wire.pump.flush()
    assert wire.client._connection is None and not wire.client.done.called
    wire.reactor.advance(0.5)
    assert len(wire.reactor.tcpClients) == 1
