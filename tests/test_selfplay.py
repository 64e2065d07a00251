"""Self-play end to end: tiny training leaves rated ONNX snapshots in the league database."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agent.config import make_config
from agent.dreamer.agent import DreamerAgent
from agent.players.scripted import SCRIPTED
from league.db import LeagueDB
from selfplay.loop import SELF, LeagueSampler, run_selfplay

torch.set_num_threads(1)

TINY_SELFPLAY = [
    "train.steps=480",
    "train.prefill=120",
    "train.snapshot_every=160",
    "train.snapshot_games=1",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "train.envs=4",
    "train.train_ratio=16",
    "train.log_every=5",
    "train.device=cpu",
]


@pytest.mark.slow
def test_selfplay_end_to_end(tmp_path):
    cfg = make_config("tiny", TINY_SELFPLAY)
    result = run_selfplay(cfg, tmp_path / "run", preset="tiny", progress=False)

    assert result["env_steps"] == 480 and not result["interrupted"]
    assert (tmp_path / "run" / "agent.onnx").is_file()
    with LeagueDB(tmp_path / "run" / "league") as db:
        members = {m.name: m for m in db.members()}
        snapshots = sorted((m for m in members.values() if m.kind == "snapshot"), key=lambda m: m.step)
        assert [m.step for m in snapshots] == [160, 320, 480]
        assert all(m.parent_run == "run" for m in snapshots)
        assert set(SCRIPTED) <= set(members)
        games = db.games()
        for snap in snapshots:  # every snapshot played every other member once
            opponents = {
                g.player2 if g.player1 == snap.name else g.player1 for g in games if snap.name in (g.player1, g.player2)
            }
            assert opponents == set(members) - {snap.name}
        rated = {(r.kind, r.member) for r in db.rating_history()}
        for kind in ("elo", "bt", "openskill"):
            assert all((kind, s.name) in rated for s in snapshots)
    # the learner met league opponents, and logged the snapshot rows
    import json

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    league_rows = [r for r in rows if r["kind"] == "league"]
    assert [r["step"] for r in league_rows] == [160, 320, 480]
    assert all("league/bt" in r and f"pfsp/{SELF}" in r for r in league_rows)


def test_sampler_draws_by_pfsp_and_restores(tmp_path):
    cfg = make_config("tiny", ["train.latest_share=0.25", "train.scripted_share=0.75"])
    sampler = LeagueSampler(cfg, tmp_path / "league")
    learner = SimpleNamespace(agent=DreamerAgent(cfg))
    sampler.bind(learner)
    for _ in range(30):  # the learner always beats 'still', always loses to 'strong'
        sampler.report("still", 1)
        sampler.report("strong", -1)
    probs = sampler.probabilities()
    assert probs[SELF] == pytest.approx(0.25)
    assert probs["strong"] > probs["weak"] > probs["still"]
    names = [sampler.sample(0)[0] for _ in range(2000)]
    assert abs(names.count("strong") / 2000 - probs["strong"]) < 0.04

    state = sampler.state_dict()
    again = LeagueSampler(cfg, tmp_path / "league")
    again.load_state_dict(state)
    again.bind(learner)
    assert again.probabilities() == probs
    assert [again.sample(1)[0] for _ in range(50)] == [sampler.sample(1)[0] for _ in range(50)]
    # one instance per opponent and game slot (recurrent state), each playing valid actions
    seen = {}
    for _ in range(40):
        name, player = sampler.sample(3)
        assert seen.setdefault(name, player) is player
        player.reset()
        action = player.act(np.zeros(18))
        assert action.shape == (4,) and np.all(np.abs(action) <= 1)
    assert SELF in seen and len(seen) > 2


def test_the_latest_self_holds_its_actions_for_the_action_repeat(tmp_path):
    cfg = make_config("tiny", ["train.latest_share=1", "train.scripted_share=0", "train.action_repeat=3"])
    sampler = LeagueSampler(cfg, tmp_path / "league")
    sampler.bind(SimpleNamespace(agent=DreamerAgent(cfg)))
    name, player = sampler.sample(0)
    assert name == SELF and player.action_repeat == 3


def test_selfplay_command_defaults_yield_to_the_user(monkeypatch):
    """`train --selfplay` alone gets the CPU-sized defaults; --steps / --set still win."""
    from click.testing import CliRunner

    import agent.cli.train as train_cmd
    from agent.config import PRESETS

    seen = {}
    monkeypatch.setattr(
        train_cmd,
        "_selfplay",
        lambda cfg, run_dir, resume, preset, progress: seen.update(cfg=cfg, preset=preset, run_dir=run_dir),
    )
    res = CliRunner().invoke(train_cmd.train, ["--selfplay"])
    assert res.exit_code == 0, res.output
    assert seen["preset"] == "selfplay" and seen["run_dir"].name.startswith("selfplay-s0-")
    assert seen["cfg"] == PRESETS["selfplay"] and seen["cfg"].model == PRESETS["tiny"].model
    res = CliRunner().invoke(train_cmd.train, ["--selfplay", "--steps", "600", "--set", "train.snapshot_every=300"])
    assert res.exit_code == 0, res.output
    assert (seen["cfg"].train.steps, seen["cfg"].train.snapshot_every) == (600, 300)
    res = CliRunner().invoke(train_cmd.train, ["--selfplay", "--preset", "small", "--steps", "10"])
    assert res.exit_code == 0 and seen["preset"] == "small" and seen["cfg"].model.deter == 512


def test_a_failing_snapshot_saves_a_checkpoint_and_is_reported_in_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import selfplay.loop
    from agent.cli.train import train
    from agent.training.checkpoint import load
    from league.members import LeagueError

    def snapshot(self, trainer):
        raise LeagueError("the league database is locked")

    monkeypatch.setattr(selfplay.loop.Snapshotter, "snapshot", snapshot)
    run = tmp_path / "run"
    args = ["--selfplay", "--preset", "tiny", "--run-dir", str(run), "--no-progress"]
    res = CliRunner().invoke(train, [*args, *[a for o in TINY_SELFPLAY for a in ("--set", o)]])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert res.output.splitlines()[-1] == (
        "Error: training stopped by an error at env step 160: LeagueError: the league database is locked; "
        f"a checkpoint was saved, continue with: hockey-agent train --selfplay --resume --run-dir {run} "
        f"(traceback in {run / 'error.log'})"
    )
    assert load(run)["counters"]["env_steps"] == 160
