"""The league's leaderboard, its worst-case win rates, the champion and the plots (the league card).

All computed from the match history. A rating says how a member does on average over the
league; the worst-case win rate says how it does against the member that beats it most,
which is what a champion must survive: a learner that beats the scripted players 90% of
the time can still lose nearly every game to one learned agent. So the champion candidate
is the main agent's snapshot with the highest worst-case win rate (ties: the higher
Bradley-Terry rating, then the later snapshot).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import TrainConfig
from league.db import LeagueDB, RatingRow
from league.members import LeagueError, role_of
from league.ratings import ELO_K, Game, bradley_terry, elo, openskill, outcome

# games a pair needs to count in a worst-case win rate: train.worst_min_games's default
MIN_GAMES = TrainConfig.worst_min_games


@dataclass(frozen=True)
class WorstCase:
    """A member's weakest head-to-head: its lowest score rate (draws count half) against one member.

    Only members it played at least `min_games` games against count (`counted` of them);
    the `left_out` others had fewer, never met included. Without any counted opponent,
    `opponent` is None and `win` NaN.
    """

    member: str
    opponent: str | None
    win: float
    games: int
    counted: int
    left_out: int
    min_games: int

    def describe(self) -> str:
        """One line, e.g. '25% vs strong over 4 games (1 member left out: fewer than 2 games)'."""
        if self.opponent is None:
            text = "no opponent with enough games yet"
        else:
            text = f"{self.win:.0%} vs {self.opponent} over {_count(self.games, 'game')}"
        if self.left_out:
            text += f" ({_count(self.left_out, 'member')} left out: fewer than {_count(self.min_games, 'game')})"
        return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def worst_cases(games: Sequence[Game], names: Sequence[str], min_games: int = MIN_GAMES) -> dict[str, WorstCase]:
    """Every member's WorstCase over `games` (ties: the pair with more games, then by name)."""
    if min_games < 1:
        raise ValueError(f"min_games must be >= 1, got {min_games}")
    rate, count = head_to_head(games, names)
    result = {}
    for i, name in enumerate(names):
        others = [j for j in range(len(names)) if j != i]
        counted = [j for j in others if count[i, j] >= min_games]
        if counted:
            j = min(counted, key=lambda k: (rate[i, k], -count[i, k], names[k]))
            opponent, win, played = names[j], float(rate[i, j]), int(count[i, j])
        else:
            opponent, win, played = None, math.nan, 0
        result[name] = WorstCase(name, opponent, win, played, len(counted), len(others) - len(counted), min_games)
    return result


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
    role: str = ""
    parent_run: str | None = None
    step: int | None = None
    worst: WorstCase | None = None


def choose_champion(rows: Sequence[LeaderRow], runs: Sequence[str] | None = None) -> LeaderRow | None:
    """The champion candidate: the main agents' snapshot with the highest worst-case win rate.

    Ties go to the higher Bradley-Terry rating, then to the later snapshot. `runs` limits
    the candidates to snapshots whose parent_run is one of them (one league run's main
    agents, in a league other runs share); snapshots without a counted opponent are no
    candidates. None when there is no candidate.
    """
    candidates = [
        r for r in rows
        if r.kind == "snapshot" and r.role == "main" and r.worst is not None and r.worst.opponent is not None
        and (runs is None or r.parent_run in runs)
    ]  # fmt: skip
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.worst.win, r.bt, r.step if r.step is not None else -1, r.name))


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


def leaderboard(
    league_dir: str | Path, n_boot: int = 200, elo_k: float = ELO_K, min_games: int = MIN_GAMES
) -> list[LeaderRow]:
    """Every member with its current ratings, role and worst case, best Bradley-Terry rating first.

    Members without games (rated by the prior alone) come last.
    """
    with LeagueDB(league_dir, readonly=True) as db:
        members = db.members()
        games = db.games()
    names = [m.name for m in members]
    bt = bradley_terry(games, names, n_boot=n_boot).as_dict()
    el = elo(games, names, k=elo_k)
    skill = openskill(games, names)
    worst = worst_cases(games, names, min_games)
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
                role_of(m),
                m.parent_run,
                m.step,
                worst[m.name],
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


ROLE_COLORS = {
    "scripted": "#7f7f7f",
    "external": "#9467bd",
    "main": "#1f77b4",
    "main-exploiter": "#d62728",
    "league-exploiter": "#ff7f0e",
}
ROLE_TAGS = {"scripted": "S", "external": "X", "main": "M", "main-exploiter": "ME", "league-exploiter": "LE"}


def role_label(name: str, role: str, champion: str | None = None) -> str:
    """A member's label on the league card: its name, its role's tag, and '(champion)' for the champion."""
    return f"{name} [{ROLE_TAGS[role]}]" + (" (champion)" if name == champion else "")


def _role_legend(ax: Any, roles: Collection[str], champion: str | None, above: bool = False) -> None:
    """A legend naming every role present (its colour and tag), and the champion's mark;
    `above` puts it in one row between the title and the axes, off the data."""
    from matplotlib.patches import Patch

    handles = [Patch(color=ROLE_COLORS[r], label=f"{ROLE_TAGS[r]} {r}") for r in ROLE_COLORS if r in roles]
    if champion is not None:
        handles.append(Patch(facecolor="none", edgecolor="black", linewidth=2.0, label="champion candidate"))
    if above:
        ax.legend(
            handles=handles, fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles),
            frameon=False,
        )  # fmt: skip
    else:
        ax.legend(handles=handles, fontsize="small", loc="lower right")


def _plot_ratings(board: Sequence[LeaderRow], history: list[RatingRow], champion: str | None, path: Path) -> None:
    """Left: each member's Bradley-Terry rating now with its 95% interval, coloured by role, the
    champion in bold; right: the ratings over time (the history each evaluation appends)."""
    import datetime as dt

    import matplotlib.pyplot as plt

    rated = [r for r in board if r.games]
    fig, (now_ax, ax) = plt.subplots(
        1, 2, figsize=(15, max(5.0, 0.35 * len(rated) + 2.0)), gridspec_kw={"width_ratios": [1, 1.4]}
    )
    for y, r in enumerate(reversed(rated)):
        color = ROLE_COLORS[r.role]
        now_ax.errorbar(
            r.bt, y, xerr=[[r.bt - r.bt_low], [r.bt_high - r.bt]], fmt="o", color=color, capsize=3,
            markersize=9 if r.name == champion else 5, markeredgecolor="black" if r.name == champion else color,
        )  # fmt: skip
    now_ax.set_yticks(range(len(rated)), [role_label(r.name, r.role, champion) for r in reversed(rated)])
    for tick, r in zip(now_ax.get_yticklabels(), reversed(rated)):
        tick.set_color(ROLE_COLORS[r.role])
        tick.set_fontweight("bold" if r.name == champion else "normal")
    now_ax.set_xlabel("Bradley-Terry rating (Elo scale, weak = 1000), 95% interval")
    now_ax.set_title("Ratings now, by role")
    if rated:
        _role_legend(now_ax, {r.role for r in rated}, champion)
    else:
        now_ax.text(0.5, 0.5, "no games yet", transform=now_ax.transAxes, ha="center", va="center")
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


def _plot_h2h(
    rate: np.ndarray,
    count: np.ndarray,
    names: Sequence[str],
    roles: Sequence[str],
    champion: WorstCase | None,
    path: Path,
) -> None:
    """The head-to-head matrix, every member labelled and coloured by role, the champion's row boxed."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    size = max(5.0, 0.6 * len(names) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 2.0, size + 0.5))
    image = ax.imshow(np.ma.masked_invalid(rate), vmin=0.0, vmax=1.0, cmap="RdYlGn")
    best = champion.member if champion is not None else None
    labels = [role_label(n, r, best) for n, r in zip(names, roles)]
    ax.set_xticks(range(len(names)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels)
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        for tick, name, role in zip(ticks, names, roles):
            tick.set_color(ROLE_COLORS[role])
            tick.set_fontweight("bold" if name == best else "normal")
    for i in range(len(names)):
        for j in range(len(names)):
            if count[i, j]:
                ax.text(j, i, f"{rate[i, j]:.2f}\n{count[i, j]}", ha="center", va="center", fontsize=7)
    title = "Row member's score rate against column member (draws half; games below)"
    if best is not None:
        i = list(names).index(best)
        ax.add_patch(Rectangle((-0.5, i - 0.5), len(names), 1.0, fill=False, edgecolor="black", linewidth=2.0))
        title += f"\nchampion candidate {best}: worst case {champion.describe()}"
    ax.set_title(title, fontsize="medium", pad=24)
    if names:
        _role_legend(ax, set(roles), best, above=True)
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


def plot(league_dir: str | Path, prefix: str, min_games: int = MIN_GAMES) -> list[Path]:
    """Write the league card, PREFIX_ratings.png and PREFIX_h2h.png; returns their paths.

    The ratings plot shows every member's rating now with its interval, by role, and the
    history each `league eval` appends (members with games only; a league with no history
    yet shows the current ratings as its one point). The matrix lists members best first,
    each marked with its role, the champion candidate's row boxed and its worst case in
    the title.
    """
    import time

    import matplotlib

    matplotlib.use("Agg")
    ratings_path, h2h_path = plot_paths(prefix)
    board = leaderboard(league_dir, min_games=min_games)
    champion = choose_champion(board)
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
        _plot_ratings(board, history, champion.name if champion else None, ratings_path)
        _plot_h2h(rate, count, order, [r.role for r in board], champion.worst if champion else None, h2h_path)
    except OSError as exc:
        raise LeagueError(f"cannot write {exc.filename or ratings_path}: {exc.strerror or exc}") from None
    return [ratings_path, h2h_path]
