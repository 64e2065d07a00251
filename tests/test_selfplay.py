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
from selfplay.loop import SELF, LeagueSampler
from selfplay.run import run_selfplay

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


def test_the_scripted_share_draws_only_the_scripted_opponents_named(tmp_path):
    names = ["train.latest_share=0", "train.scripted_share=1", "train.scripted_opponents=weak,strong"]
    cfg = make_config("tiny", names)
    sampler = LeagueSampler(cfg, tmp_path / "league")
    sampler.bind(SimpleNamespace(agent=DreamerAgent(cfg)))
    assert set(sampler.probabilities()) == {SELF, "weak", "strong"}
    assert {sampler.sample(0)[0] for _ in range(200)} == {"weak", "strong"}
    # every scripted player is still a league member, rated with the rest
    with LeagueDB(tmp_path / "league") as db:
        assert {m.name for m in db.members() if m.kind == "scripted"} == set(SCRIPTED)

    # a run resumed with another scripted group: the restored pool follows the config
    everyone = LeagueSampler(make_config("tiny", names[:2]), tmp_path / "league")
    everyone.report("still", 1)
    sampler.load_state_dict(everyone.state_dict())
    assert set(sampler.probabilities()) == {SELF, "weak", "strong"}
    everyone.load_state_dict(sampler.state_dict())
    assert set(everyone.probabilities()) == {SELF, *SCRIPTED}


def test_the_latest_self_holds_its_actions_for_the_action_repeat(tmp_path):
    cfg = make_config("tiny", ["train.latest_share=1", "train.scripted_share=0", "train.action_repeat=3"])
    sampler = LeagueSampler(cfg, tmp_path / "league")
    sampler.bind(SimpleNamespace(agent=DreamerAgent(cfg)))
    name, player = sampler.sample(0)
    assert name == SELF and player.action_repeat == 3


def test_selfplay_command_defaults_yield_to_the_user(monkeypatch, tmp_path):
    """`train --selfplay` alone gets the CPU-sized defaults in runs/selfplay; --steps / --set still win."""
    from pathlib import Path

    from click.testing import CliRunner

    import agent.cli.train as train_cmd
    from agent.config import PRESETS

    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(
        train_cmd,
        "_selfplay",
        lambda cfg, run_dir, resume, preset, progress, init: seen.update(cfg=cfg, preset=preset, run_dir=run_dir),
    )
    res = CliRunner().invoke(train_cmd.train, ["--selfplay"])
    assert res.exit_code == 0, res.output
    assert seen["preset"] == "selfplay" and seen["run_dir"] == Path("runs") / "selfplay"
    assert seen["cfg"] == PRESETS["selfplay"] and seen["cfg"].model == PRESETS["small"].model
    assert seen["cfg"].train.scripted_opponents == SCRIPTED and seen["cfg"].train.drill_envs == 3
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
        f"a checkpoint was saved, continue with: hockey-agent train --selfplay --run-dir {run} "
        f"(traceback in {run / 'error.log'})"
    )
    assert load(run)["counters"]["env_steps"] == 160


def test_the_main_job_continues_where_it_stopped_and_writes_every_snapshot(tmp_path, monkeypatch):
    """Running the same command again continues the run; each snapshot is also agent.onnx."""
    from click.testing import CliRunner

    from agent.cli.train import train
    from agent.training.checkpoint import load
    from export.runtime import OnnxAgent

    monkeypatch.chdir(tmp_path)
    base = ["--selfplay", "--preset", "tiny", "--no-progress", *[a for o in TINY_SELFPLAY for a in ("--set", o)]]
    first = CliRunner().invoke(train, [*base, "--set", "train.steps=160"])
    assert first.exit_code == 0, first.output
    run = tmp_path / "runs" / "selfplay"
    assert load(run)["counters"]["env_steps"] == 160
    assert OnnxAgent(run / "agent.onnx").train_step == 160
    again = CliRunner().invoke(train, [*base, "--set", "train.steps=240"])
    assert again.exit_code == 0, again.output
    assert "holds a run: continuing it" in again.output
    assert load(run)["counters"]["env_steps"] == 240 and OnnxAgent(run / "agent.onnx").train_step == 240
    with_init = CliRunner().invoke(train, [*base, "--init", str(run)])
    assert with_init.exit_code == 2 and "--init starts a new one" in with_init.output


def test_init_starts_a_new_run_from_another_agents_weights(tmp_path, fast_config):
    import torch

    from agent.training.trainer import Trainer

    source = Trainer(fast_config("train.steps=100", "train.eval_every=0"), tmp_path / "a", progress=False,
                     tensorboard=False)  # fmt: skip
    source.train()
    source.close()
    new = Trainer(fast_config("train.steps=100", "train.seed=7"), tmp_path / "b", progress=False, tensorboard=False,
                  init=tmp_path / "a")  # fmt: skip
    for (name, a), b in zip(source.agent.state_dict().items(), new.agent.state_dict().values()):
        assert torch.equal(a, b), name
    assert new.updates == 0  # a new run: its own counters and optimisers
    new.close()
    # a checkpoint saved before a config field existed (here model.init) starts a run too, whatever
    # that field now says: the field takes its default, and how weights were first drawn is no shape
    data = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    del data["config"]["model"]["init"]
    (tmp_path / "old").mkdir()
    torch.save(data, tmp_path / "old" / "checkpoint.pt")
    # (a run in another product precision takes the same weights: model.compute_dtype is no shape either)
    older = Trainer(fast_config("model.init=official", "model.compute_dtype=bfloat16"), tmp_path / "d",
                    progress=False, tensorboard=False, init=tmp_path / "old")  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(source.agent.state_dict().values(), older.agent.state_dict().values()))
    older.close()
    import pytest

    with pytest.raises(ValueError, match="another model configuration"):
        Trainer(fast_config("model.deter=64"), tmp_path / "c", progress=False, tensorboard=False, init=tmp_path / "a")


def test_init_optimizer_takes_the_sources_moments_and_keeps_its_own_learning_rates(tmp_path, fast_config):
    import pytest
    import torch

    from agent.training.trainer import Trainer

    source = Trainer(fast_config("train.steps=100", "train.eval_every=0"), tmp_path / "a", progress=False,
                     tensorboard=False)  # fmt: skip
    source.train()
    source.close()
    saved = source.agent.optimizer_state()
    assert saved["wm"]["state"], "the source must have taken optimiser steps"
    fresh = Trainer(fast_config("train.seed=7"), tmp_path / "b", progress=False, tensorboard=False,
                    init=tmp_path / "a")  # fmt: skip
    assert not fresh.agent.optimizer_state()["wm"]["state"]  # the default: fresh optimisers
    fresh.close()
    new = Trainer(fast_config("train.seed=7", "train.init_optimizer=true", "optim.wm_lr=3e-4"), tmp_path / "c",
                  progress=False, tensorboard=False, init=tmp_path / "a")  # fmt: skip
    taken = new.agent.optimizer_state()
    for name in ("wm", "actor", "critic"):
        assert taken[name]["state"].keys() == saved[name]["state"].keys()
        for index, moments in saved[name]["state"].items():
            for key, value in moments.items():
                assert torch.equal(torch.as_tensor(taken[name]["state"][index][key]), torch.as_tensor(value))
    assert taken["wm"]["param_groups"][0]["lr"] == 3e-4  # this run's learning rate, not the source's
    assert new.updates == 0
    new.close()
    with pytest.raises(ValueError, match="lacks.*optim.name"):
        Trainer(fast_config("train.init_optimizer=true", "optim.name=laprop"), tmp_path / "d", progress=False,
                tensorboard=False, init=tmp_path / "a")  # fmt: skip


def test_init_replay_takes_the_sources_rows_and_keeps_its_own_sampling(tmp_path, fast_config):
    import shutil

    import numpy as np
    import pytest

    from agent.training.trainer import Trainer

    source = Trainer(fast_config("train.steps=100", "train.eval_every=0"), tmp_path / "a", progress=False,
                     tensorboard=False)  # fmt: skip
    source.train()
    source.close()
    assert source.replay.size.sum() > 0
    empty = Trainer(fast_config("train.seed=7"), tmp_path / "b", progress=False, tensorboard=False,
                    init=tmp_path / "a")  # fmt: skip
    assert empty.replay.size.sum() == 0  # the default: an empty replay
    empty.close()
    new = Trainer(fast_config("train.seed=7", "train.init_replay=true"), tmp_path / "c", progress=False,
                  tensorboard=False, init=tmp_path / "a")  # fmt: skip
    np.testing.assert_array_equal(new.replay.size, source.replay.size)
    np.testing.assert_array_equal(new.replay.obs, source.replay.obs)
    assert not new.replay.queue
    assert new.replay.rng.bit_generator.state == empty.replay.rng.bit_generator.state  # its own seed's sampling
    assert new.env_steps == 0 and new.updates == 0
    new.close()
    with pytest.raises(ValueError, match="expects"):  # another number of games: refused
        Trainer(fast_config("train.init_replay=true", "train.envs=3"), tmp_path / "d", progress=False,
                tensorboard=False, init=tmp_path / "a")  # fmt: skip
    (tmp_path / "e").mkdir()
    shutil.copy(tmp_path / "a" / "checkpoint.pt", tmp_path / "e")
    with pytest.raises(ValueError, match="names the replay file replay-.*, which is not beside it.*init_replay=false"):
        Trainer(fast_config("train.init_replay=true"), tmp_path / "f", progress=False, tensorboard=False,
                init=tmp_path / "e" / "checkpoint.pt")  # fmt: skip
    # an agent shipped without its replay starts from a replay file kept apart
    replay = next((tmp_path / "a").glob("replay-*.npz"))
    apart = Trainer(fast_config("train.seed=7", "train.init_replay=true", f"train.init_replay_file={replay}"),
                    tmp_path / "g", progress=False, tensorboard=False, init=tmp_path / "e")  # fmt: skip
    np.testing.assert_array_equal(apart.replay.obs, source.replay.obs)
    apart.close()
    with pytest.raises(ValueError, match="init_replay_file .*nothing.npz is not a file.*init_replay=false"):
        Trainer(fast_config("train.init_replay=true", f"train.init_replay_file={tmp_path / 'nothing.npz'}"),
                tmp_path / "h", progress=False, tensorboard=False, init=tmp_path / "e")  # fmt: skip
    with pytest.raises(ValueError, match="read only with train.init_replay=true"):
        fast_config(f"train.init_replay_file={replay}")


def test_the_progress_line_shows_the_evaluation_and_the_league_rating(tmp_path, fast_config):
    from agent.training.trainer import Trainer

    tr = Trainer(fast_config("train.steps=100"), tmp_path, progress=False, tensorboard=False)
    assert tr.status() == ""
    tr.last_eval = {"eval/weak/win": 0.25, "eval/weak/loss": 0.5, "eval/strong/win": 0.1}
    tr.status_fields["league"] = "league rating 1012"
    assert tr.status() == "eval won: strong 10%, weak 25%; league rating 1012"
    tr.close()


def test_a_periodic_snapshot_without_an_update_since_the_last_one_is_skipped(tmp_path):
    """A prefill longer than snapshot_every would put the same weights into the league twice."""
    from selfplay.loop import Snapshotter

    taken = []

    class Hub:
        def snapshot(self, trainer, sampler, name, parent_run):
            path = tmp_path / f"{name}.onnx"
            path.write_bytes(b"onnx")
            taken.append(name)
            return path

    trainer = SimpleNamespace(env_steps=0, updates=0, run_dir=tmp_path)
    snapshots = Snapshotter(Hub(), None, "run", "run", every=100, start_step=0)
    for env_steps, updates in [(100, 0), (200, 0), (300, 0), (400, 50), (500, 50), (600, 90)]:
        trainer.env_steps, trainer.updates = env_steps, updates
        snapshots(trainer)
    assert taken == ["run-100", "run-400", "run-600"]
    assert (tmp_path / "agent.onnx").is_file() and snapshots.latest_step == 600
    # an explicit snapshot (the end of a run, a league's first) is always taken
    snapshots.snapshot(trainer)
    assert taken[-1] == "run-600" and len(taken) == 4
