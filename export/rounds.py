"""Detect round starts from observations alone.

The tournament server resets the game between the 4 rounds of a game without telling
the client: the only sign is the observation. A reset puts every body at rest at a known
place (docs/game.md, "Who starts a round"): player 1 exactly at (W/5, H/2), i.e. (-3, 0) relative to the
centre, angles 0, the puck at rest inside its start range. The keep counters are NOT
reset, so they are ignored here. Because a player can come to rest at its start spot
during play, a reset configuration counts as a new round only together with a
discontinuity: some body is not where the previous observation and its current velocity
put it. Right after a reset every velocity is 0, so a reset is a jump of the puck (always
re-drawn) and usually of the players; in play, positions follow x' = x + dt v'.

Numpy only: the tournament client uses this without torch or the game.
"""

from __future__ import annotations

import numpy as np

from agent.game.rules import DT, OBS_SIZE, START_X, H, W, mirror, parse_mode

# Float32 positions at the reset: exact values, but allow for the float32 -> float64 widening.
EXACT_TOL = 1e-5
RANGE_TOL = 1e-4
# A body that moved more than this (world units) beyond dt * velocity jumped. The largest
# in-play correction (contact position solving) is far below it; resets move bodies by
# at least the puck's re-draw, which is never this close for a body at rest.
JUMP_TOL = 0.05

# obs index blocks (player-1 frame): own player, other player, puck
_OWN = slice(0, 6)
_OTHER = slice(6, 12)


def _in(value: float, low: float, high: float) -> bool:
    return low - RANGE_TOL <= value <= high + RANGE_TOL


def _at_rest(block: np.ndarray) -> bool:
    """A player block (x, y, angle, vx, vy, w) with angle and every velocity exactly 0."""
    return bool(np.all(np.abs(block[2:6]) <= EXACT_TOL))


def _player_one_view_is_reset(o: np.ndarray, mode: int) -> bool:
    """Whether `o`, read as player 1's observation, is a reset configuration of `mode`."""
    p1, p2 = o[_OWN], o[_OTHER]
    if not (_at_rest(p1) and _at_rest(p2)):
        return False
    if abs(p1[0] - START_X) > EXACT_TOL or abs(p1[1]) > EXACT_TOL:
        return False
    if abs(o[14]) > EXACT_TOL or abs(o[15]) > EXACT_TOL:
        return False
    puck_x, puck_y = o[12], o[13]
    if mode == 0:
        if abs(p2[0] + START_X) > EXACT_TOL or abs(p2[1]) > EXACT_TOL:
            return False
        return _in(abs(puck_x), H / 8, H / 4) and _in(puck_y, -H / 8, H / 8)
    # training modes: player 2 at 4W/5 + U(-W/3, W/6), H/2 + U(-H/4, H/4)
    if not (_in(p2[0], -START_X - W / 3, -START_X + W / 6) and _in(p2[1], -H / 4, H / 4)):
        return False
    if mode == 1:
        return _in(puck_x, -H / 4, -H / 8) and _in(puck_y, -H / 8, H / 8)
    return _in(puck_x, 0.0, W / 3) and _in(puck_y, -0.4 * H, 0.4 * H)


def is_reset_configuration(obs: np.ndarray, mode: int | str = 0) -> bool:
    """Whether `obs` (either player's view) shows the bodies as a reset of `mode` puts them.

    Either view is accepted: player 2's observation is the mirror of player 1's.
    """
    m = int(parse_mode(mode))
    o = np.asarray(obs, dtype=np.float64)
    if o.shape != (OBS_SIZE,) or not np.all(np.isfinite(o)):
        return False
    return _player_one_view_is_reset(o, m) or _player_one_view_is_reset(mirror(o), m)


def is_discontinuous(prev: np.ndarray, obs: np.ndarray) -> bool:
    """Whether `obs` cannot follow `prev` by one physics step (some body jumped)."""
    p = np.asarray(prev, dtype=np.float64)
    o = np.asarray(obs, dtype=np.float64)
    # (position index, velocity index) for x and y of both players and the puck, and the angles
    pairs = ((0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11), (12, 14), (13, 15))
    for pos, vel in pairs:
        if not abs(o[pos] - p[pos] - DT * o[vel]) <= JUMP_TOL:  # NaN counts as a jump
            return True
    return False


class RoundDetector:
    """Tells, observation by observation, when a new round has started.

    Call `start_game()` when the server announces a game; `observe(obs)` then returns
    True for the game's first observation and for every later one that starts a round,
    which is when a recurrent agent must reset its state.
    """

    def __init__(self, mode: int | str = 0) -> None:
        self.mode = int(parse_mode(mode))
        self.start_game()

    def start_game(self) -> None:
        """Forget the previous observation: the next one starts round 1."""
        self._prev: np.ndarray | None = None
        self.rounds = 0

    def observe(self, obs: np.ndarray) -> bool:
        """Feed the next observation; True when it starts a new round."""
        o = np.asarray(obs, dtype=np.float64).reshape(-1)
        if o.shape != (OBS_SIZE,):
            raise ValueError(f"observation must hold {OBS_SIZE} values, got {o.size}")
        prev, self._prev = self._prev, o.copy()
        if prev is None:
            new_round = True
        else:
            new_round = is_reset_configuration(o, self.mode) and is_discontinuous(prev, o)
        if new_round:
            self.rounds += 1
        return new_round
