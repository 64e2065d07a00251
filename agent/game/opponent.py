"""The reference's scripted opponent: a PD controller chasing the puck.

The decision is a pure function of (observation, phase) so that the conformance test
can check exactly the logic `act()` uses with a recorded phase; `act()` only adds the
random phase increment. Plain floats replace the reference's tiny numpy vectors (the
arithmetic is float64 either way, so the numbers are the same).
"""

from __future__ import annotations

import math

import numpy as np

from agent.game.hockey import MAX_ANGLE, SCALE

_TIME_TO_BREAK = 0.1
_KD = 0.5


def scripted_action(obs: np.ndarray | list[float], phase: float, weak: bool, keep_mode: bool) -> np.ndarray:
    """The opponent's action for its own (player-1 frame) observation at a given phase."""
    o = obs.tolist() if isinstance(obs, np.ndarray) else list(obs)
    needed = 18 if keep_mode else 16
    if len(o) < needed:
        raise ValueError(f"the opponent needs an observation of {needed} values, got {len(o)}")
    px, py, pa = o[0], o[1], o[2]
    vx, vy, va = o[3], o[4], o[5]
    puck_x, puck_y, puck_vx, puck_vy = o[12], o[13], o[14], o[15]
    kp = 0.5 if weak else 10.0

    if puck_vx < 30.0 / SCALE:
        dx, dy = px - puck_x, py - puck_y
        dist = math.sqrt(dx * dx + dy * dy)
        if px < puck_x and abs(py - puck_y) < 30.0 / SCALE:
            target_x, target_y = puck_x + 0.2, puck_y + puck_vy * dist * 0.1
        else:
            target_x, target_y = -210 / SCALE, puck_y
    else:
        target_x, target_y = -210 / SCALE, 0.0
    target_angle = MAX_ANGLE * math.sin(phase)

    action = []
    for error, v, gain, threshold in (
        (target_x - px, vx, kp, _TIME_TO_BREAK),
        (target_y - py, vy, kp / 5, _TIME_TO_BREAK),
        (target_angle - pa, va, kp / 2, _TIME_TO_BREAK * 10),
    ):
        denominator = v + 0.01
        # numpy gives inf or nan for a zero denominator; both compare False.
        brake = denominator != 0 and abs(error / denominator) < threshold
        value = error * gain - v * brake * _KD
        action.append(-1.0 if value < -1 else (1.0 if value > 1 else value))
    if keep_mode:
        action.append(1.0 if 0 < o[16] < 7 else 0.0)
    return np.array(action, dtype=np.float64)


class BasicOpponent:
    """Scripted player from the reference: weak (kp 0.5) or strong (kp 10).

    The phase starts at uniform(0, pi) and grows by uniform(0, 0.2) every act, both
    drawn from numpy's global generator as in the reference, so seeding np.random
    reproduces it.
    """

    def __init__(self, weak: bool = True, keep_mode: bool = True) -> None:
        self.weak = bool(weak)
        self.keep_mode = bool(keep_mode)
        self.phase = np.random.uniform(0, np.pi)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The action for the acting player's own observation (player 2 passes obs_agent_two())."""
        self.phase += np.random.uniform(0, 0.2)
        return scripted_action(obs, self.phase, self.weak, self.keep_mode)
