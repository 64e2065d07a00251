"""The one interface every player implements: scripted, learned, ONNX or remote."""

from __future__ import annotations

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
