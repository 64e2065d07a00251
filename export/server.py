"""A small local tournament server speaking the comprl protocol (`hockey-agent serve`).

It plays the server's side of the tournament (docs/game.md): authenticate clients by token,
pair ready clients, play games of 4 rounds of the bundled game in NORMAL mode (player 2
sees the mirrored observation), score = rounds won, and report each game. Every call it
makes times out after `timeout` seconds, like the course's server. It exists to test the
client end to end and to let two local agents meet over the real protocol; it needs the
game (the `train` extra), which it imports only when a game starts.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from twisted.internet import defer, protocol
from twisted.internet.error import ConnectionDone
from twisted.protocols import amp
from twisted.python.failure import Failure

from agent.game.rules import ROUNDS_PER_GAME, game_winner, is_valid_action, player1_starts
from export.protocol import (
    DEFAULT_TIMEOUT_S,
    PROTOCOL_VERSION,
    AnswerTooLong,
    Auth,
    EndGame,
    Error,
    Message,
    Ready,
    StartGame,
    Step,
)


def read_tokens(path: str | Path) -> dict[str, str]:
    """Tokens from a file: one per line, `NAME TOKEN` or just `TOKEN`; '#' starts a comment.

    Returns token -> player name (a bare token is named userN by its line).
    """
    tokens: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise ValueError(f"{path}:{number}: expected 'NAME TOKEN' or 'TOKEN', got {len(parts)} fields")
        name, token = (parts[0], parts[1]) if len(parts) == 2 else (f"user{len(tokens) + 1}", parts[0])
        if token in tokens:
            raise ValueError(f"{path}:{number}: token listed twice")
        tokens[token] = name
    if not tokens:
        raise ValueError(f"{path} holds no tokens")
    return tokens


# Longest reason or message text the server sends or logs: a client's answer quoted in an
# abort reason is cut to this, so no message can outgrow AMP's 64 KiB value limit.
MAX_TEXT_CHARS = 200
# Largest box a peer may send (its keys and values while it is unfinished, plus the input not
# yet parsed), before or after logging in. The largest legitimate box is an Auth answer with
# its token or a Step answer of 4 floats (about 120 bytes); a peer going beyond is cut off.
MAX_BOX_BYTES = 16 * 1024
# Seconds a dropped client has to close its end before the connection is cut.
DROP_GRACE_S = 2.0


def shorten(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` cut to at most `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    tail = f"... ({len(text)} characters)"
    return text[: max(0, limit - len(tail))] + tail


class GameAborted(Exception):
    """A game cannot go on (a player left, timed out or answered an invalid action)."""

    def __init__(self, reason: str, culprit: ServerProtocol) -> None:
        reason = shorten(reason)
        super().__init__(reason)
        self.reason = reason
        self.culprit = culprit


class ServerProtocol(amp.AMP):
    """The server's end of one client connection: calls with a timeout, nothing to answer.

    What a peer sends is bounded, logged in or not: a box (with the input not yet parsed)
    over MAX_BOX_BYTES cuts the connection at once, and so the server never holds more
    than that per connection. The server takes no calls (comprl clients make none), so a
    peer calling a command is dropped instead of being answered again and again.
    """

    def __init__(self, server: LocalServer) -> None:
        super().__init__()
        self.server = server
        self.name = "?"
        self.token: str | None = None  # set once authenticated against the server's tokens
        self.connected = False
        self.closing = False  # dropped: the connection closes shortly, never pair it again
        self._box_bytes = 0  # keys and values (with their length prefixes) of the unfinished box
        self._deaf = False  # input refused: whatever else the peer sends is ignored
        self.refused: str | None = None  # why its input was refused (the reason a game it was in ends)

    def dataReceived(self, data: bytes) -> None:
        if self._deaf:
            return
        super().dataReceived(data)
        # what is left unparsed is at most one unfinished key or value (up to 64 KiB)
        if not self._deaf and self._box_bytes + len(getattr(self, "_unprocessed", b"")) > MAX_BOX_BYTES:
            self._refuse_input(f"sent a box over {MAX_BOX_BYTES} bytes", cut=True)

    def stringReceived(self, string: bytes) -> None:
        if self._deaf:
            return
        self._box_bytes += len(string) + 2
        if self._box_bytes > MAX_BOX_BYTES:
            self._refuse_input(f"sent a box over {MAX_BOX_BYTES} bytes", cut=True)
            return
        super().stringReceived(string)
        if self._currentBox is None:  # the box is complete (or none was started)
            self._box_bytes = 0

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        if amp.COMMAND in box:
            command = box[amp.COMMAND][:40].decode("ascii", errors="replace")
            self._refuse_input(f"called {command!r}; the server takes no calls", cut=False)
            return
        super().ampBoxReceived(box)

    def _refuse_input(self, reason: str, cut: bool) -> None:
        """Ignore the peer from now on and close: at once (`cut`) or after telling it why."""
        self._deaf = True
        self.refused = reason
        self.server.input_refused(self, reason)
        if cut:
            self.closing = True
            self._cut()
        else:
            self.drop(reason)

    def connectionMade(self) -> None:
        super().connectionMade()
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)  # one small call per step: never wait to batch
        self.connected = True
        self.server.client_connected(self)

    def connectionLost(self, reason: Failure) -> None:
        self.connected = False
        super().connectionLost(reason)
        self.server.client_left(self)

    def call(self, command: type[amp.Command], **arguments: Any) -> defer.Deferred:
        """callRemote with the server's per-call timeout (a TimeoutError on expiry)."""
        return self.callRemote(command, **arguments).addTimeout(self.server.timeout, self.server.reactor)

    def notify(self, command: type[amp.Command], text: str) -> None:
        """Send an Error or Message (cut to MAX_TEXT_CHARS); never raises.

        A peer that is gone or cannot take the message is ignored: telling a client
        must never stop a game from being recorded or the server from going on.
        """
        if not self.connected:
            return
        try:
            self.call(command, msg=shorten(text).encode("utf-8", errors="replace")).addErrback(lambda _: None)
        except Exception:  # e.g. the transport failed while writing
            pass

    def drop(self, reason: str) -> None:
        """Tell the client why, then close the connection; never raises.

        The connection is closed after a moment (so the message can travel) and cut
        DROP_GRACE_S later if the peer has not let it close by then (e.g. it stopped
        reading, so our last write never drains).
        """
        self.closing = True
        self.notify(Error, reason)
        if self.transport is None:
            return
        try:
            self.server.reactor.callLater(0.2, self._close)
            self.server.reactor.callLater(0.2 + DROP_GRACE_S, self._cut)
        except Exception:
            self._cut()

    def _close(self) -> None:
        if self.connected and self.transport is not None:
            self.transport.loseConnection()

    def _cut(self) -> None:
        if self.connected and self.transport is not None:
            abort = getattr(self.transport, "abortConnection", self.transport.loseConnection)
            abort()


@dataclass
class GameReport:
    """One finished or aborted game, as logged."""

    game_id: str
    players: tuple[str, str]
    scores: list[int] = field(default_factory=lambda: [0, 0])
    round_winners: list[int] = field(default_factory=list)
    steps: int = 0
    reason: str = "finished"
    # index of the winning player (0 or 1), None for a draw; an aborted game is lost by
    # the player at fault whatever the score
    winner: int | None = None
    duration_s: float = 0.0


class LocalServer:
    """Pairs ready clients and plays their games; stops after `games` games (0: never).

    With tokens given, a token is one player with one live connection: a second
    connection with a token that is already connected is refused (Error, then closed),
    so a player can never be paired against itself or hold two places in the queue.
    Refusing the newcomer rather than replacing the older connection keeps a game in
    progress from being aborted by a copy started by mistake, and the copy exits at once
    with the reason instead of the two taking turns to push each other out. A client
    that reconnects after losing its connection is not affected: the server sees the
    old connection close (a closed socket, a failed call or its timeout) and frees the
    token. Without tokens every connection is its own anonymous player.
    """

    def __init__(
        self,
        *,
        tokens: dict[str, str] | None,
        games: int = 0,
        timeout: float = DEFAULT_TIMEOUT_S,
        seed: int | None = None,
        log_path: str | Path | None = None,
        console: Console | None = None,
        reactor: Any = None,
    ) -> None:
        if games < 0:
            raise ValueError(f"games must be >= 0 (0 = no limit), got {games}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.tokens = tokens
        self.games_limit = games
        self.timeout = timeout
        self.seed = seed
        self.console = console or Console()
        self.reactor = reactor
        self.reports: list[GameReport] = []
        self._log = open(log_path, "a", encoding="utf-8") if log_path is not None else None
        self._waiting: list[ServerProtocol] = []
        self._by_token: dict[str, ServerProtocol] = {}  # the live connection of each token
        self._playing: set[ServerProtocol] = set()
        self._anonymous = 0
        self._started = 0
        self._was_player_one: dict[str, bool] = {}
        self._stopping = False

    def factory(self) -> protocol.ServerFactory:
        """A Twisted factory that gives each connection a ServerProtocol bound to this server."""
        factory = protocol.ServerFactory()
        factory.buildProtocol = lambda addr: ServerProtocol(self)  # type: ignore[method-assign]
        return factory

    def _write(self, event: str, **fields: Any) -> None:
        if self._log is not None:
            self._log.write(json.dumps({"time": time.time(), "event": event, **fields}) + "\n")
            self._log.flush()

    # -- clients ----------------------------------------------------------------------
    @defer.inlineCallbacks
    def client_connected(self, conn: ServerProtocol) -> Any:
        """Authenticate, then ask Ready and queue the client for a game."""
        try:
            answer = yield conn.call(Auth)
        except Exception:
            conn.drop("authentication failed: no answer to Auth")
            return
        if answer["version"] != PROTOCOL_VERSION:
            conn.drop(f"wrong protocol version {answer['version']}, expected {PROTOCOL_VERSION}")
            return
        token = answer["token"].decode("utf-8", errors="replace")
        if self.tokens is None:
            self._anonymous += 1
            conn.name = f"player{self._anonymous}"
        elif token in self.tokens:
            holder = self._by_token.get(token)
            if holder is not None and holder.connected and not holder.closing:
                self.console.print(f"refused a second connection for {self.tokens[token]}", style="red")
                self._write("refused", reason="token already connected", player=self.tokens[token])
                conn.drop("authentication failed: this token is already connected")
                return
            conn.name = self.tokens[token]
            conn.token = token
            self._by_token[token] = conn
        else:
            self.console.print("refused a client: unknown token", style="red")
            self._write("refused", reason="unknown token")
            conn.drop("authentication failed: unknown access token")
            return
        self.console.print(f"{conn.name} connected", style="green")
        self._write("connected", player=conn.name)
        conn.notify(Message, "Authentication successful")  # as the comprl server does
        yield self._ask_ready(conn)

    @defer.inlineCallbacks
    def _ask_ready(self, conn: ServerProtocol) -> Any:
        if self._stopping or not conn.connected or conn.closing:
            return
        try:
            answer = yield conn.call(Ready)
        except Exception:
            conn.drop("no answer to Ready")
            return
        if answer["ready"] and conn.connected and not conn.closing and not self._stopping:
            self._waiting.append(conn)
            self._pair()

    def input_refused(self, conn: ServerProtocol, reason: str) -> None:
        """Log a peer whose input was refused (it is being disconnected)."""
        who = conn.name if conn.name != "?" else "a client not logged in"
        self.console.print(shorten(f"dropped {who}: {reason}"), style="red", markup=False)
        self._write("dropped", player=conn.name, reason=shorten(reason))

    def client_left(self, conn: ServerProtocol) -> None:
        if conn.token is not None and self._by_token.get(conn.token) is conn:
            del self._by_token[conn.token]
        if conn in self._waiting:
            self._waiting.remove(conn)
        self._write("disconnected", player=conn.name)

    def _pair(self) -> None:
        # a client dropped while it waited (it is being disconnected) is never paired
        self._waiting = [conn for conn in self._waiting if conn.connected and not conn.closing]
        while len(self._waiting) >= 2 and self._may_start():
            first, second = self._waiting.pop(0), self._waiting.pop(0)
            # a client that was player 1 in its last game is player 2 now, so sides alternate
            if self._was_player_one.get(first.name, False):
                first, second = second, first
            self._was_player_one[first.name] = True
            self._was_player_one[second.name] = False
            self._started += 1
            self._run_game(first, second)

    def _may_start(self) -> bool:
        return not self._stopping and (self.games_limit == 0 or self._started < self.games_limit)

    # -- games ---------------------------------------------------------------------------
    @defer.inlineCallbacks
    def _run_game(self, p1: ServerProtocol, p2: ServerProtocol) -> Any:
        game_id = uuid.uuid4()
        report = GameReport(game_id=str(game_id), players=(p1.name, p2.name))
        self._playing.update((p1, p2))
        start = time.monotonic()
        game_index = self._started - 1
        try:
            yield self._gather([self._call(conn, StartGame, game_id=game_id.bytes) for conn in (p1, p2)])
            yield self._play_rounds(p1, p2, report, game_index)
            winner = game_winner(report.round_winners)
            report.winner = None if winner == 0 else (0 if winner == 1 else 1)
        except GameAborted as abort:
            report.reason = abort.reason
            other = p2 if abort.culprit is p1 else p1
            report.winner = 0 if other is p1 else 1
            abort.culprit.drop(abort.reason)
            other.notify(Message, f"game aborted: {abort.reason}")
        except Exception as exc:  # a fault of the server's own (the game engine): nobody's loss
            report.reason = shorten(f"server error: {exc!r}")
            report.winner = None
            for conn in (p1, p2):
                conn.notify(Message, f"game aborted: {report.reason}")
        report.duration_s = round(time.monotonic() - start, 3)
        self._playing.difference_update((p1, p2))
        self._report(report)
        ends = []
        for index, conn in enumerate((p1, p2)):
            if conn.connected and not conn.closing:
                own, other_score = report.scores[index], report.scores[1 - index]
                ends.append(
                    conn.call(
                        EndGame, result=report.winner == index, stats=[float(own), float(other_score)]
                    ).addErrback(lambda _: None)
                )
        yield defer.DeferredList(ends)
        if self._may_start():
            for conn in (p1, p2):
                self._ask_ready(conn)
        elif self.games_limit and len(self.reports) >= self.games_limit and not self._playing:
            self.stop()

    def _call(self, conn: ServerProtocol, command: type[amp.Command], **arguments: Any) -> defer.Deferred:
        """One call; a failure becomes GameAborted naming the player at fault."""

        def blame(failure: Failure) -> None:
            if conn.refused is not None:  # cut off for what it sent: say so, not just "disconnected"
                raise GameAborted(f"{conn.name} {conn.refused}", conn)
            if failure.check(AnswerTooLong):
                raise GameAborted(f"{conn.name} sent an invalid answer ({failure.getErrorMessage()})", conn)
            if failure.check(defer.TimeoutError):
                raise GameAborted(f"{conn.name} timed out ({self.timeout:g} s)", conn)
            if failure.check(ConnectionDone) or not conn.connected:
                raise GameAborted(f"{conn.name} disconnected", conn)
            raise GameAborted(f"{conn.name} failed: {failure.getErrorMessage()}", conn)

        return conn.call(command, **arguments).addErrback(blame)

    @staticmethod
    def _gather(calls: list[defer.Deferred]) -> defer.Deferred:
        """Both answers, or the first GameAborted (the other call's failure is consumed)."""
        return defer.gatherResults(calls, consumeErrors=True).addErrback(lambda f: f.value.subFailure)

    @defer.inlineCallbacks
    def _play_rounds(self, p1: ServerProtocol, p2: ServerProtocol, report: GameReport, game_index: int) -> Any:
        from agent.game import HockeyEnv  # the game needs Box2D (the train extra)

        env = HockeyEnv()
        for round_index in range(ROUNDS_PER_GAME):
            seed = None if self.seed is None else self.seed + ROUNDS_PER_GAME * game_index + round_index
            obs, _ = env.reset(one_starting=player1_starts(round_index), seed=seed)
            while True:
                views = (obs, env.obs_agent_two())
                answers = yield self._gather(
                    [self._call(conn, Step, obv=[float(v) for v in view]) for conn, view in zip((p1, p2), views)]
                )
                actions = []
                for conn, answer in zip((p1, p2), answers):
                    if not is_valid_action(answer["action"]):
                        shown = shorten(repr(answer["action"]), MAX_TEXT_CHARS // 2)
                        raise GameAborted(f"{conn.name} sent an invalid action {shown}", conn)
                    actions.append(np.asarray(answer["action"], dtype=np.float64))
                obs, _, done, _, info = env.step(np.hstack(actions))
                report.steps += 1
                if done:
                    report.round_winners.append(int(info["winner"]))
                    report.scores = [report.round_winners.count(1), report.round_winners.count(-1)]
                    break

    def _report(self, report: GameReport) -> None:
        self.reports.append(report)
        s1, s2 = report.scores
        verdict = "draw" if report.winner is None else f"{report.players[report.winner]} wins"
        style = "bold" if report.reason == "finished" else "bold yellow"
        self.console.print(
            f"game {len(self.reports)} {report.game_id[:8]}: {report.players[0]} {s1}:{s2} "
            f"{report.players[1]} ({verdict}, {report.steps} steps, {report.duration_s:.1f} s"
            f"{'' if report.reason == 'finished' else ', ' + report.reason})",
            style=style,
            markup=False,
        )
        self._write("game", **report.__dict__)

    # -- stopping ------------------------------------------------------------------------
    def stop(self) -> None:
        """Close every connection and stop the reactor (the game limit was reached)."""
        if self._stopping:
            return
        self._stopping = True
        self.console.print(f"played {len(self.reports)} games, stopping", style="green")
        self._write("stopped", games=len(self.reports))
        # give the last EndGame answers a moment to travel before the reactor goes
        self.reactor.callLater(0.3, self._shutdown)

    def _shutdown(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.reactor.running:
            self.reactor.stop()


def serve(
    host: str,
    port: int,
    *,
    tokens: dict[str, str] | None,
    games: int = 0,
    timeout: float = DEFAULT_TIMEOUT_S,
    seed: int | None = None,
    log_path: str | Path | None = None,
    console: Console | None = None,
) -> list[GameReport]:
    """Listen on host:port (port 0: any free port, printed) and run until the game limit or Ctrl-C."""
    from twisted.internet import reactor

    console = console or Console()
    server = LocalServer(
        tokens=tokens, games=games, timeout=timeout, seed=seed, log_path=log_path, console=console, reactor=reactor
    )
    listener = reactor.listenTCP(port, server.factory(), interface=host)  # type: ignore[attr-defined]
    actual = listener.getHost().port
    console.print(f"listening on {host}:{actual}", markup=False, highlight=False)
    if tokens is None:
        console.print("no tokens given: any token is accepted", style="yellow")
    reactor.run()  # type: ignore[attr-defined]
    return server.reports


def summary(reports: list[GameReport]) -> dict[str, dict[str, float]]:
    """Per player: games, wins, draws, losses, rounds won and lost over `reports`."""
    table: dict[str, dict[str, float]] = {}
    for report in reports:
        for index, name in enumerate(report.players):
            row = table.setdefault(
                name, {"games": 0, "wins": 0, "draws": 0, "losses": 0, "rounds_won": 0, "rounds_lost": 0}
            )
            own, other = report.scores[index], report.scores[1 - index]
            row["games"] += 1
            row["draws" if report.winner is None else "wins" if report.winner == index else "losses"] += 1
            row["rounds_won"] += own
            row["rounds_lost"] += other
    return table
