"""The game's public facts, written once (docs/game.md), with neither torch nor Box2D.

The game (agent/game/hockey.py), the learning environments, the matches, the ONNX
runtime, the tournament client and the local server all read these: the sizes of the
observation and the action, the modes and their lengths, the player-2 mirror, the
server's action rule, who starts a round, and who wins a round and a game. Importing
this module needs numpy alone, so the torch-free client can use it.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Any

import numpy as np

OBS_SIZE = 18  # own player (6), other player (6), puck (4), keep counters (2)
ACTION_SIZE = 4  # x force, y force, torque, shoot
ROUNDS_PER_GAME = 4  # a tournament game
FPS = 50
DT = 1.0 / FPS
W, H = 10.0, 8.0  # the rink in world units (600 x 480 px at 60 px per unit)
START_X = W / 5 - W / 2  # player 1's start relative to the centre: -3 (player 2 at +3)
SPARSE_REWARD = 10.0  # the reward for a goal: +10 to the scorer's side, -10 to the other


class Mode(IntEnum):
    """Game modes: a full game, or the two training drills of the reference."""

    NORMAL = 0
    TRAIN_SHOOTING = 1
    TRAIN_DEFENSE = 2


# steps until a round nobody wins ends (the game steps once more than this: 251 and 81)
MAX_STEPS = {Mode.NORMAL: 250, Mode.TRAIN_SHOOTING: 80, Mode.TRAIN_DEFENSE: 80}
MODE_NAMES = ("normal", "shooting", "defense")  # the names users type, in Mode order
_MODE_ALIASES = {
    "normal": Mode.NORMAL,
    "shooting": Mode.TRAIN_SHOOTING,
    "train_shooting": Mode.TRAIN_SHOOTING,
    "defense": Mode.TRAIN_DEFENSE,
    "train_defense": Mode.TRAIN_DEFENSE,
}


def parse_mode(mode: Any) -> Mode:
    """A Mode from a Mode, its number or its name (case-insensitive); else a ValueError."""
    if isinstance(mode, Mode):
        return mode
    if isinstance(mode, (int, np.integer)) and not isinstance(mode, (bool, np.bool_)):
        if int(mode) in Mode._value2member_map_:
            return Mode(int(mode))
    elif isinstance(mode, str) and mode.strip().lower() in _MODE_ALIASES:
        return _MODE_ALIASES[mode.strip().lower()]
    raise ValueError(f"unknown game mode {mode!r}; choices: 'normal' (0), 'shooting' (1), 'defense' (2)")


# ---- observations --------------------------------------------------------------------

# (own block, other block): x, y, angle, vx, vy, angular velocity relative to the centre;
# the puck o[12:16] (x, y, vx, vy); the keep counters o[16] (own) and o[17] (other's).
_OWN, _OTHER = slice(0, 6), slice(6, 12)
_PLAYER_SIGN = np.array([-1.0, -1.0, 1.0, -1.0, -1.0, 1.0])


def mirror(obs: np.ndarray) -> np.ndarray:
    """The other player's view of the same state (the game's `obs_agent_two`); its own inverse.

    Player 2 sees the rink turned by 180 degrees: positions and velocities negated,
    angles kept, the two player blocks and the two keep counters swapped.
    """
    o = np.asarray(obs, dtype=np.float64)
    out = np.empty(OBS_SIZE)
    out[_OWN] = o[_OTHER] * _PLAYER_SIGN
    out[_OTHER] = o[_OWN] * _PLAYER_SIGN
    out[12:16] = -o[12:16]
    out[16], out[17] = o[17], o[16]
    return out


# ---- actions --------------------------------------------------------------------------


def check_action(action: Any, who: str) -> np.ndarray:
    """The server's rule: exactly 4 finite values in [-1, 1], as float64; else a ValueError.

    The message names `who` and is bounded in length, whatever the player sent.
    """
    try:
        arr = np.asarray(action, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        return _refuse(f"{who} returned an action that is not numeric", action)
    if arr.shape != (ACTION_SIZE,):
        return _refuse(f"{who} returned {arr.size} action values, expected {ACTION_SIZE}", arr)
    x0, x1, x2, x3 = arr.tolist()  # plain floats: the cheapest check on the hot path
    if not (-1.0 <= x0 <= 1.0 and -1.0 <= x1 <= 1.0 and -1.0 <= x2 <= 1.0 and -1.0 <= x3 <= 1.0):  # NaN fails too
        problem = (
            "a non-finite action"
            if not all(math.isfinite(v) for v in (x0, x1, x2, x3))
            else "an action outside [-1, 1]"
        )
        return _refuse(f"{who} returned {problem}", arr)
    return arr


def clip_action(action: Any, who: str, batch: int | None = None) -> np.ndarray:
    """A learner's action as the game takes it: 4 finite values (`batch` rows of them when
    given) clipped to [-1, 1], as float64; anything else is a ValueError naming `who`."""
    shape = (ACTION_SIZE,) if batch is None else (batch, ACTION_SIZE)
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return _refuse(f"{who} must be {ACTION_SIZE} finite values", action)
    if batch is None:
        arr = arr.reshape(-1)
    if arr.shape != shape:
        return _refuse(f"{who} must be {ACTION_SIZE} finite values per game, shape {shape}; got shape {arr.shape}", arr)
    if not np.all(np.isfinite(arr)):
        return _refuse(f"{who} must be {ACTION_SIZE} finite values", arr)
    return np.clip(arr, -1.0, 1.0)


def is_valid_action(action: Any) -> bool:
    """Whether `action` passes `check_action`."""
    try:
        check_action(action, "")
    except ValueError:
        return False
    return True


def _refuse(message: str, value: Any) -> np.ndarray:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    raise ValueError(f"{message}: {text}")


# ---- rounds and games -----------------------------------------------------------------


def player1_starts(round_index: int) -> bool:
    """Whether player 1 starts round `round_index` (0-based) of a tournament game.

    The starting player has the puck in its half. A fresh NORMAL game makes player 2
    start the first round; then they alternate.
    """
    return round_index % 2 == 1


def game_winner(rounds: Any) -> int:
    """+1 / -1 for the player with more round wins (rounds as +1 / -1 / 0), 0 for a draw."""
    rounds = list(rounds)
    return int(np.sign(rounds.count(1) - rounds.count(-1)))


def from_side(winner: int, side: int) -> int:
    """A winner in the game's terms (+1 player 1, -1 player 2, 0 draw) from player `side`'s view."""
    if side not in (1, 2):
        raise ValueError(f"side must be 1 or 2, got {side!r}")
    return int(winner) if side == 1 else -int(winner)
