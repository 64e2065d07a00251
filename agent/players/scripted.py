"""Scripted players: fixed opponents for training, evaluation and the league.

Every player here is a small `Policy` (agent/policy.py) reading its own player-1-frame
observation (docs/game.md, "The observation"): own block o[0:6] = x, y, angle, vx, vy, angular
velocity relative to the centre; the other player's block o[6:12]; the puck o[12:16]
(x, y, vx, vy); the keep counters o[16] (own) and o[17] (other's). The own goal is at
x = -GOAL_X, the goal to attack at x = +GOAL_X.
"""

from __future__ import annotations

import math

import numpy as np

from agent.config import SCRIPTED_PLAYERS, scripted_seed
from agent.players.policy import BatchPolicy, Policy, per_game

SCRIPTED: tuple[str, ...] = SCRIPTED_PLAYERS  # the names, written once in agent/config.py

SCALE = 60.0
GOAL_X = 255.0 / SCALE  # goal centres relative to the centre of the rink
GOAL_HALF = 75.0 / SCALE  # half the goal's opening
MAX_ANGLE = math.pi / 3
REACH_X = -0.6  # a player cannot push past CENTER_X - ZONE; stay just behind it
LEAD = 0.12  # seconds of puck travel the chasing players anticipate


def _pd(target: np.ndarray, pos: np.ndarray, vel: np.ndarray, kp: np.ndarray, kd: np.ndarray) -> np.ndarray:
    """A proportional-derivative push towards `target`, clipped to the action range."""
    return np.clip(kp * (target - pos) - kd * vel, -1.0, 1.0)


def _angle_to(src_x: float, src_y: float, dst_x: float, dst_y: float) -> float:
    """The racket angle that points from src to dst, limited to what the game allows."""
    return float(np.clip(math.atan2(dst_y - src_y, dst_x - src_x), -MAX_ANGLE, MAX_ANGLE))


class _Memoryless:
    """A scripted player decides from the current observation alone, so a new round
    needs nothing cleared; it only remembers whether the keep (shoot) mechanic is on."""

    def __init__(self, keep_mode: bool = True) -> None:
        self._keep_mode = keep_mode

    def reset(self) -> None:
        """Nothing to clear between rounds."""


class Still(_Memoryless):
    """Does nothing: the floor every learner must beat, and a clean test partner."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(4)


class RandomPlayer(_Memoryless):
    """Uniform random actions from its own generator: an exploration-like baseline.

    Without keep mode the shoot value is always 0 (it would mean nothing).
    """

    def __init__(self, seed: int | None = None, keep_mode: bool = True) -> None:
        super().__init__(keep_mode)
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = self._rng.uniform(-1.0, 1.0, 4)
        if not self._keep_mode:
            action[3] = 0.0
        return action


class Basic(_Memoryless):
    """The game's own BasicOpponent (weak or strong), the reference's scripted player.

    BasicOpponent draws its phase from numpy's global generator (docs/game.md). Without a
    seed that is kept as is, so `np.random.seed` reproduces the reference. With a seed
    the player draws the same sequence from its own `RandomState(seed)` (what the
    global generator gives after `np.random.seed(seed)`) and feeds the phase to the
    game's decision function, so it is reproducible without touching anyone else's
    global random stream (swapping the global state per act costs ~1 ms).
    """

    def __init__(self, weak: bool, seed: int | None = None, keep_mode: bool = True) -> None:
        from agent.game import BasicOpponent, scripted_action

        super().__init__(keep_mode)
        self._weak = weak
        self._decide = scripted_action
        self._opponent = None
        self._rng = None
        if seed is None:
            self._opponent = BasicOpponent(weak=weak, keep_mode=keep_mode)
        else:
            self._rng = np.random.RandomState(seed)
            self._phase = self._rng.uniform(0, np.pi)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._opponent is not None:
            action = np.asarray(self._opponent.act(obs), dtype=np.float64)
        else:
            self._phase += self._rng.uniform(0, 0.2)
            action = self._decide(obs, self._phase, self._weak, self._keep_mode)
        if action.shape[0] == 3:  # without keep mode the game answers 3 values
            action = np.append(action, 0.0)
        return action


def _shot_angle(obs: np.ndarray) -> float:
    """Aim at the part of the other goal farther from the other player's racket."""
    other_y = obs[7]
    aim_y = -math.copysign(0.6 * GOAL_HALF, other_y) if abs(other_y) > 0.1 else 0.0
    return _angle_to(obs[0], obs[1], GOAL_X, aim_y)


def _chase(obs: np.ndarray) -> np.ndarray:
    """Run to where the puck will be in a moment, from its own-goal side, racket aimed."""
    pos, vel = obs[0:3], obs[3:6]
    fx, fy = obs[12] + obs[14] * LEAD, obs[13] + obs[15] * LEAD
    if pos[0] > fx - 0.1:  # in front of the puck: go round it rather than push it back
        fy += math.copysign(0.5, pos[1] - fy)
        fx -= 0.2
    target = np.array([fx - 0.25, fy, _angle_to(pos[0], pos[1], GOAL_X, 0.0)])
    return np.append(_pd(target, pos, vel, np.array([6.0, 6.0, 3.0]), np.array([0.5, 0.5, 0.3])), 0.0)


def _carry_and_shoot(obs: np.ndarray, patience: float) -> np.ndarray:
    """Holding the puck: turn towards the shot angle, shoot once aimed or when patience runs out.

    The counter counts down from 15; `patience` is the counter value at which it shoots
    anyway, so a high value means a quick shot.
    """
    pos, vel = obs[0:3], obs[3:6]
    aim = _shot_angle(obs)
    target = np.array([REACH_X, pos[1] * 0.8, aim])
    move = _pd(target, pos, vel, np.array([4.0, 2.0, 4.0]), np.array([0.4, 0.4, 0.3]))
    shoot = 1.0 if abs(pos[2] - aim) < 0.08 or obs[16] <= patience else 0.0
    return np.append(move, shoot)


class Shooter(_Memoryless):
    """Attacker: catch the puck, carry it towards the centre line, aim away from the keeper, shoot.

    It uses the keep mechanic: touching a slow puck catches it for up to 15 steps, and
    the shot goes along the racket's angle. While holding, it turns the racket towards
    the part of the goal farther from the other player and shoots once aimed (or just
    before the counter runs out). Without the puck it runs to where the puck will be,
    coming from behind it; when the puck is out of reach in the other half it waits
    mid-way on the puck's line.
    """

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._keep_mode and obs[16] > 0:
            return _carry_and_shoot(obs, patience=3)
        if obs[12] + obs[14] * LEAD > REACH_X + 0.3:
            pos, vel = obs[0:3], obs[3:6]
            target = np.array([-2.0, float(np.clip(obs[13], -2.0, 2.0)), 0.0])
            return np.append(_pd(target, pos, vel, np.array([6.0, 6.0, 3.0]), np.array([0.5, 0.5, 0.3])), 0.0)
        return _chase(obs)


def _fold(y: float, limit: float) -> float:
    """Where a puck moving freely to height y ends up after bouncing between walls at +-limit."""
    span = 2 * limit
    y = (y + limit) % (2 * span)
    return (y if y <= span else 2 * span - y) - limit


class Keeper(_Memoryless):
    """Goal keeper: guards its goal, blocks shots, clears what it safely can.

    At home it stands a fixed distance in front of its goal on the segment towards the
    puck, racket facing the puck. A shot coming at its goal is met where its path
    (with wall bounces) crosses the keeper's line, instead. It leaves home only for a
    puck in its own half that is not coming at the goal fast; a caught puck is shot
    quickly (less patience than the shooter) at the other goal.
    """

    GUARD = 0.9  # distance of the home spot from the goal centre
    THREAT_VX = -1.5  # a puck faster than this towards the goal is blocked, not chased
    WALL_Y = 3.1  # the puck centre's reach in y (wall minus puck radius)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._keep_mode and obs[16] > 0:
            return _carry_and_shoot(obs, patience=9)
        px, py, pvx, pvy = obs[12], obs[13], obs[14], obs[15]
        if px < REACH_X and pvx > self.THREAT_VX:
            return _chase(obs)
        pos, vel = obs[0:3], obs[3:6]
        if pvx < self.THREAT_VX and px > pos[0]:
            line_x = -GOAL_X + self.GUARD
            cross_y = _fold(py + pvy * (line_x - px) / pvx, self.WALL_Y)
            spot = np.array([line_x, float(np.clip(cross_y, -GOAL_HALF - 0.2, GOAL_HALF + 0.2))])
        else:
            to_puck = np.array([px + GOAL_X, py])
            dist = float(np.hypot(*to_puck))
            spot = np.array([-GOAL_X, 0.0]) + to_puck / max(dist, 1e-6) * min(self.GUARD, max(dist - 0.3, 0.3))
        target = np.array([spot[0], spot[1], _angle_to(pos[0], pos[1], px, py)])
        move = _pd(target, pos, vel, np.array([6.0, 6.0, 3.0]), np.array([0.6, 0.6, 0.3]))
        return np.append(move, 0.0)


def make_scripted(name: str, seed: int | None = None, keep_mode: bool = True) -> Policy:
    """Build the scripted player called `name` (one of SCRIPTED)."""
    if name == "still":
        return Still()
    if name == "random":
        return RandomPlayer(seed=seed, keep_mode=keep_mode)
    if name in ("weak", "strong"):
        return Basic(weak=name == "weak", seed=seed, keep_mode=keep_mode)
    if name == "shooter":
        return Shooter(keep_mode=keep_mode)
    if name == "keeper":
        return Keeper(keep_mode=keep_mode)
    raise ValueError(f"unknown scripted player {name!r}; choices: {', '.join(SCRIPTED)}")


def scripted_batch(name: str, games: int, seed: int | None = None) -> BatchPolicy:
    """One scripted player `name` per game as a BatchPolicy; game i's seeded `scripted_seed(seed, i)`."""
    return per_game([make_scripted(name, seed=None if seed is None else scripted_seed(seed, i)) for i in range(games)])


def pairwise_table(names: tuple[str, ...] = SCRIPTED, games: int = 10, seed: int = 0) -> str:
    """A markdown table of every pair: the row player's wins-draws-losses and rounds.

    Each pair plays `games` tournament games with each player as player 1, so every
    cell counts 2 * games games; game g of a pair uses game seed seed + g on both sides.
    """
    from agent.players.match import Tally, play_games

    cells: dict[tuple[str, str], str] = {}
    for i, a in enumerate(names):
        for b in names[i:]:
            tally = Tally(())
            for a_side in ("p1", "p2"):
                pa = per_game([make_scripted(a, seed=seed + 2 * g) for g in range(games)])
                pb = per_game([make_scripted(b, seed=seed + 2 * g + 1) for g in range(games)])
                tally += play_games(pa, pb, games, a_side=a_side, seed=seed)
            wins, draws, losses = Tally.counts(tally.game_outcomes())
            rounds_a, rounds_b = tally.score()
            cells[a, b] = f"{wins}-{draws}-{losses} ({rounds_a}:{rounds_b})"
            cells[b, a] = f"{losses}-{draws}-{wins} ({rounds_b}:{rounds_a})"
    lines = ["| row vs column | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| **{a}** | " + " | ".join(cells[a, b] for b in names) + " |" for a in names]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Play every pair of scripted players; print a markdown table.")
    parser.add_argument("--games", type=int, default=10, help="games per pair and side")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(pairwise_table(games=args.games, seed=args.seed))
