"""Ratings from the league's game history: online Elo, Bradley-Terry, OpenSkill.

All three read the same input, a time-ordered sequence of games, each with its two
players and their scores (rounds won of 4). A game's outcome for player 1 is 1 for
more rounds won, 0.5 for equal (a draw counts as half a win), 0 for fewer.

- Elo (online, K = 16 by default) depends on the order of games; it is what a
  ladder would show.
- Bradley-Terry is the order-free maximum-likelihood fit (Newton on log strengths
  with a tiny prior so that unbeaten players stay finite), on the Elo scale
  (400 log10), with bootstrap 95% intervals from resampled games. Both are
  anchored so the scripted `weak` player sits at 1000 (the mean at 1000 when
  `weak` is not a member).
- OpenSkill Plackett-Luce, fed as the comprl tournament server feeds it: each game
  rates player 1 against player 2 with their round scores (equal scores tie), and
  the leaderboard value is the conservative mu - 3 sigma (comprl's ranking).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

ANCHOR = "weak"
ANCHOR_RATING = 1000.0
ELO_K = 16.0
ELO_SCALE = 400.0 / math.log(10.0)  # natural-log strength -> Elo points
BT_PRIOR_GAMES = 1.0  # virtual games, half won, against an average player
# comprl's starting rating for every user (its data/models.py), with the default model
COMPRL_MU = 25.0
COMPRL_SIGMA = 8.333


class Game(NamedTuple):
    """One finished game as the ratings see it."""

    player1: str
    player2: str
    score1: int
    score2: int


def outcome(score1: int, score2: int) -> float:
    """Player 1's result: 1 win, 0.5 draw, 0 loss (more rounds won wins)."""
    if score1 > score2:
        return 1.0
    if score1 < score2:
        return 0.0
    return 0.5


def _check_members(games: Sequence[Game], members: Sequence[str]) -> dict[str, int]:
    index = {name: i for i, name in enumerate(members)}
    if len(index) != len(members):
        raise ValueError("member names must be unique")
    for g in games:
        for name in (g.player1, g.player2):
            if name not in index:
                raise ValueError(f"game player {name!r} is not a member; members: {sorted(index)}")
    return index


def _anchor_shift(values: np.ndarray, members: Sequence[str], anchor: str | None) -> float:
    """The constant to add so the anchor (or, without one, the mean) sits at 1000."""
    if anchor is not None and anchor in members:
        return ANCHOR_RATING - float(values[list(members).index(anchor)])
    return ANCHOR_RATING - float(np.mean(values)) if len(values) else 0.0


def elo(
    games: Sequence[Game],
    members: Sequence[str],
    k: float = ELO_K,
    anchor: str | None = ANCHOR,
) -> dict[str, float]:
    """Online Elo over the games in order, everyone starting level.

    Updates are zero-sum, so the final table is shifted as a whole to put the
    anchor at 1000 (this does not change any update).
    """
    if k <= 0:
        raise ValueError(f"Elo K must be positive, got {k}")
    index = _check_members(games, members)
    r = np.full(len(members), ANCHOR_RATING)
    for g in games:
        i, j = index[g.player1], index[g.player2]
        expected = 1.0 / (1.0 + 10.0 ** ((r[j] - r[i]) / 400.0))
        delta = k * (outcome(g.score1, g.score2) - expected)
        r[i] += delta
        r[j] -= delta
    r += _anchor_shift(r, members, anchor)
    return {name: float(r[i]) for name, i in index.items()}


def _game_arrays(games: Sequence[Game], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The players' indices (2 x games) and player 1's outcome per game."""
    ii = np.fromiter((index[g.player1] for g in games), dtype=np.int64, count=len(games))
    jj = np.fromiter((index[g.player2] for g in games), dtype=np.int64, count=len(games))
    s = np.fromiter((outcome(g.score1, g.score2) for g in games), dtype=np.float64, count=len(games))
    return np.stack([ii, jj]), s


def _tables(pairs: np.ndarray, s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Wins (draws as halves) and games between every two players."""
    wins = np.zeros((n, n))
    np.add.at(wins, (pairs[0], pairs[1]), s)
    np.add.at(wins, (pairs[1], pairs[0]), 1.0 - s)
    played = wins + wins.T
    return wins, played


def _fit_bt(
    wins: np.ndarray,
    played: np.ndarray,
    prior: float,
    theta0: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> np.ndarray:
    """Maximise the Bradley-Terry log likelihood in log strengths by damped Newton.

    The prior is `prior` virtual games against a fixed player of log strength 0,
    half of them won: it makes the objective strictly concave, so a player who won
    (or lost) every game still gets a finite strength.
    """
    n = wins.shape[0]
    total_wins = wins.sum(axis=1) + prior / 2.0
    theta = np.zeros(n) if theta0 is None else theta0.copy()

    def objective(t: np.ndarray) -> float:
        diff = t[:, None] - t[None, :]
        # log sigmoid(d) = -log(1 + exp(-d)), written stably
        ll = -(wins * np.logaddexp(0.0, -diff)).sum()
        ll += prior * (-0.5 * np.logaddexp(0.0, -t) - 0.5 * np.logaddexp(0.0, t)).sum()
        return float(ll)

    current = objective(theta)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
        p0 = 1.0 / (1.0 + np.exp(-theta))
        grad = total_wins - (played * p).sum(axis=1) - prior * p0
        w = played * p * (1.0 - p)
        hess = w.copy()
        np.fill_diagonal(hess, -(w.sum(axis=1) - np.diag(w)) - prior * p0 * (1.0 - p0))
        step = np.linalg.solve(hess, -grad)
        scale = 1.0
        while True:
            candidate = theta + scale * step
            value = objective(candidate)
            if value >= current - 1e-12 or scale < 1e-6:
                break
            scale *= 0.5
        theta, improvement = candidate, value - current
        current = value
        if np.max(np.abs(scale * step)) < tol or abs(improvement) < tol * 1e-3:
            break
    return theta


@dataclass(frozen=True)
class BTRatings:
    """Bradley-Terry ratings on the Elo scale with bootstrap 95% intervals.

    `samples` holds the anchored bootstrap replicates (one row per resample), so
    callers can read the uncertainty of differences between two members too.
    """

    members: tuple[str, ...]
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    samples: np.ndarray

    def as_dict(self) -> dict[str, tuple[float, float, float]]:
        return {
            name: (float(self.value[i]), float(self.low[i]), float(self.high[i])) for i, name in enumerate(self.members)
        }


def bradley_terry(
    games: Sequence[Game],
    members: Sequence[str],
    n_boot: int = 200,
    seed: int = 0,
    prior: float = BT_PRIOR_GAMES,
    anchor: str | None = ANCHOR,
) -> BTRatings:
    """Fit Bradley-Terry to all games, then refit `n_boot` resamples of the games.

    Each replicate is anchored like the point estimate, so the anchor's own interval
    has zero width and every other interval is relative to it.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if prior <= 0:
        raise ValueError(f"the Bradley-Terry prior must be positive, got {prior}")
    members = tuple(members)
    index = _check_members(games, members)
    n = len(members)
    pairs, s = _game_arrays(games, index)
    wins, played = _tables(pairs, s, n)
    theta = _fit_bt(wins, played, prior)
    value = theta * ELO_SCALE
    value = value + _anchor_shift(value, members, anchor)

    rng = np.random.default_rng(seed)
    samples = np.empty((n_boot, n))
    for b in range(n_boot):
        pick = rng.integers(0, len(s), size=len(s)) if len(s) else np.zeros(0, dtype=np.int64)
        bw, bp = _tables(pairs[:, pick], s[pick], n)
        rep = _fit_bt(bw, bp, prior, theta0=theta) * ELO_SCALE
        samples[b] = rep + _anchor_shift(rep, members, anchor)
    if n_boot:
        low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    else:
        low, high = value.copy(), value.copy()
    return BTRatings(members, value, low, high, samples)


@dataclass(frozen=True)
class SkillRating:
    """An OpenSkill rating and its conservative leaderboard value."""

    mu: float
    sigma: float

    @property
    def conservative(self) -> float:
        return self.mu - 3.0 * self.sigma


def openskill(games: Sequence[Game], members: Sequence[str]) -> dict[str, SkillRating]:
    """OpenSkill Plackett-Luce as the comprl server runs it.

    A default `PlackettLuce()` model, every member starting at comprl's mu 25,
    sigma 8.333; each game is rated on its own, in order, with the two round scores
    as the ranking input (the server calls `rate([[p1], [p2]], scores=[s1, s2])`),
    and the server ranks by mu - 3 sigma.
    """
    from openskill.models import PlackettLuce

    index = _check_members(games, members)
    model = PlackettLuce()
    ratings = {name: model.rating(mu=COMPRL_MU, sigma=COMPRL_SIGMA, name=name) for name in index}
    for g in games:
        [[a], [b]] = model.rate([[ratings[g.player1]], [ratings[g.player2]]], scores=[g.score1, g.score2])
        ratings[g.player1], ratings[g.player2] = a, b
    return {name: SkillRating(float(r.mu), float(r.sigma)) for name, r in ratings.items()}
