"""The local server's rules, in process: AMP over in-memory transports and a fake clock.

Fast counterparts of the TCP tests in test_server.py (same rules, no processes) for what is awkward over real
sockets: a client that never answers (the per-call timeout) and one that answers an
invalid action.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.test import iosim

from export.client import ClientProtocol, TournamentClient
from export.protocol import Auth, EndGame, Error, Message, Ready, StartGame, Step
from export.server import MAX_BOX_BYTES, LocalServer, ServerProtocol

TOKENS = {"token-a": "alice", "token-b": "bob", "token-c": "carol"}


class Still:
    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(4)


class RawClient(amp.AMP):
    """A hand-written client whose Step answer is chosen by the test (or never comes)."""

    def __init__(self, token: str, action: list[float] | None) -> None:
        super().__init__()
        self.token, self.action = token, action
        self.errors: list[str] = []
        self.messages: list[str] = []
        self.ends: list[tuple[bool, list[float]]] = []
        self.steps = 0
        self.readies = 0

    @Auth.responder
    def auth(self) -> dict:
        return {"token": self.token.encode(), "version": 1}

    @Ready.responder
    def ready(self) -> dict:
        self.readies += 1
        return {"ready": True}

    @StartGame.responder
    def start(self, game_id: bytes) -> dict:
        return {}

    @Step.responder
    def step(self, obv: list[float]) -> Any:
        self.steps += 1
        return defer.Deferred() if self.action is None else {"action": self.action}

    @EndGame.responder
    def end(self, result: bool, stats: list[float]) -> dict:
        self.ends.append((result, stats))
        return {}

    @Error.responder
    def error(self, msg: bytes) -> dict:
        self.errors.append(msg.decode())
        return {}

    @Message.responder
    def message(self, msg: bytes) -> dict:
        self.messages.append(msg.decode())
        return {}


class RawStepAnswer(RawClient):
    """Answers every Step with `raw` as the encoded `action` value, whatever it holds."""

    def __init__(self, token: str, raw: bytes) -> None:
        super().__init__(token, [0.0] * 4)
        self.raw = raw

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        if box.get(b"_command") == b"Step":
            self.steps += 1
            amp.AmpBox({b"_answer": box[b"_ask"], b"action": self.raw})._sendTo(self.boxSender)
        else:
            super().ampBoxReceived(box)


class Hub:
    """A LocalServer and in-memory connections to it."""

    def __init__(self, **options: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.out = io.StringIO()
        self.server = LocalServer(tokens=TOKENS, reactor=self.reactor, console=Console(file=self.out), **options)
        self.pumps: list[iosim.IOPump] = []
        self.server_sides: list[ServerProtocol] = []

    def attach(self, client: amp.AMP) -> None:
        server_side = ServerProtocol(self.server)
        self.server_sides.append(server_side)
        self.pumps.append(
            iosim.connect(server_side, iosim.makeFakeServer(server_side), client, iosim.makeFakeClient(client))
        )

    def run(self) -> None:
        """Move data until every connection is quiet."""
        while any([pump.pump() for pump in self.pumps]):
            pass

    def wait(self, seconds: float) -> None:
        """Let `seconds` of the fake clock pass, moving data as it goes."""
        for _ in range(int(seconds * 10)):
            self.reactor.advance(0.1)
            self.run()


def tournament_client(hub: Hub, token: str) -> TournamentClient:
    return TournamentClient(Still(), token, "local", 1, reactor=hub.reactor, console=Console(file=io.StringIO()))


def test_full_game_in_memory() -> None:
    hub = Hub(games=1, seed=5)
    clients = [tournament_client(hub, "token-a"), tournament_client(hub, "token-b")]
    for client in clients:
        hub.attach(ClientProtocol(client))
    hub.run()
    (report,) = hub.server.reports
    assert report.reason == "finished" and len(report.round_winners) == 4
    assert report.players == ("alice", "bob")
    # two still players: no goals, every round runs to the time limit (251 steps)
    assert report.steps == 4 * 251 and report.scores == [0, 0] and report.winner is None
    for client in clients:
        assert client.stats.games == 1 and client.stats.draws == 1


def test_unknown_token_is_refused() -> None:
    hub = Hub()
    intruder = RawClient("token-x", [0.0] * 4)
    hub.attach(intruder)
    hub.run()
    assert intruder.errors == ["authentication failed: unknown access token"]
    assert "token-x" not in hub.out.getvalue()


def test_timeout_aborts_the_game_and_the_other_player_wins() -> None:
    hub = Hub(timeout=10.0)
    slow, fine = RawClient("token-a", None), RawClient("token-b", [0.0] * 4)
    hub.attach(slow)
    hub.attach(fine)
    hub.run()
    assert slow.steps == 1 and not hub.server.reports
    hub.reactor.advance(9.9)
    hub.run()
    assert not hub.server.reports  # not yet
    hub.reactor.advance(0.2)
    hub.run()
    (report,) = hub.server.reports
    assert report.reason == "alice timed out (10 s)"
    assert report.scores == [0, 0] and report.winner == 1
    assert slow.errors == ["alice timed out (10 s)"] and slow.ends == []
    assert fine.messages == ["Authentication successful", "game aborted: alice timed out (10 s)"]
    assert fine.ends == [(True, [0.0, 0.0])]


def test_invalid_action_aborts_the_game() -> None:
    hub = Hub()
    cheat, fine = RawClient("token-a", [0.0, 2.0, 0.0, 0.0]), RawClient("token-b", [0.0] * 4)
    hub.attach(cheat)
    hub.attach(fine)
    hub.run()
    (report,) = hub.server.reports
    assert report.reason.startswith("alice sent an invalid action")
    assert report.steps == 0
    assert fine.ends == [(True, [0.0, 0.0])]  # the real score, and a win by forfeit
    assert report.winner == 1
    assert cheat.errors and cheat.errors[0].startswith("alice sent an invalid action")
    # the cheat is being dropped: only the other player is queued for the next game
    assert [conn.name for conn in hub.server._waiting] == ["bob"]


# 13,107 zeros fill one AMP value (5 bytes each); its repr is as long, so an abort
# message quoting it would not fit in one AMP value either
MANY_NUMBERS = amp.ListOf(amp.Float()).toString([0.0] * 13107)
HUGE_NUMBER = b"\xff\x78" + b"x" * 65400  # one list element of 65,400 bytes that is no number
# 2,000 numbers (10,000 bytes): within the box limit, refused by the Step answer's own bound
SOME_NUMBERS = amp.ListOf(amp.Float()).toString([0.0] * 2000)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (MANY_NUMBERS, "alice sent a box over 16384 bytes"),
        (HUGE_NUMBER, "alice sent a box over 16384 bytes"),
        (SOME_NUMBERS, "alice sent an invalid answer (10000 bytes, at most 1024)"),
    ],
    ids=["13107-numbers", "65k-garbage", "2000-numbers"],
)
def test_oversized_step_answer_loses_the_game_and_the_server_goes_on(raw: bytes, reason: str) -> None:
    hub = Hub(games=2, seed=1)
    cheat, fine = RawStepAnswer("token-a", raw), RawClient("token-b", [0.0] * 4)
    hub.attach(cheat)
    hub.attach(fine)
    hub.run()
    (report,) = hub.server.reports
    assert report.reason == reason
    assert report.winner == 1 and report.players == ("alice", "bob")
    assert fine.ends == [(True, [0.0, 0.0])]
    assert fine.messages[-1] == f"game aborted: {reason}"
    assert fine.readies == 2  # asked again after the aborted game
    hub.wait(3.0)
    assert not hub.server_sides[0].connected  # the offender is sent away
    assert "alice" not in [conn.name for conn in hub.server._waiting]
    # a legitimate newcomer plays a whole game against the waiting player; then the server stops
    carol = tournament_client(hub, "token-c")
    hub.attach(ClientProtocol(carol))
    hub.run()
    assert [r.reason for r in hub.server.reports] == [report.reason, "finished"]
    assert len(hub.server.reports[1].round_winners) == 4 and carol.stats.games == 1
    assert hub.server._stopping


def box_bytes_held(conn: ServerProtocol) -> int:
    """Bytes of the unfinished box and the unparsed input a server connection holds."""
    box = conn._currentBox or {}
    return sum(len(k) + len(v) for k, v in box.items()) + len(conn._unprocessed)


def test_an_endless_box_drops_the_sender_while_a_game_goes_on() -> None:
    hub = Hub(games=1, seed=2)
    players = [tournament_client(hub, "token-a"), tournament_client(hub, "token-b")]
    attacker = amp.AMP()  # never logs in: it only streams one box that never ends
    hub.attach(attacker)
    for player in players:
        hub.attach(ClientProtocol(player))
    flood = hub.server_sides[0]
    held = []
    for index in range(100):  # 6.5 MB of 64 KiB values under distinct keys
        attacker.transport.write(b"\x00\x05" + b"k%04d" % index + b"\xff\xff" + b"v" * 65535)
        hub.pumps[0].pump()
        held.append(box_bytes_held(flood))
        if flood.transport.disconnecting:
            break
    assert flood.transport.disconnecting, f"still connected holding {held[-1]} bytes"
    assert max(held) <= MAX_BOX_BYTES + 65537
    hub.run()
    assert not flood.connected
    (report,) = hub.server.reports
    assert report.reason == "finished" and len(report.round_winners) == 4
    assert all(player.stats.games == 1 for player in players)


def test_a_client_calling_the_server_is_dropped() -> None:
    """The server takes no calls: a peer sending them is broken or flooding, so it goes."""
    hub = Hub(games=1, seed=2)
    caller = RawClient("token-c", [0.0] * 4)
    players = [tournament_client(hub, "token-a"), tournament_client(hub, "token-b")]
    hub.attach(caller)
    answers = [caller.callRemote(Ready) for _ in range(3)]
    for answer in answers:
        answer.addErrback(lambda _: None)
    hub.run()
    hub.wait(3.0)
    assert not hub.server_sides[0].connected
    assert caller.errors == ["called 'Ready'; the server takes no calls"]
    for player in players:
        hub.attach(ClientProtocol(player))
    hub.run()
    (report,) = hub.server.reports
    assert report.reason == "finished" and report.players == ("alice", "bob")


def test_a_token_already_connected_is_refused() -> None:
    hub = Hub(games=1, seed=3)
    first, copy = RawClient("token-a", [0.0] * 4), RawClient("token-a", [0.0] * 4)
    hub.attach(first)
    hub.attach(copy)
    hub.run()
    assert copy.errors == ["authentication failed: this token is already connected"]
    assert first.errors == [] and not hub.server.reports  # never paired with itself
    hub.wait(3.0)
    assert not hub.server_sides[1].connected and hub.server_sides[0].connected
    # once the first connection is gone the token may connect again, and plays
    hub.server_sides[0].transport.loseConnection()
    hub.run()
    again, bob = tournament_client(hub, "token-a"), tournament_client(hub, "token-b")
    hub.attach(ClientProtocol(again))
    hub.attach(ClientProtocol(bob))
    hub.run()
    (report,) = hub.server.reports
    assert report.reason == "finished" and report.players == ("alice", "bob")
    assert again.stats.games == 1 and bob.stats.games == 1
