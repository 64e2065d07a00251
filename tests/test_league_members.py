"""League members: kinds, adding an ONNX agent through the CLI, and playing it in the league."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import contract_metadata, contract_model

from league.db import LeagueDB
from league.members import LeagueError, Member, file_member, load_policy, scripted_members
from league.runner import _policy


def _onnx_agent(path: Path) -> Path:
    """A tiny recurrent graph that follows the export contract (docs/ARCHITECTURE.md)."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(18, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=(18, 2)).astype(np.float32), "u"),
        numpy_helper.from_array(np.array(-1.0, dtype=np.float32), "lo"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "hi"),
    ]
    nodes = [
        helper.make_node("MatMul", ["obs", "w"], ["a"]),
        helper.make_node("Add", ["a", "prev_action"], ["b"]),
        helper.make_node("Clip", ["b", "lo", "hi"], ["action"]),
        helper.make_node("MatMul", ["obs", "u"], ["c"]),
        helper.make_node("Add", ["c", "state"], ["d"]),
        helper.make_node("Tanh", ["d"], ["next_state"]),
    ]
    metadata = contract_metadata(2, 1, 1, preset="tiny", train_step="50")
    model = contract_model("member", nodes, inits, 2, metadata)
    onnx.save(model, path)
    return path


def test_a_checkpoint_plays_with_its_runs_action_repeat(tmp_path: Path) -> None:
    from agent.config import config_to_dict, make_config
    from agent.dreamer.agent import ActingPolicy, BatchActingPolicy, DreamerAgent
    from agent.training import checkpoint as ckpt
    from league.members import load_batch_player, load_player

    cfg = make_config("tiny", ["train.action_repeat=2"])
    payload = {"preset": "tiny", "config": config_to_dict(cfg), "model": DreamerAgent(cfg).state_dict()}
    path = ckpt.save(tmp_path / ckpt.CHECKPOINT_FILE, {**payload, "counters": {"env_steps": 0}})
    single = load_player(str(tmp_path))
    assert isinstance(single, ActingPolicy) and single.action_repeat == 2
    batch = load_batch_player(str(path), 3)
    assert isinstance(batch, BatchActingPolicy) and batch.action_repeat == 2
    rng = np.random.default_rng(0)
    single.reset()
    first = single.act(rng.normal(size=18))
    np.testing.assert_array_equal(single.act(rng.normal(size=18)), first)  # held for the second frame


def test_member_rows_are_checked() -> None:
    with pytest.raises(LeagueError, match="unknown member kind 'bot'; choices: scripted, snapshot, external"):
        Member("x", "bot", path="/x")
    with pytest.raises(LeagueError, match="scripted members have no path"):
        Member("x", "external")
    with pytest.raises(LeagueError, match="non-empty"):
        Member(" x", "scripted")
    names = [m.name for m in scripted_members()]
    from agent.players.scripted import SCRIPTED

    assert names == list(SCRIPTED)


def test_add_an_onnx_agent_and_play_it(tmp_path: Path) -> None:
    from agent.cli.main import main

    agent = _onnx_agent(tmp_path / "agent.onnx")
    league = tmp_path / "league"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "league",
            "add",
            "mine",
            str(agent),
            "--league",
            str(league),
            "--kind",
            "snapshot",
            "--parent-run",
            "run1",
            "--step",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    again = runner.invoke(main, ["league", "add", "mine", str(agent), "--league", str(league)])
    assert again.exit_code == 1 and "'mine' already exists" in again.output
    with LeagueDB(league) as db:
        mine = db.member("mine")
        assert {m.name for m in db.members()} >= {"mine", "weak", "still"}
    assert (mine.kind, mine.path, mine.parent_run, mine.step) == ("snapshot", str(agent.resolve()), "run1", 50)

    result = runner.invoke(
        main,
        [
            "league",
            "eval",
            "--league",
            str(league),
            "--members",
            "mine,weak",
            "--games-per-pair",
            "2",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "played 2 matches" in result.output
    with LeagueDB(league) as db:
        assert {(m.player1, m.player2) for m in db.matches()} == {("mine", "weak"), ("weak", "mine")}


def test_file_member_refuses_what_does_not_act(tmp_path: Path) -> None:
    with pytest.raises(LeagueError, match="no such file"):
        file_member("x", tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_text("garbage")
    with pytest.raises(LeagueError, match="does not load as a player"):
        file_member("x", bad)


def test_a_member_that_stops_loading_fails_the_run_cleanly(tmp_path: Path) -> None:
    import sqlite3

    from league.db import DB_NAME
    from league.runner import evaluate

    agent = _onnx_agent(tmp_path / "agent.onnx")
    league = tmp_path / "league"
    with LeagueDB(league, create=True) as db:
        db.start_with(scripted_members())
        db.add_members([file_member("gone", agent)])
    agent.unlink()
    with pytest.raises(LeagueError, match="match .*gone.* failed: ValueError: ONNX file .* does not exist"):
        evaluate(league, games_per_pair=1, workers=0, only=["gone", "weak"], progress=False)
    with sqlite3.connect(league / DB_NAME) as conn:
        assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM matches").fetchone()[0] == 0


def test_workers_load_a_learned_member_once_and_scripted_ones_per_game(tmp_path: Path) -> None:
    agent = _onnx_agent(tmp_path / "agent.onnx")
    member = file_member("mine", agent)
    assert _policy(member, seed=1) is _policy(member, seed=2)
    twin = file_member("twin", agent)  # same file, another member: its own recurrent state
    assert _policy(twin, seed=1) is not _policy(member, seed=1)
    weak = Member("weak", "scripted")
    assert _policy(weak, seed=1) is not _policy(weak, seed=1)
    a, b = load_policy(weak, seed=3), load_policy(weak, seed=3)
    obs = np.zeros(18)
    assert all(np.array_equal(a.act(obs), b.act(obs)) for _ in range(5))
