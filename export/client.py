"""The tournament client: play on a comprl server with any `Policy` (an ONNX agent in practice).

The server drives everything (docs/game.md, "What a tournament client sees"): it asks for the token, whether
we are ready, announces games and asks for one action per step. The client's jobs are to
answer every call with something valid whatever the server sends (a tournament game must
never crash mid-round), to reset the agent's recurrent state at every round start (which
the server never announces, see `export.rounds`), to survive dropped connections and
server restarts, and to keep score. The server asks for an action every frame; an
agent trained with an action repeat holds its actions itself (`OnnxAgent`), and the
reset at a round start restarts its repeat, so it decides on the round's first frame.

Runs on the base install only (numpy, onnxruntime, twisted, click, rich): no torch, no
game. The access token is never printed or logged; any server text that echoes it is
redacted.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from twisted.internet import defer, protocol
from twisted.internet.error import ReactorNotRunning
from twisted.protocols import amp
from twisted.python.failure import Failure

from agent.game.rules import ACTION_SIZE, OBS_SIZE
from agent.players.policy import Policy
from export.protocol import (
    PROTOCOL_VERSION,
    Auth,
    EndGame,
    Error,
    Message,
    Ready,
    StartGame,
    Step,
)
from export.rounds import RoundDetector
from export.runtime import repair_observation

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_REFUSED = 3  # distinct from click's usage-error code 2
REDACTED = "***"


def sanitize_observation(values: Any) -> tuple[np.ndarray | None, str | None]:
    """The observation as 18 finite float64 values, or None when it has the wrong size.

    Returns (observation, problem): problem is a short description when the input had
    to be repaired or was refused, else None.
    """
    try:
        obs = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None, "observation is not a list of numbers"
    if obs.shape != (OBS_SIZE,):
        return None, f"observation has {obs.size} values, expected {OBS_SIZE}"
    obs, problems = repair_observation(obs)
    if problems:
        return obs, "observation repaired (" + ", ".join(problems) + " values)"
    return obs, None


def safe_action(action: Any) -> tuple[list[float], str | None]:
    """4 finite floats in [-1, 1] from whatever the policy answered, and a problem or None."""
    try:
        values = np.asarray(action, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return [0.0] * ACTION_SIZE, "policy answered a non-numeric action; acting zeros"
    if values.shape != (ACTION_SIZE,):
        return [0.0] * ACTION_SIZE, f"policy answered {values.size} values, expected {ACTION_SIZE}; acting zeros"
    problem = None
    if not np.all(np.isfinite(values)):
        problem = "policy answered non-finite values; replaced by 0"
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return [float(v) for v in np.clip(values, -1.0, 1.0)], problem


def game_outcome(result: bool, stats: Any) -> tuple[str, float, float]:
    """('win' | 'draw' | 'loss', own score, other score) from an EndGame call.

    The server's `result` is True only for a win; a draw and a loss both send False and
    differ by the scores. Scores that are not two finite numbers become NaN.
    """
    try:
        own, other = (float(v) for v in stats)
    except (TypeError, ValueError):
        own, other = math.nan, math.nan
    if not (math.isfinite(own) and math.isfinite(other)):
        own, other = math.nan, math.nan
    if result:
        return "win", own, other
    return ("draw" if own == other else "loss"), own, other


@dataclass
class ClientStats:
    """Running totals over every game this client finished."""

    games: int = 0
    wins: int = 0
    draws: int = 0
    losses: int = 0
    rounds_won: float = 0.0
    rounds_lost: float = 0.0
    interrupted: int = 0

    def record(self, outcome: str, own: float, other: float) -> None:
        self.games += 1
        if outcome == "win":
            self.wins += 1
        elif outcome == "draw":
            self.draws += 1
        else:
            self.losses += 1
        if math.isfinite(own) and math.isfinite(other):
            self.rounds_won += own
            self.rounds_lost += other


@dataclass
class GameRecord:
    """What the client saw of the game in progress."""

    game_id: str
    started: float = field(default_factory=time.monotonic)
    steps: int = 0
    rounds: int = 0
    warnings: int = 0


class EventLog:
    """Append-only JSON-lines log, one object per event, flushed per line (crash-safe)."""

    def __init__(self, path: str | Path | None) -> None:
        self._file = open(path, "a", encoding="utf-8") if path is not None else None

    def write(self, event: str, **fields: Any) -> None:
        if self._file is None:
            return
        line = json.dumps({"time": time.time(), "event": event, **fields}, allow_nan=False, default=str)
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class ClientProtocol(amp.AMP):
    """One connection to the server: AMP responders that hand every call to the client."""

    def __init__(self, client: TournamentClient) -> None:
        super().__init__()
        self.client = client

    def connectionMade(self) -> None:
        super().connectionMade()
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)  # one small answer per step: never wait to batch
        self.client.connected(self)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.client.connection_ended(reason, failed=False)

    @Auth.responder
    def auth(self) -> dict[str, Any]:
        return self.client.on_auth()

    @Ready.responder
    def ready(self) -> dict[str, Any]:
        return self.client.on_ready()

    @StartGame.responder
    def start_game(self, game_id: bytes) -> dict[str, Any]:
        self.client.on_start_game(game_id)
        return {}

    @Step.responder
    def step(self, obv: list[float]) -> dict[str, Any]:
        return {"action": self.client.on_step(obv)}

    @EndGame.responder
    def end_game(self, result: bool, stats: list[float]) -> dict[str, Any]:
        self.client.on_end_game(result, stats)
        return {}

    @Error.responder
    def error(self, msg: bytes) -> dict[str, Any]:
        self.client.on_error(msg)
        return {}

    @Message.responder
    def message(self, msg: bytes) -> dict[str, Any]:
        self.client.on_message(msg)
        return {}


class _Factory(protocol.ClientFactory):
    """Builds the protocol and reports failed connection attempts to the client."""

    def __init__(self, client: TournamentClient) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> ClientProtocol:
        return ClientProtocol(self.client)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.client.connection_ended(reason, failed=True)


class TournamentClient:
    """Plays on one server until told to stop, reconnecting with exponential backoff.

    `done` fires with the exit code (EXIT_OK after `games` games or `stop()`,
    EXIT_UNREACHABLE after `max_retries` consecutive failed connections, EXIT_REFUSED
    when the server refuses us before accepting us, e.g. a wrong token).
    """

    def __init__(
        self,
        policy: Policy,
        token: str,
        host: str,
        port: int,
        *,
        reactor: Any = None,
        max_retries: int = 8,
        retry_delay: float = 1.0,
        max_delay: float = 30.0,
        games: int = 0,
        log_path: str | Path | None = None,
        console: Console | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if retry_delay <= 0 or max_delay < retry_delay:
            raise ValueError(f"need 0 < retry_delay <= max_delay, got {retry_delay} and {max_delay}")
        if games < 0:
            raise ValueError(f"games must be >= 0 (0 = no limit), got {games}")
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.policy = policy
        self._token = token
        # a real (long) token is redacted wherever it appears; a short test token only as a
        # whole word, so that it does not blank out letters of ordinary words
        word = "{}" if len(token) >= 8 else r"(?<![\w-]){}(?![\w-])"
        self._token_pattern = re.compile(word.format(re.escape(token))) if token else None
        self.host, self.port = host, port
        self.max_retries, self.retry_delay, self.max_delay = max_retries, retry_delay, max_delay
        self.games_limit = games
        self.stats = ClientStats()
        self.detector = RoundDetector()
        self.console = console or Console()
        self.log = EventLog(log_path)
        self.done: defer.Deferred[int] = defer.Deferred()
        self._reactor = reactor
        self._factory = _Factory(self)
        self._connection: ClientProtocol | None = None
        self._accepted = False  # the server sent Ready or a Message on this connection: token good
        self._failures = 0
        self._refusal: str | None = None
        self._stopping = False
        self._game: GameRecord | None = None
        self._mute = False  # set when the console can no longer be written

    # -- helpers -------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """`text` with the access token replaced: for server text (which may echo it) and output.

        The client itself never puts the token into a message or the log.
        """
        return self._token_pattern.sub(REDACTED, text) if self._token_pattern else text

    def _say(self, text: str, style: str = "") -> None:
        if self._mute:
            return
        try:
            self.console.print(self.redact(text), style=style or None, markup=False, highlight=False)
        except (OSError, SystemExit):  # stdout gone (rich exits on a broken pipe): keep playing
            self._mute = True

    def _warn(self, text: str) -> None:
        if self._game is not None:
            self._game.warnings += 1
            # the first few per game only: a broken feed must not flood the screen or the log
            if self._game.warnings > 3:
                logger.debug(text)
                return
        self._say(f"warning: {text}", "yellow")
        self.log.write("warning", message=text)

    @staticmethod
    def _text(msg: Any) -> str:
        return msg.decode("utf-8", errors="replace") if isinstance(msg, bytes) else str(msg)

    # -- connection life cycle ------------------------------------------------------
    def connect(self) -> None:
        """Open a connection (called at start and for every retry)."""
        if not self._stopping:
            self._reactor.connectTCP(self.host, self.port, self._factory, timeout=10)

    def connected(self, connection: ClientProtocol) -> None:
        self._connection = connection
        self._accepted = False
        self._say(f"connected to {self.host}:{self.port}", "green")
        self.log.write("connected", host=self.host, port=self.port)

    def connection_ended(self, reason: Failure, failed: bool) -> None:
        """Decide after a lost or failed connection: finish, or retry after a backoff delay."""
        self._connection = None
        self._interrupt_game()
        if self._stopping or self.done.called:
            self._finish(EXIT_OK)
            return
        if self._refusal is not None:
            self._say(f"the server refused this client: {self._refusal}", "bold red")
            self._say("check the access token (--token or COMPRL_ACCESS_TOKEN); not retrying", "red")
            self._finish(EXIT_REFUSED)
            return
        self._failures += 1  # reset to 0 whenever the server accepts us
        what = "could not connect to" if failed else "lost the connection to"
        detail = self._text(reason.getErrorMessage())
        if self._failures > self.max_retries:
            self._say(
                f"{what} {self.host}:{self.port} ({detail}); giving up after {self.max_retries} retries",
                "bold red",
            )
            self.log.write("gave_up", host=self.host, port=self.port, retries=self.max_retries)
            self._finish(EXIT_UNREACHABLE)
            return
        delay = min(self.retry_delay * 2 ** (self._failures - 1), self.max_delay)
        self._say(
            f"{what} {self.host}:{self.port} ({detail}); retry {self._failures}/{self.max_retries} in {delay:.1f} s",
            "yellow",
        )
        self.log.write("retry", attempt=self._failures, delay_s=delay, reason=detail)
        self._reactor.callLater(delay, self.connect)

    def _interrupt_game(self) -> None:
        """Count a game that ends without EndGame (connection lost, or a new game started)."""
        if self._game is not None:
            self.stats.interrupted += 1
            self.log.write("game_interrupted", game_id=self._game.game_id, steps=self._game.steps)
            self._game = None

    def stop(self) -> None:
        """Finish cleanly: close the connection (if any), then fire `done` with EXIT_OK."""
        self._stopping = True
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.loseConnection()
        else:
            self._finish(EXIT_OK)

    def _finish(self, code: int) -> None:
        if not self.done.called:
            self.log.write("finished", exit_code=code, **asdict(self.stats))
            self.done.callback(code)

    # -- the server's calls ----------------------------------------------------------
    def on_auth(self) -> dict[str, Any]:
        return {"token": self._token.encode("utf-8"), "version": PROTOCOL_VERSION}

    def _accept(self) -> None:
        """The server took our token: errors from now on are not refusals."""
        if not self._accepted:
            self._accepted = True
            self._failures = 0
            self._say("authenticated, waiting for games", "green")
            self.log.write("accepted")

    def on_ready(self) -> dict[str, Any]:
        self._accept()
        return {"ready": not self._stopping}

    def on_start_game(self, game_id: bytes) -> None:
        try:
            name = str(uuid.UUID(bytes=game_id))
        except (ValueError, TypeError):
            name = (game_id.hex() if isinstance(game_id, bytes) else str(game_id)) or "unannounced"
        self._interrupt_game()
        self._game = GameRecord(game_id=name)
        self.detector.start_game()
        self._reset_policy()
        self.log.write("game_started", game_id=name)

    def _reset_policy(self) -> None:
        try:
            self.policy.reset()
        except Exception as exc:  # a broken agent must not take the connection down
            self._warn(f"policy reset failed: {exc!r}")

    def on_step(self, obv: Any) -> list[float]:
        """One action for one observation; always 4 finite values in [-1, 1]."""
        if self._game is None:  # a Step without StartGame (e.g. after reconnecting): start one
            self.on_start_game(b"")
        game = self._game
        assert game is not None
        game.steps += 1
        obs, problem = sanitize_observation(obv)
        if problem:
            self._warn(f"step {game.steps}: {problem}")
        if obs is None:
            return [0.0] * ACTION_SIZE
        if self.detector.observe(obs) and game.steps > 1:
            self._reset_policy()
        game.rounds = self.detector.rounds
        try:
            raw = self.policy.act(obs)
        except Exception as exc:
            self._warn(f"step {game.steps}: policy failed ({exc!r}); acting zeros")
            return [0.0] * ACTION_SIZE
        action, problem = safe_action(raw)
        if problem:
            self._warn(f"step {game.steps}: {problem}")
        return action

    def on_end_game(self, result: Any, stats: Any) -> None:
        outcome, own, other = game_outcome(bool(result), stats)
        game = self._game or GameRecord(game_id="unknown")
        self._game = None
        self.stats.record(outcome, own, other)
        s = self.stats
        score = f"{own:g}:{other:g}" if math.isfinite(own) else "?"
        style = {"win": "bold green", "draw": "bold", "loss": "bold red"}[outcome]
        self._say(
            f"game {s.games} {game.game_id[:8]}: {outcome.upper()} {score} "
            f"({game.steps} steps, {game.rounds} rounds seen) | total {s.wins}W {s.draws}D "
            f"{s.losses}L, rounds {s.rounds_won:g}:{s.rounds_lost:g}",
            style,
        )
        self.log.write(
            "game",
            game_id=game.game_id,
            outcome=outcome,
            own_score=_finite_or_none(own),
            other_score=_finite_or_none(other),
            steps=game.steps,
            rounds_seen=game.rounds,
            warnings=game.warnings,
            duration_s=round(time.monotonic() - game.started, 3),
            totals=asdict(s),
        )
        if self.games_limit and s.games >= self.games_limit:
            self._say(f"played {s.games} games, stopping", "green")
            self._reactor.callLater(0, self.stop)

    def on_error(self, msg: Any) -> None:
        text = self.redact(self._text(msg))
        self._say(f"server error: {text}", "bold red")
        self.log.write("server_error", message=text)
        if not self._accepted:
            # an error before the server accepted us is a refusal (token, version): fatal
            self._refusal = text
            connection = self._connection
            if connection is not None and connection.transport is not None:
                self._reactor.callLater(0.5, connection.transport.loseConnection)

    def on_message(self, msg: Any) -> None:
        text = self.redact(self._text(msg))
        self._say(f"server: {text}", "cyan")
        self.log.write("server_message", message=text)
        # comprl messages only authenticated players ("Authentication successful")
        self._accept()

    # -- running -----------------------------------------------------------------------
    def summary_table(self) -> Table:
        s = self.stats
        table = Table(title="tournament client")
        for column in ("games", "wins", "draws", "losses", "rounds", "interrupted"):
            table.add_column(column, justify="right")
        table.add_row(
            str(s.games),
            str(s.wins),
            str(s.draws),
            str(s.losses),
            f"{s.rounds_won:g}:{s.rounds_lost:g}",
            str(s.interrupted),
        )
        return table

    def run(self) -> int:
        """Connect and run the reactor until done or interrupted (Ctrl-C: a clean stop)."""
        codes: list[int] = []

        def finished(code: int) -> None:
            codes.append(code)
            try:
                self._reactor.stop()
            except ReactorNotRunning:  # already stopping (a signal) or stopped
                pass

        def shutting_down() -> None:
            if not codes:  # stopped on a signal (Ctrl-C, docker stop), not by us
                self._stopping = True
                self._say("stopped", "yellow")

        self.done.addCallback(finished)
        self._reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
        self._reactor.callWhenRunning(self.connect)
        self._reactor.run()
        self._finish(EXIT_OK)  # no-op unless a signal stopped the reactor
        if not self._mute:
            try:
                self.console.print(self.summary_table())
            except (OSError, SystemExit):
                pass
        self.log.close()
        return codes[0]
