"""League database: schema guard, one row per match, claims that survive crashes, concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import one_line_error, run_read_only, simulate_read_only

from league.db import DB_NAME, SCHEMA_VERSION, LeagueDB, MatchKey, MatchRecord, RatingRow
from league.members import LeagueError, Member
from league.schedule import make_task


def _members(*names: str) -> list[Member]:
    return [Member(name=n, kind="scripted", created=1.0) for n in names]


def _record(first: str, second: str, index: int, score: tuple[int, int] = (1, 0)) -> MatchRecord:
    task = make_task(first, second, index)
    return MatchRecord(task.key, task.player1, task.player2, task.seed, (1, 0, 0, 0), *score, 1000, 0.5, time.time())


def test_missing_league_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LeagueError, match="no league at"):
        LeagueDB(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_newer_schema_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with LeagueDB(tmp_path, create=True) as db:
        db.start_with(_members("weak", "still"))
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.raises(LeagueError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        LeagueDB(tmp_path, create=True)
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "league", "eval", "--league", str(tmp_path), "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "newer than this hockey-agent" in out.stderr
    assert (tmp_path / DB_NAME).read_bytes() == before


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("CREATE TABLE things (x)")
    conn.close()
    with pytest.raises(LeagueError, match="not a league database"):
        LeagueDB(tmp_path)
    (tmp_path / DB_NAME).write_bytes(b"garbage " * 100)
    with pytest.raises(LeagueError, match="cannot use .* as a league database: file is not a database"):
        LeagueDB(tmp_path)


def test_members_start_once_and_names_stay_unique(tmp_path: Path) -> None:
    with LeagueDB(tmp_path, create=True) as db:
        assert db.start_with(_members("weak", "still"))
        assert not db.start_with(_members("strong"))
        with pytest.raises(LeagueError, match="'weak' already exists"):
            db.add_members([Member("x", "external", path="/x.onnx"), *_members("weak")])
        assert [m.name for m in db.members()] == ["still", "weak"]  # the failed add wrote nothing
        with pytest.raises(LeagueError, match="unknown member 'nobody'; members: still, weak"):
            db.member("nobody")


def test_a_match_is_written_once(tmp_path: Path) -> None:
    with LeagueDB(tmp_path, create=True) as db:
        db.start_with(_members("weak", "still"))
        assert db.record(_record("weak", "still", 0))
        assert not db.record(_record("still", "weak", 0, score=(0, 3)))
        [stored] = db.matches()
        assert (stored.player1, stored.player2, stored.score1) == ("still", "weak", 1)
        assert stored.rounds == (1, 0, 0, 0)
        assert db.played_indices() == {("still", "weak"): {0}}


def test_claims_block_live_owners_and_pass_on_from_dead_ones(tmp_path: Path) -> None:
    key = MatchKey("still", "weak", 0)
    with LeagueDB(tmp_path, create=True) as first, LeagueDB(tmp_path) as second:
        first.start_with(_members("weak", "still"))
        assert first.claim(key)
        assert first.claim(key)  # its own claim again
        assert not second.claim(key)  # this process is alive
        first.release([key])
        assert second.claim(key)
        # a claim left by a process that is gone (SIGKILL) is taken over
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        with sqlite3.connect(tmp_path / DB_NAME) as conn:
            conn.execute("UPDATE claims SET owner = 'other', pid = ?", (dead.pid,))
        assert first.claim(key)
        # and so is an expired lease, even from a live process
        with sqlite3.connect(tmp_path / DB_NAME) as conn:
            conn.execute("UPDATE claims SET owner = 'other', pid = ?, expires = 0", (os.getpid(),))
        assert second.claim(key)
        # once played, nobody claims it
        assert second.record(_record("weak", "still", 0))
        assert not first.claim(key)
        assert sqlite3.connect(tmp_path / DB_NAME).execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def _writer(directory: str, worker: int, n: int) -> None:
    with LeagueDB(directory) as db:
        for i in range(n):
            db.record(_record("still", "weak", worker * n + i))
            db.add_ratings([RatingRow("elo", "weak", 1000.0, None, None, i, time.time())])


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    with LeagueDB(tmp_path, create=True) as db:
        db.start_with(_members("weak", "still"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    with LeagueDB(tmp_path) as db:
        assert sorted(m.key.game_index for m in db.matches()) == list(range(120))
        assert len(db.rating_history("elo")) == 120
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _league_with_a_match(directory: Path) -> bytes:
    with LeagueDB(directory, create=True) as db:
        db.start_with(_members("weak", "still"))
        db.record(_record("weak", "still", 0))
    return (directory / DB_NAME).read_bytes()


def test_read_only_league_is_read_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from agent.cli.main import main
    from league.report import leaderboard

    before = _league_with_a_match(tmp_path)
    simulate_read_only(monkeypatch, tmp_path)
    with LeagueDB(tmp_path, readonly=True) as db:
        assert [m.name for m in db.members()] == ["still", "weak"] and len(db.matches()) == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db._conn.execute("DELETE FROM matches")
    assert {row.name: row.games for row in leaderboard(tmp_path)} == {"weak": 1, "still": 1}
    runner = CliRunner()
    shown = runner.invoke(main, ["league", "show", "--league", str(tmp_path)])
    assert shown.exit_code == 0 and "weak" in shown.output, shown.output
    for args in (["add", "mine", str(tmp_path / DB_NAME)], ["eval", "--workers", "0"]):
        result = runner.invoke(main, ["league", *args, "--league", str(tmp_path)])
        assert result.exit_code == 1, result.output
        assert f"league directory {tmp_path} is read-only" in one_line_error(result)
    result = runner.invoke(main, ["league", "show", "--league", str(tmp_path), "--plot", str(tmp_path / "p")])
    assert result.exit_code == 1 and f"cannot write {tmp_path / 'p_ratings.png'}" in one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]
    assert (tmp_path / DB_NAME).read_bytes() == before
    with pytest.raises(LeagueError, match=f"cannot create the league directory {tmp_path / 'new'}"):
        LeagueDB(tmp_path / "new", create=True)


def test_league_in_a_really_read_only_directory(tmp_path: Path) -> None:
    league = tmp_path / "league"
    before = _league_with_a_match(league)
    cli = [sys.executable, "-m", "agent.cli", "league"]
    shown = run_read_only(league, [*cli, "show", "--league", str(league)])
    assert shown.returncode == 0 and "weak" in shown.stdout, shown.stdout + shown.stderr
    for args in (["add", "mine", str(league / DB_NAME)], ["eval", "--workers", "0"]):
        result = run_read_only(league, [*cli, *args, "--league", str(league)])
        assert result.returncode == 1 and f"league directory {league} is read-only" in one_line_error(result)
    plot = run_read_only(league, [*cli, "show", "--league", str(league), "--plot", str(league / "p")])
    assert plot.returncode == 1 and f"cannot write {league / 'p_ratings.png'}" in one_line_error(plot)
    assert sorted(p.name for p in league.iterdir()) == [DB_NAME]
    assert (league / DB_NAME).read_bytes() == before
