"""The league's leaderboard and plots, computed from the match history."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from league.db import LeagueDB, RatingRow
from league.members import LeagueError
from league.ratings import ELO_K, Game, bradley_terry, elo, openskill, outcome


@dataclass(frozen=True)
class LeaderRow:
    """One member's line on the leaderboard."""

    name: str
    kind: str
    bt: float
    bt_low: float
    bt_high: float
    elo: float
    openskill: float
    games: int
    wins: int
    draws: int
    losses: int


def _record(games: Sequence[Game], name: str) -> tuple[int, int, int]:
    """Wins, draws, losses of `name` over its games."""
    wins = draws = losses = 0
    for g in games:
        if name not in (g.player1, g.player2):
            continue
        s = outcome(g.score1, g.score2)
        s = s if g.player1 == name else 1.0 - s
        wins, draws, losses = wins + (s == 1.0), draws + (s == 0.5), losses + (s == 0.0)
    return wins, draws, losses


def leaderboard(league_dir: str | Path, n_boot: int = 200, elo_k: float = ELO_K) -> list[LeaderRow]:
    """Every member with its current ratings, best Bradley-Terry rating first.

    Members without games (rated by the prior alone) come last.
    """
    with LeagueDB(league_dir, readonly=True) as db:
        members = db.members()
        games = db.games()
    names = [m.name for m in members]
    bt = bradley_terry(games, names, n_boot=n_boot).as_dict()
    el = elo(games, names, k=elo_k)
    skill = openskill(games, names)
    rows = []
    for m in members:
        wins, draws, losses = _record(games, m.name)
        value, low, high = bt[m.name]
        rows.append(
            LeaderRow(
                m.name,
                m.kind,
                value,
                low,
                high,
                el[m.name],
                skill[m.name].conservative,
                wins + draws + losses,
                wins,
                draws,
                losses,
            )
        )
    return sorted(rows, key=lambda r: (r.games == 0, -r.bt, r.name))


def head_to_head(games: Sequence[Game], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Row member's score rate against the column member (draws as halves) and game counts.

    Pairs that never met have rate NaN.
    """
    index = {name: i for i, name in enumerate(names)}
    score = np.zeros((len(names), len(names)))
    count = np.zeros((len(names), len(names)), dtype=np.int64)
    for g in games:
        i, j = index[g.player1], index[g.player2]
        s = outcome(g.score1, g.score2)
        score[i, j] += s
        score[j, i] += 1.0 - s
        count[i, j] += 1
        count[j, i] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(count > 0, score / np.maximum(count, 1), np.nan)
    return rate, count


def _plot_history(history: list[RatingRow], path: Path) -> None:
    import datetime as dt

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for name in sorted({r.member for r in history}):
        rows = [r for r in history if r.member == name]
        when = [dt.datetime.fromtimestamp(r.time) for r in rows]
        value = [r.value for r in rows]
        (line,) = ax.plot(when, value, marker="o", label=name)
        ax.fill_between(when, [r.low for r in rows], [r.high for r in rows], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("time of evaluation")
    ax.set_ylabel("Bradley-Terry rating (Elo scale, weak = 1000)")
    ax.set_title("League ratings over time (95% bootstrap intervals)")
    if history:
        ax.legend(fontsize="small", ncol=2)
    else:
        ax.text(0.5, 0.5, "no games yet", transform=ax.transAxes, ha="center", va="center")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_h2h(rate: np.ndarray, count: np.ndarray, names: Sequence[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    size = max(5.0, 0.6 * len(names) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(np.ma.masked_invalid(rate), vmin=0.0, vmax=1.0, cmap="RdYlGn")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if count[i, j]:
                ax.text(j, i, f"{rate[i, j]:.2f}\n{count[i, j]}", ha="center", va="center", fontsize=7)
    ax.set_title("Row member's score rate against column member (draws half; games below)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _check_output(path: Path) -> None:
    """A LeagueError naming `path` unless it can be written (missing folders are made)."""
    existing = path.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise LeagueError(f"cannot write {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK):
        raise LeagueError(f"cannot write {path}: the directory {existing} is read-only")


def plot_paths(prefix: str) -> list[Path]:
    """PREFIX_ratings.png and PREFIX_h2h.png, checked to be writable (a LeagueError if not)."""
    paths = [Path(f"{prefix}_ratings.png"), Path(f"{prefix}_h2h.png")]
    for path in paths:
        _check_output(path)
    return paths


def plot(league_dir: str | Path, prefix: str) -> list[Path]:
    """Write PREFIX_ratings.png and PREFIX_h2h.png; returns their paths.

    The ratings plot reads the history each `league eval` appends (members with
    games only); a league with no history yet shows the current ratings as its one
    point. The matrix lists members best first.
    """
    import time

    import matplotlib

    matplotlib.use("Agg")
    ratings_path, h2h_path = plot_paths(prefix)
    board = leaderboard(league_dir)
    with LeagueDB(league_dir, readonly=True) as db:
        history = [r for r in db.rating_history("bt") if r.games > 0]
        games = db.games()
    if not history:
        now = time.time()
        history = [RatingRow("bt", r.name, r.bt, r.bt_low, r.bt_high, r.games, now) for r in board if r.games]
    order = [r.name for r in board]
    rate, count = head_to_head(games, order)
    try:
        ratings_path.parent.mkdir(parents=True, exist_ok=True)
        _plot_history(history, ratings_path)
        _plot_h2h(rate, count, order, h2h_path)
    except OSError as exc:
        raise LeagueError(f"cannot write {exc.filename or ratings_path}: {exc.strerror or exc}") from None
    return [ratings_path, h2h_path]
