"""The comprl wire protocol: Twisted AMP commands shared by the client and the local server.

The tournament server (docs/game.md, "What a tournament client sees") is the caller: it asks the client for
its token, whether it is ready, tells it when a game starts and ends, and asks for one
action per step. The command class names are the wire names, so they must stay exactly
these. AMP `String` values are bytes on both sides.
"""

from __future__ import annotations

from twisted.protocols import amp

PROTOCOL_VERSION = 1
DEFAULT_PORT = 65335
# The course's server configuration: every call the server makes times out after this.
DEFAULT_TIMEOUT_S = 10.0
# A Step answer is 4 floats: at most 4 * (2 + 24) = 104 bytes as AMP encodes them. A longer
# answer is refused before any of it is parsed.
MAX_ACTION_BYTES = 1024


class AnswerTooLong(ValueError):
    """An answer value is far longer than any valid one; it was not parsed."""


class BoundedFloats(amp.ListOf):
    """`amp.ListOf(amp.Float())` on the wire, refusing to parse a value over `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(amp.Float())
        self.max_bytes = max_bytes

    def fromString(self, inString: bytes) -> list[float]:
        if len(inString) > self.max_bytes:
            raise AnswerTooLong(f"{len(inString)} bytes, at most {self.max_bytes}")
        return super().fromString(inString)


class Auth(amp.Command):
    """Server -> client: who are you? The client answers its access token and version."""

    arguments: list = []
    response = [(b"token", amp.String()), (b"version", amp.Integer())]


class Ready(amp.Command):
    """Server -> client: may a game start now?"""

    arguments: list = []
    response = [(b"ready", amp.Boolean())]


class StartGame(amp.Command):
    """Server -> client: a game starts; `game_id` is the 16 raw bytes of a UUID."""

    arguments = [(b"game_id", amp.String())]
    response: list = []


class Step(amp.Command):
    """Server -> client: the player's own observation; the client answers 4 action values."""

    arguments = [(b"obv", amp.ListOf(amp.Float()))]
    response = [(b"action", BoundedFloats(MAX_ACTION_BYTES))]


class EndGame(amp.Command):
    """Server -> client: the game is over; `result` is True for a win, stats = (own, other) score."""

    arguments = [(b"result", amp.Boolean()), (b"stats", amp.ListOf(amp.Float()))]
    response: list = []


class Error(amp.Command):
    """Server -> client: something went wrong (UTF-8 text), e.g. a refused token."""

    arguments = [(b"msg", amp.String())]
    response: list = []


class Message(amp.Command):
    """Server -> client: information for the user (UTF-8 text)."""

    arguments = [(b"msg", amp.String())]
    response: list = []
