"""The league card: worst-case win rates from the games, the champion they choose, `league show` and its plots."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from league.db import LeagueDB, MatchRecord
from league.members import Member, role_of, scripted_members
from league.ratings import Game
from league.report import LeaderRow, WorstCase, choose_champion, role_label, worst_cases
from league.schedule import make_task


def _games(pair: tuple[str, str], scores: list[tuple[int, int]]) -> list[Game]:
    return [Game(pair[0], pair[1], a, b) for a, b in scores]


def test_the_worst_case_is_the_weakest_head_to_head_with_enough_games() -> None:
    games = [
        *_games(("a", "b"), [(3, 1), (2, 0), (1, 1), (0, 2)]),  # a: 2 wins, 1 draw, 1 loss = 0.625
        *_games(("c", "a"), [(2, 1), (1, 1), (0, 3), (3, 2)]),  # a: 1 win, 1 draw, 2 losses = 0.375
        *_games(("a", "d"), [(0, 4)]),  # one game only: left out
        *_games(("e", "a"), [(1, 0), (1, 0), (1, 0), (0, 1)]),  # a: 0.25 over 4 games ...
        *_games(("f", "a"), [(1, 0), (1, 1)]),  # ... and over 2 games: the pair with more games is the worst
    ]
    names = ["a", "b", "c", "d", "e", "f", "g"]
    worst = worst_cases(games, names, min_games=2)
    assert worst["a"] == WorstCase("a", "e", 0.25, 4, counted=4, left_out=2, min_games=2)
    assert worst["a"].describe() == "25% vs e over 4 games (2 members left out: fewer than 2 games)"
    assert worst["b"] == WorstCase("b", "a", 0.375, 4, counted=1, left_out=5, min_games=2)
    assert worst["g"].opponent is None and math.isnan(worst["g"].win) and worst["g"].left_out == 6
    assert worst["g"].describe().startswith("no opponent with enough games yet")
    assert worst_cases(games, names, min_games=1)["a"].opponent == "d"  # 0 of 1 game
    with pytest.raises(ValueError, match="min_games must be >= 1"):
        worst_cases(games, names, min_games=0)


def _row(name: str, bt: float, win: float, role: str = "main", parent: str = "r/main-0", step: int = 0) -> LeaderRow:
    worst = WorstCase(name, "x", win, 4, 3, 0, 2)
    return LeaderRow(name, "snapshot", bt, bt, bt, bt, 0.0, 4, 0, 0, 0, role, parent, step, worst)


def test_the_champion_is_chosen_by_its_worst_case_not_its_rating() -> None:
    rated = _row("r-main-0-100", bt=1400.0, win=0.10, step=100)  # best rating, beaten by one member
    robust = _row("r-main-0-50", bt=1100.0, win=0.60, step=50)
    exploiter = _row("r-main-exploiter-0-80", bt=1500.0, win=0.90, role="main-exploiter", parent="r/main-exploiter-0")
    other_run = _row("s-main-0-10", bt=900.0, win=0.95, parent="s/main-0", step=10)
    rows = [rated, robust, exploiter, other_run]
    assert choose_champion(rows) == other_run
    assert choose_champion(rows, runs=["r/main-0", "r/main-1"]) == robust
    tied = _row("r-main-1-70", bt=1200.0, win=0.60, parent="r/main-1", step=70)  # tie: the higher rating
    assert choose_champion([*rows, tied], runs=["r/main-0", "r/main-1"]) == tied
    assert choose_champion([exploiter]) is None
    single = _row("solo-160", bt=800.0, win=0.2, parent="solo", step=160)  # one main agent trained alone
    assert choose_champion([single, exploiter], runs=["solo"]) == single


def test_a_snapshot_s_role_is_read_from_its_parent_run() -> None:
    def snap(parent: str | None) -> Member:
        return Member("s", "snapshot", "/s.onnx", parent)

    assert role_of(snap("run/main-1")) == "main"
    assert role_of(snap("run/main-exploiter-0")) == "main-exploiter"
    assert role_of(snap("runs/x/league-exploiter-12")) == "league-exploiter"
    assert role_of(snap("run")) == role_of(snap(None)) == role_of(snap("main-exploiter-0")) == "main"
    assert role_of(Member("weak", "scripted")) == "scripted"
    assert role_of(Member("t", "external", "/t.onnx")) == "external"
    assert role_label("r-main-0-5", "main", champion="r-main-0-5") == "r-main-0-5 [M] (champion)"
    assert role_label("e", "league-exploiter") == "e [LE]"


def _hand_made_league(directory: Path) -> None:
    """A main agent's two snapshots, one of each exploiter and an external agent, with games between them.

    r-main-0-200 beats everyone but loses 3 of 4 to the main exploiter; r-main-0-100 wins
    half its games against everyone: the older snapshot is the more robust one.
    """
    snaps = [
        ("r-main-0-100", "r/main-0", 100),
        ("r-main-0-200", "r/main-0", 200),
        ("r-main-exploiter-0-150", "r/main-exploiter-0", 150),
        ("r-league-exploiter-0-150", "r/league-exploiter-0", 150),
    ]
    with LeagueDB(directory, create=True) as db:
        db.start_with([m for m in scripted_members() if m.name in ("weak", "strong")])
        db.add_members([Member(n, "snapshot", f"/nowhere/{n}.onnx", p, s, 1e9 + s) for n, p, s in snaps])
        db.add_members([Member("theirs", "external", "/nowhere/theirs.onnx", None, None, 2e9)])

        def play(first: str, second: str, scores: list[tuple[int, int]]) -> None:
            for i, (a, b) in enumerate(scores):
                task = make_task(first, second, i)
                s1, s2 = (a, b) if task.player1 == first else (b, a)
                db.record(MatchRecord(task.key, task.player1, task.player2, task.seed, (0,) * 4, s1, s2, 1000,
                                      0.1, time.time()))  # fmt: skip

        names = ["weak", "strong", *(n for n, _, _ in snaps), "theirs"]
        for other in names:
            if other != "r-main-0-200":
                scores = {"r-main-exploiter-0-150": [(0, 2)] * 3 + [(2, 0)], "r-main-0-100": [(2, 0), (0, 2)] * 2}
                play("r-main-0-200", other, scores.get(other, [(2, 0)] * 4))
            if other not in ("r-main-0-100", "r-main-0-200"):
                play("r-main-0-100", other, [(2, 0), (0, 2)] * 2)


def test_league_show_prints_each_main_agent_s_worst_case_and_the_champion(tmp_path: Path) -> None:
    from agent.cli.main import main

    _hand_made_league(tmp_path / "league")
    result = CliRunner().invoke(
        main, ["league", "show", "--league", str(tmp_path / "league"), "--plot", str(tmp_path / "card")]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = next(line for line in lines if "r-main-exploiter-0-150 " in line and "│" in line)
    assert "main-exploiter" in row
    assert (
        "main agent r/main-0: latest snapshot r-main-0-200, worst case 25% vs r-main-exploiter-0-150 over 4 games"
        in lines
    )
    champion = "champion candidate: r-main-0-100 (main), worst case 50% vs "
    assert any(line.startswith(champion) for line in lines), result.output
    assert (
        next(line for line in lines if "r-main-0-200 " in line and "│" in line)
        .rstrip("│ ")
        .endswith("0.25 (4) vs r-main-exploiter-0-150")
    )
    for suffix in ("ratings", "h2h"):
        assert (tmp_path / f"card_{suffix}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # with 5 games required, no pair counts: every member is left out and there is no champion
    strict = CliRunner().invoke(main, ["league", "show", "--league", str(tmp_path / "league"), "--min-games", "5"])
    assert strict.exit_code == 0 and "champion candidate" not in strict.output
    assert "no opponent with enough games yet (6 members left out: fewer than 5 games)" in strict.output
