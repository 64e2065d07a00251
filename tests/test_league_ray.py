"""League evaluation on Ray: a clear error without it, the same games on a local instance."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from league.db import LeagueDB
from league.members import LeagueError
from league.runner import evaluate, play_task
from league.schedule import make_task


def test_missing_ray_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(LeagueError, match=r"pip install 'hockey-agent\[ray\]'"):
        evaluate(tmp_path, games_per_pair=1, ray_address="auto", only=["weak", "still"], progress=False)
    with LeagueDB(tmp_path) as db:
        assert db.matches() == []


def test_ray_auto_plays_the_scheduled_games_on_a_local_instance(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'hockey-agent[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = evaluate(tmp_path, games_per_pair=2, ray_address="auto", only=["weak", "still"], progress=False)
    finally:
        ray.shutdown()
    assert summary.played == 2
    with LeagueDB(tmp_path) as db:
        members = {m.name: m for m in db.members()}
        stored = db.matches()
    for match in stored:
        task = make_task(match.key.pair_a, match.key.pair_b, match.key.game_index)
        local = play_task(task, members[task.player1], members[task.player2])
        assert (local.rounds, local.score1, local.score2, local.steps) == (
            match.rounds,
            match.score1,
            match.score2,
            match.steps,
        )
