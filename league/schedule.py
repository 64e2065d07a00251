"""Which matches to play next: a round robin, or the pairs the ratings know least.

A match is fully determined by its pair and game index: the sides alternate (even
index: the alphabetically first member is player 1) and the seed is a hash of the
three, so the same schedule is the same games whichever process plays them, and a
rerun after an interruption only fills in what is missing.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from league.db import MatchKey
from league.ratings import BTRatings

SCHEDULES = ("round-robin", "uncertain")


@dataclass(frozen=True)
class Task:
    """One match to play."""

    key: MatchKey
    player1: str
    player2: str
    seed: int


def match_seed(pair_a: str, pair_b: str, game_index: int) -> int:
    """A stable 32-bit seed for a match (independent of Python's hash randomisation)."""
    digest = hashlib.sha256(f"{pair_a}\0{pair_b}\0{game_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_task(first: str, second: str, game_index: int) -> Task:
    """The task for game `game_index` between two members, in either order."""
    if first == second:
        raise ValueError(f"a member cannot play itself: {first!r}")
    if game_index < 0:
        raise ValueError(f"game index must be >= 0, got {game_index}")
    a, b = sorted((first, second))
    p1, p2 = (a, b) if game_index % 2 == 0 else (b, a)
    return Task(MatchKey(a, b, game_index), p1, p2, match_seed(a, b, game_index))


def _pairs(members: Sequence[str]) -> list[tuple[str, str]]:
    return list(itertools.combinations(sorted(set(members)), 2))


def _missing(
    pair: tuple[str, str], played: dict[tuple[str, str], set[int]], count: int, below: int | None
) -> list[int]:
    """The lowest `count` game indices the pair has not played (only those < `below` if given)."""
    done = played.get(pair, set())
    out: list[int] = []
    for i in itertools.count():
        if len(out) == count or (below is not None and i >= below):
            return out
        if i not in done:
            out.append(i)
    raise AssertionError("unreachable: itertools.count never ends")


def round_robin(members: Sequence[str], played: dict[tuple[str, str], set[int]], games_per_pair: int) -> list[Task]:
    """Every pair's missing games among indices 0 .. games_per_pair-1, pair by pair."""
    if games_per_pair < 1:
        raise ValueError(f"games per pair must be >= 1, got {games_per_pair}")
    return [
        make_task(a, b, i)
        for a, b in _pairs(members)
        for i in _missing((a, b), played, games_per_pair, below=games_per_pair)
    ]


def pair_uncertainty(bt: BTRatings, played: dict[tuple[str, str], set[int]]) -> dict[tuple[str, str], float]:
    """Width of the bootstrap 95% interval of each pair's rating difference.

    A pair that never met counts as infinitely uncertain. Without bootstrap samples
    the widths of the two members' own intervals are added.
    """
    index = {name: i for i, name in enumerate(bt.members)}
    widths: dict[tuple[str, str], float] = {}
    for a, b in _pairs(bt.members):
        if not played.get((a, b)):
            widths[(a, b)] = float("inf")
        elif len(bt.samples):
            diff = bt.samples[:, index[a]] - bt.samples[:, index[b]]
            low, high = np.percentile(diff, [2.5, 97.5])
            widths[(a, b)] = float(high - low)
        else:
            i, j = index[a], index[b]
            widths[(a, b)] = float(bt.high[i] - bt.low[i] + bt.high[j] - bt.low[j])
    return widths


def uncertain(
    bt: BTRatings,
    played: dict[tuple[str, str], set[int]],
    games_per_pair: int,
    n_pairs: int | None = None,
) -> list[Task]:
    """`games_per_pair` more games for each of the `n_pairs` least certain pairs.

    By default a quarter of all pairs (at least one). Ties are broken by name, so
    two processes with the same database pick the same pairs and the same games.
    """
    if games_per_pair < 1:
        raise ValueError(f"games per pair must be >= 1, got {games_per_pair}")
    widths = pair_uncertainty(bt, played)
    if n_pairs is None:
        n_pairs = max(1, len(widths) // 4)
    if n_pairs < 1:
        raise ValueError(f"number of pairs must be >= 1, got {n_pairs}")
    chosen = sorted(widths, key=lambda pair: (-widths[pair], pair))[:n_pairs]
    return [make_task(a, b, i) for a, b in chosen for i in _missing((a, b), played, games_per_pair, below=None)]
