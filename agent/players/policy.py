"""The interfaces every player implements: scripted, learned, ONNX or remote.

`Policy` plays one game. `BatchPolicy` plays many games at once, so that a learned
player answers for all of them in one batched step; `per_game` makes one from one
`Policy` per game.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """A player that sees its own (player-1 frame) observation and answers 4 values.

    `reset()` is called at the start of every round, so recurrent players clear
    their state there. Observations are 18 float64 values; actions are 4 values in
    [-1, 1] (x force, y force, torque, shoot).
    """

    def reset(self) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class BatchPolicy(Protocol):
    """A player of n games at once, one row per game.

    `reset_rows(rows)` starts a round in the games `rows` (integer indices);
    `act_rows(rows, obs)` answers for those games: obs [k, 18] -> actions [k, 4] (an
    array, or a sequence of k actions). Rows it is not asked about keep their state.
    """

    def reset_rows(self, rows: np.ndarray) -> None: ...

    def act_rows(self, rows: np.ndarray, obs: np.ndarray) -> np.ndarray: ...


class PerGame:
    """One `Policy` per game as a `BatchPolicy`."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = list(policies)

    def reset_rows(self, rows: np.ndarray) -> None:
        for r in np.asarray(rows, np.int64):
            self.policies[r].reset()

    def act_rows(self, rows: np.ndarray, obs: np.ndarray) -> list:
        """The players' answers as given (the match checks each one)."""
        return [self.policies[r].act(o) for r, o in zip(np.asarray(rows), obs)]


def per_game(policies: Sequence[Policy]) -> PerGame:
    """A `BatchPolicy` of one `Policy` per game (game i plays `policies[i]`)."""
    return PerGame(policies)
