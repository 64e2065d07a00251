"""`league eval` end to end: scripted strengths recovered, concurrent runs, SIGKILL, CLI errors.

The games are real (normal mode, 4 rounds each) and their seeds are fixed by the
schedule, so these tests play the same games every time.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from league.db import DB_NAME, LeagueDB
from league.report import leaderboard
from league.runner import play_task
from league.schedule import make_task

FOUR = "still,random,weak,strong"
# 24 games a pair: strong's interval then clears still's by ~170 points and strong sits
# ~60 above weak (with 8 the intervals overlap; strong draws most games against still)
GAMES = 24


def _env() -> dict[str, str]:
    return {**os.environ, "SDL_VIDEODRIVER": "dummy", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}


def _eval_cmd(league: Path, games: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agent.cli",
        "league",
        "eval",
        "--league",
        str(league),
        "--games-per-pair",
        str(games),
        "--workers",
        "1",
        "--members",
        FOUR,
    ]


def _check_consistent(league: Path, expected: int) -> None:
    conn = sqlite3.connect(league / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT pair_a || '/' || pair_b || '/' || game_index) FROM matches"
        ).fetchone()
        assert rows == distinct == expected
        assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    finally:
        conn.close()


@pytest.fixture(scope="module")
def concurrent_league(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Two `league eval` processes started together on one new league."""
    league = tmp_path_factory.mktemp("concurrent") / "league"
    procs = [
        subprocess.Popen(
            _eval_cmd(league, GAMES), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
    return league, outputs


def test_concurrent_evals_split_the_work_without_duplicates(concurrent_league: tuple[Path, list[str]]) -> None:
    league, outputs = concurrent_league
    _check_consistent(league, expected=6 * GAMES)
    played = [int(re.search(r"played (\d+) matches", out).group(1)) for out in outputs]
    assert sum(played) == 6 * GAMES and min(played) > 0, outputs
    with LeagueDB(league) as db:
        assert {m.name for m in db.members()} == {"still", "random", "weak", "strong", "shooter", "keeper"}
        assert db.rating_history("bt")


def test_scripted_strengths_are_recovered(concurrent_league: tuple[Path, list[str]]) -> None:
    league, _ = concurrent_league
    rows = {r.name: r for r in leaderboard(league)}
    strong, weak, rnd, still = rows["strong"], rows["weak"], rows["random"], rows["still"]
    assert weak.bt == pytest.approx(1000.0)
    assert strong.bt > weak.bt > max(rnd.bt, still.bt), rows
    assert strong.bt_low > still.bt_high, (strong, still)
    assert strong.games == weak.games == 3 * GAMES
    assert rows["keeper"].games == 0


def test_show_prints_the_leaderboard_and_plots(concurrent_league: tuple[Path, list[str]], tmp_path: Path) -> None:
    from agent.cli.main import main

    league, _ = concurrent_league
    result = CliRunner().invoke(main, ["league", "show", "--league", str(league), "--plot", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "Bradley-Terry" in result.output and "strong" in result.output
    for suffix in ("ratings", "h2h"):
        png = tmp_path / f"p_{suffix}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sigkill_mid_eval_leaves_a_consistent_league_that_a_rerun_completes(tmp_path: Path) -> None:
    league = tmp_path / "league"
    games = 4
    proc = subprocess.Popen(
        _eval_cmd(league, games),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        written = 0
        while time.time() < deadline and written < 3:
            time.sleep(0.1)
            if (league / DB_NAME).exists():
                try:
                    with sqlite3.connect(league / DB_NAME, timeout=5) as conn:
                        written = conn.execute("SELECT COUNT(*) FROM matches").fetchone()[0]
                except sqlite3.OperationalError:
                    written = 0  # the schema is not there yet
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its worker process, if it outlived it
        except ProcessLookupError:
            pass
    with sqlite3.connect(league / DB_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = conn.execute("SELECT COUNT(*) FROM matches").fetchone()[0]
    assert 3 <= before < 6 * games, "the kill should land in the middle of the run"

    rerun = subprocess.run(_eval_cmd(league, games), capture_output=True, text=True, env=_env(), timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"played {6 * games - before} matches" in rerun.stdout
    _check_consistent(league, expected=6 * games)
    # a match written by the killed run is exactly the game its schedule describes
    with LeagueDB(league) as db:
        first = db.matches()[0]
        members = {m.name: m for m in db.members()}
    task = make_task(first.key.pair_a, first.key.pair_b, first.key.game_index)
    replay = play_task(task, members[task.player1], members[task.player2])
    assert (replay.rounds, replay.score1, replay.score2, replay.steps) == (
        first.rounds,
        first.score1,
        first.score2,
        first.steps,
    )


def test_cli_errors_are_clear_and_write_nothing(tmp_path: Path) -> None:
    from agent.cli.main import main

    runner = CliRunner()
    league = tmp_path / "league"
    result = runner.invoke(main, ["league", "show", "--league", str(league)])
    assert result.exit_code == 1 and "no league at" in result.output

    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"not a model")
    result = runner.invoke(main, ["league", "add", "mine", str(corrupt), "--league", str(league)])
    assert result.exit_code == 1 and "does not load as a player" in result.output
    assert not league.exists()

    result = runner.invoke(main, ["league", "add", "weak", str(corrupt), "--league", str(league)])
    assert result.exit_code == 1 and "scripted player's name" in result.output

    result = runner.invoke(
        main, ["league", "eval", "--league", str(league), "--members", "weak,nobody", "--workers", "0"]
    )
    assert result.exit_code == 1 and "unknown member 'nobody'; members: keeper, random" in result.output
    with sqlite3.connect(league / DB_NAME) as conn:
        assert conn.execute("SELECT COUNT(*) FROM matches").fetchone()[0] == 0

    result = runner.invoke(main, ["league", "eval", "--league", str(league), "--schedule", "best"])
    assert result.exit_code == 2 and "round-robin" in result.output


def test_inline_eval_records_what_it_played(tmp_path: Path) -> None:
    from league.runner import evaluate

    summary = evaluate(tmp_path, games_per_pair=2, workers=0, only=["weak", "still"], progress=False)
    assert summary.played == 2 and summary.skipped == 0
    again = evaluate(tmp_path, games_per_pair=2, workers=0, only=["weak", "still"], progress=False)
    assert again.played == 0
    with LeagueDB(tmp_path) as db:
        stored = db.matches()
    assert [(m.player1, m.player2) for m in stored] == [("still", "weak"), ("weak", "still")]
    assert [(m.score1, m.score2, m.rounds) for m in stored] == [(r.score1, r.score2, r.rounds) for r in summary.records]


def test_uncertain_schedule_adds_games_to_the_least_known_pair(tmp_path: Path) -> None:
    from league.runner import evaluate

    three = ["weak", "still", "random"]
    evaluate(tmp_path, games_per_pair=2, workers=0, only=three, progress=False)
    summary = evaluate(tmp_path, games_per_pair=3, workers=0, schedule="uncertain", only=three, progress=False)
    assert summary.played == 3  # one pair of three (a quarter, at least one), 3 more games
    with LeagueDB(tmp_path) as db:
        played = db.played_indices()
    assert sorted(len(v) for v in played.values()) == [2, 2, 5]


def test_show_on_a_league_without_games(tmp_path: Path) -> None:
    import warnings

    from agent.cli.main import main
    from league.members import scripted_members

    with LeagueDB(tmp_path, create=True) as db:
        db.start_with(scripted_members())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib complaints about an empty plot
        result = CliRunner().invoke(main, ["league", "show", "--league", str(tmp_path), "--plot", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "weak" in result.output and (tmp_path / "p_ratings.png").is_file() and (tmp_path / "p_h2h.png").is_file()


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone too (dead, waiting for its new parent to reap it)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_workers_end_with_a_sigkilled_eval(tmp_path: Path) -> None:
    command = _eval_cmd(tmp_path / "league", 8)
    command[command.index("--workers") + 1] = "2"
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), start_new_session=True
    )
    children: set[int] = set()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(children) < 2:  # both workers (and the resource tracker)
            time.sleep(0.2)
            children = _children(proc.pid)
        assert len(children) >= 2, "the workers never started"
        time.sleep(1.0)  # let them get into their games
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(pid) for pid in children):
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)], "workers outlived the killed eval"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_fallback_watch_ends_a_worker_whose_parent_dies(tmp_path: Path) -> None:
    """Where prctl is missing, a thread polling the parent pid ends the worker."""
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import os, time; from league.runner import _die_with_parent; "
        "_die_with_parent(os.getppid(), use_prctl=False); time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None
    worker = int(proc.stdout.readline())
    try:
        time.sleep(0.5)
        assert _alive(worker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 5
        while time.time() < deadline and _alive(worker):
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
