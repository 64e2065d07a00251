"""Trainer: a short run writes everything, resume continues the updates bit-identically, stops save.

What a resume restores exactly: model, optimisers, replay and every generator, so the
updates after it are the ones an uninterrupted run would make from the same replay. What
it cannot restore: the games' physics in the middle of a round, so a resumed run starts
new rounds and its collected data (and with them its later updates) differ from an
uninterrupted run's from the first env step after the checkpoint
(`test_a_resumed_run_collects_new_rounds` pins that down).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FAST, error_line

from agent.config import validate
from agent.training.checkpoint import load as load_checkpoint
from agent.training.diagnose import update_rows
from agent.training.metrics import read_rows
from agent.training.trainer import ScriptedSampler, Trainer, mode_at

torch.set_num_threads(1)


def _params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.agent.state_dict().items()}


def test_short_run_writes_metrics_checkpoint_and_config(tmp_path: Path, fast_config) -> None:
    tr = Trainer(fast_config("train.steps=240"), tmp_path, progress=False, tensorboard=True)
    result = tr.train()
    tr.close()
    assert result["env_steps"] == 240 and not result["interrupted"] and result["saved"]
    assert result["updates"] == (240 - 64) * 16 // 32
    rows = read_rows(tmp_path)
    upd = update_rows(rows)
    assert sum(r["n_updates"] for r in upd) == result["updates"]  # aggregated, none dropped
    for key in ("wm/loss", "actor/entropy", "actor/rand", "ret/at_floor", "critic/loss", "actor/std_q50"):
        assert all(np.isfinite(r[key]) for r in upd), key
    assert len(upd[0]["actor/entropy_step"]) == 4
    assert any(r["kind"] == "episode" for r in rows)  # shooting rounds last 81 steps
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [200, 240]
    assert evals[-1]["eval/still/win"] + evals[-1]["eval/still/draw"] + evals[-1]["eval/still/loss"] == 1.0
    assert (tmp_path / "config.json").is_file() and list(tmp_path.glob("tb/events.*"))
    assert [p.name for p in tmp_path.glob("replay-*.npz")] == ["replay-240.npz"]
    data = load_checkpoint(tmp_path)
    assert data["counters"]["env_steps"] == 240 and data["replay"] == "replay-240.npz"


def test_kept_checkpoints_hold_every_save_by_env_steps_and_load_as_agents(tmp_path: Path, fast_config) -> None:
    from click.testing import CliRunner

    from agent.cli.main import main

    cfg = fast_config(
        "train.steps=240", "train.eval_every=0", "train.checkpoint_every=100", "train.keep_checkpoints=true"
    )
    tr = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    tr.train()
    tr.close()
    kept = sorted((tmp_path / "checkpoints").glob("*.pt"))
    assert [p.name for p in kept] == ["ckpt-00000100.pt", "ckpt-00000200.pt", "ckpt-00000240.pt"]
    for path in kept:
        data = load_checkpoint(path)
        assert data["counters"]["env_steps"] == int(path.stem.split("-")[1]) and "replay" not in data
    newest, last = load_checkpoint(kept[-1]), load_checkpoint(tmp_path)
    assert all(torch.equal(newest["model"][k], v) for k, v in last["model"].items())
    assert not torch.equal(load_checkpoint(kept[0])["model"]["actor.out.weight"], last["model"]["actor.out.weight"])
    args = ["eval", *map(str, kept[:2]), "--opponent", "still", "--games", "1", "--mode", "shooting"]
    result = CliRunner().invoke(main, [*args, "--policy", "mean", "--brief"])
    assert result.exit_code == 0, result.output
    # the folder they share is said once, above rows that name each checkpoint in full
    assert f"agents in {tmp_path / 'checkpoints'}/" in result.output
    rows = [line.split("│")[0].strip() for line in result.output.splitlines() if "│" in line]
    assert sorted(rows) == ["ckpt-00000100.pt", "ckpt-00000200.pt"]


def test_saves_during_the_prefill_keep_the_unchanged_weights_once(tmp_path: Path, fast_config) -> None:
    cfg = fast_config("train.steps=240", "train.eval_every=0", "train.checkpoint_every=50", "train.prefill=160",
                      "train.keep_checkpoints=true")  # fmt: skip
    tr = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    tr.train()
    tr.close()
    kept = [p.name for p in sorted((tmp_path / "checkpoints").glob("*.pt"))]
    # 50, 100 and 150 come before the first update: only the first of them is kept
    assert kept == ["ckpt-00000050.pt", "ckpt-00000200.pt", "ckpt-00000240.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / kept[0])["counters"]["updates"] == 0


def test_resume_gives_bit_identical_next_updates(tmp_path: Path, fast_config) -> None:
    cfg = fast_config("train.steps=160", "train.eval_every=0")
    first = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    first.train()  # saves at the end: the "kill" point
    expected = [first.update_once() for _ in range(3)]
    expected_params = _params(first)
    first.close()

    resumed = Trainer(cfg, tmp_path, resume=True, progress=False, tensorboard=False)
    assert (resumed.env_steps, resumed.updates) == (160, (160 - 64) * 16 // 32)
    got = [resumed.update_once() for _ in range(3)]
    resumed.close()
    assert got == expected
    for k, v in _params(resumed).items():
        assert torch.equal(v, expected_params[k]), k


def test_action_repeat_counts_env_steps_in_frames_and_stores_one_row_per_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_config
) -> None:
    from agent.dreamer.agent import BatchActingPolicy

    evaluated: list[int] = []
    init = BatchActingPolicy.__init__

    def recording(self: BatchActingPolicy, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        evaluated.append(self.action_repeat)

    monkeypatch.setattr(BatchActingPolicy, "__init__", recording)
    cfg = fast_config("train.steps=240", "train.action_repeat=2", "train.eval_every=200", "train.eval_rounds=1")
    tr = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    seen: list[tuple[int, int]] = [(0, 0)]
    tr.on_env_step.append(lambda t: seen.append((t.env_steps, t.decisions)))
    result = tr.train()
    tr.close()
    frames, decisions = np.diff(np.array(seen), axis=0).T
    # two games: one decision each per batched step, held 2 frames (1 when its round ended there)
    assert set(decisions) == {2} and set(frames) <= {2, 3, 4} and min(frames) < 4
    assert 240 <= result["env_steps"] < 244 and result["decisions"] == 2 * len(frames)
    assert result["decisions"] < 0.55 * result["env_steps"]
    # one replay row per decision, plus the last observation of every finished round
    assert len(tr.replay) == result["decisions"] + result["episodes"]
    assert result["updates"] == int(result["decisions"] * (result["env_steps"] - 64) / result["env_steps"] * 0.5)
    rows = read_rows(tmp_path)
    first_past_200 = min(step for step, _ in seen if step >= 200)
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [first_past_200, result["env_steps"]]
    assert all(r["step"] in {step for step, _ in seen} for r in rows if r["kind"] == "episode")
    assert evaluated == [2, 2]  # both evaluations hold the learner's actions as it was trained
    data = load_checkpoint(tmp_path)
    assert (data["counters"]["env_steps"], data["counters"]["decisions"]) == (result["env_steps"], result["decisions"])
    assert data["config"]["train"]["action_repeat"] == 2
    resumed = Trainer(cfg, tmp_path, resume=True, progress=False, tensorboard=False)
    assert (resumed.env_steps, resumed.decisions) == (result["env_steps"], result["decisions"])
    resumed.close()


def test_updates_follow_decisions_not_frames(tmp_path: Path, fast_config) -> None:
    """Without prefill, repeat 2 does the updates per collected row that repeat 1 does:
    train_ratio / (batch_size * seq_len) = 16 / 32 per decision."""
    counts = {}
    for repeat, steps in ((1, 160), (2, 320)):
        cfg = fast_config(
            f"train.steps={steps}", f"train.action_repeat={repeat}", "train.prefill=0", "train.eval_every=0"
        )
        tr = Trainer(cfg, tmp_path / str(repeat), progress=False, tensorboard=False)
        result = tr.train()
        tr.close()
        counts[repeat] = (result["env_steps"], result["decisions"], result["updates"])
    assert counts[1] == (160, 160, 80)
    env_steps, decisions, updates = counts[2]
    assert env_steps >= 320 and 160 <= decisions < 170 and updates == decisions // 2


def test_prefill_counts_frames_and_the_update_schedule_counts_decisions_after_it(tmp_path: Path, fast_config) -> None:
    tr = Trainer(fast_config("train.action_repeat=2"), tmp_path, progress=False, tensorboard=False)
    tr.env_steps, tr.decisions = 64, 34  # prefill (64 env steps) just done: nothing owed yet
    assert tr.updates_due() == 0
    tr.env_steps, tr.decisions = 1064, 534  # 1000 frames after prefill, of 1064: 502 of the 534 rows
    assert tr.updates_due() == int(534 * 1000 / 1064 * 16 / 32)
    tr.updates = 200
    assert tr.updates_due() == int(534 * 1000 / 1064 * 16 / 32) - 200
    tr.close()


def test_a_checkpoint_from_before_the_action_repeat_resumes(tmp_path: Path, fast_config) -> None:
    """No decision counter and no train.action_repeat: decisions = env steps, repeat 1."""
    from agent.training import checkpoint as ckpt

    cfg = fast_config("train.steps=160", "train.eval_every=0")
    first = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    first.train()
    first.close()
    data = load_checkpoint(tmp_path)
    del data["counters"]["decisions"], data["config"]["train"]["action_repeat"], data["format"]
    ckpt.save(tmp_path / ckpt.CHECKPOINT_FILE, data)

    longer = fast_config("train.steps=200", "train.eval_every=0")
    resumed = Trainer(longer, tmp_path, resume=True, progress=False, tensorboard=False)
    assert (resumed.env_steps, resumed.decisions, resumed.updates) == (160, 160, (160 - 64) * 16 // 32)
    result = resumed.train()
    resumed.close()
    assert (result["env_steps"], result["decisions"], result["updates"]) == (200, 200, (200 - 64) * 16 // 32)


def test_a_resumed_run_collects_new_rounds(tmp_path: Path, fast_config) -> None:
    """The difference from an uninterrupted run, measured: equal up to the checkpoint,
    new rounds (other observations) from the first collected step after it."""
    cfg = fast_config("train.steps=160", "train.eval_every=0")
    whole = Trainer(cfg, tmp_path / "whole", progress=False, tensorboard=False)
    whole.train()
    resumed = Trainer(cfg, tmp_path / "whole", resume=True, progress=False, tensorboard=False)
    assert np.array_equal(whole.replay.obs, resumed.replay.obs)  # everything up to the checkpoint
    first_new = whole.replay.ptr.copy()  # where each game writes its next row
    whole.collect()
    resumed.collect()
    games = np.arange(len(first_new))
    assert not np.array_equal(whole.replay.obs[games, first_new], resumed.replay.obs[games, first_new])
    whole.close()
    resumed.close()


def test_stop_saves_and_resume_finishes_without_duplicate_rows(tmp_path: Path, fast_config) -> None:
    cfg = fast_config("train.steps=200", "train.eval_every=0")
    tr = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    tr.on_env_step.append(lambda t: t.stop() if t.env_steps >= 100 else None)
    result = tr.train()
    tr.close()
    assert result["interrupted"] and result["saved"] and result["env_steps"] == 100
    assert load_checkpoint(tmp_path)["counters"]["env_steps"] == 100
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    tr = Trainer(cfg, tmp_path, resume=True, progress=False, tensorboard=False)
    assert tr.train()["env_steps"] == 200
    tr.close()
    upd = update_rows(read_rows(tmp_path))
    assert [r["update"] for r in upd] == sorted({r["update"] for r in upd})
    assert sum(r["n_updates"] for r in upd) == tr.updates


def test_sigint_saves_a_checkpoint(tmp_path: Path, fast_config) -> None:
    tr = Trainer(fast_config("train.steps=400", "train.eval_every=0"), tmp_path, progress=False, tensorboard=False)
    tr.on_env_step.append(lambda t: os.kill(os.getpid(), signal.SIGINT) if t.env_steps == 80 else None)
    result = tr.train()
    tr.close()
    assert result["interrupted"] and result["env_steps"] == 80
    assert load_checkpoint(tmp_path)["counters"]["env_steps"] == 80
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


class RecordingSampler:
    """A self-play style sampler: records which opponents were drawn and the outcomes."""

    def __init__(self) -> None:
        self.inner = ScriptedSampler("still", 0)
        self.sampled: list[int] = []
        self.reports: list[tuple[str, int]] = []

    def sample(self, env_index: int):
        self.sampled.append(env_index)
        _, policy = self.inner.sample(env_index)
        return "snapshot-1", policy

    def report(self, name: str, outcome: int) -> None:
        self.reports.append((name, outcome))


def test_opponent_sampler_and_env_step_hooks(tmp_path: Path, fast_config) -> None:
    sampler = RecordingSampler()
    tr = Trainer(
        fast_config("train.steps=200", "train.eval_every=0", "train.prefill=400"),
        tmp_path,
        opponent_sampler=sampler,
        progress=False,
        tensorboard=False,
    )
    steps: list[int] = []
    tr.on_env_step.append(lambda t: steps.append(t.env_steps))
    tr.train()
    tr.close()
    assert steps == list(range(2, 202, 2))
    assert sampler.sampled[:2] == [0, 1] and len(sampler.sampled) == 2 + len(sampler.reports)
    assert sampler.reports and all(name == "snapshot-1" and o in (-1, 0, 1) for name, o in sampler.reports)


def test_curriculum_thirds() -> None:
    assert [mode_at("curriculum", s, 900) for s in (0, 299, 300, 599, 600, 900)] == [
        "shooting",
        "shooting",
        "defense",
        "defense",
        "normal",
        "normal",
    ]
    assert mode_at("defense", 10**6, 10) == "defense"


def test_curriculum_switches_the_games(tmp_path: Path, fast_config) -> None:
    tr = Trainer(
        fast_config("train.steps=300", "train.mode=curriculum", "train.eval_every=0"),
        tmp_path,
        progress=False,
        tensorboard=False,
    )
    modes: list[str] = []
    tr.on_env_step.append(lambda t: modes.append(t.mode))
    tr.train()
    tr.close()
    assert modes[0] == "shooting" and modes[60] == "defense" and modes[-1] == "normal"


def test_drills_play_beside_the_mode_and_stay_out_of_the_win_rate(tmp_path: Path, fast_config) -> None:
    sampler = RecordingSampler()
    tr = Trainer(
        fast_config(
            "train.steps=900",
            "train.envs=3",
            "train.drill_envs=1",
            "train.mode=normal",
            "train.eval_every=0",
            "train.prefill=1000",
        ),
        tmp_path,
        opponent_sampler=sampler,
        progress=False,
        tensorboard=False,
    )
    tr.train()
    tr.close()
    modes = [env.mode.name for env in tr.envs.envs]
    assert modes == ["NORMAL", "NORMAL", "TRAIN_DEFENSE"] and tr.envs.envs[2].side == "p1"
    rows = read_rows(tmp_path)
    drills = [r for r in rows if r["kind"] == "drill"]
    episodes = [r for r in rows if r["kind"] == "episode"]
    assert len(drills) >= 3  # defense rounds last at most 81 steps: game 2 played 300
    assert all(r["train/drill_outcome"] in (-1, 0, 1) and "train/win_rate" not in r for r in drills)
    assert len(sampler.reports) == len(episodes) == len(tr.recent)  # drill rounds never reach them
    assert sampler.sampled.count(2) == len(drills) + 1  # the drill game still draws its opponent
    assert tr.episodes == len(drills) + len(episodes)


def test_mixed_drills_alternate_defense_and_shooting(tmp_path: Path, fast_config) -> None:
    tr = Trainer(
        fast_config(
            "train.steps=600",
            "train.envs=4",
            "train.drill_envs=2",
            "train.drill_mode=mixed",
            "train.mode=normal",
            "train.eval_every=0",
            "train.prefill=1000",
        ),
        tmp_path,
        progress=False,
        tensorboard=False,
    )
    tr.train()
    tr.close()
    assert [env.mode.name for env in tr.envs.envs] == ["NORMAL", "NORMAL", "TRAIN_DEFENSE", "TRAIN_SHOOTING"]
    drills = [r for r in read_rows(tmp_path) if r["kind"] == "drill"]
    flags = sorted({r["train/drill_shooting"] for r in drills})
    assert flags == [0.0, 1.0]  # both drills finished rounds (at most 81 steps each in 150 per game)


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.drill_mode=attack", "unknown drill mode 'attack'; choices: shooting, defense, mixed"),
        ("train.drill_envs=2", r"train.drill_envs must be in \[0, envs=2\), got 2"),
        ("train.drill_envs=-1", r"train.drill_envs must be in \[0, envs=2\), got -1"),
        ("train.opponent=nobody", "unknown opponent 'nobody'; choices: still, random, weak"),
        ("train.mode=hard", "unknown mode 'hard'; choices: normal, shooting, defense, curriculum"),
        ("train.device=tpu", "unknown device 'tpu'; choices: auto, cpu, cuda"),
        ("train.eval_opponents=mix", "unknown eval opponent 'mix'"),
    ],
)
def test_bad_names_are_clear_errors(override: str, message: str, fast_config) -> None:
    with pytest.raises(ValueError, match=message):
        validate(fast_config(override))


def test_train_command_errors(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agent.cli.train import train

    runner = CliRunner()
    res = runner.invoke(train, ["--preset", "huge", "--run-dir", str(tmp_path / "a")])
    assert res.exit_code == 2 and "unknown preset 'huge'; choices: tiny, small, medium" in res.output
    res = runner.invoke(train, ["--set", "model.nope=1", "--run-dir", str(tmp_path / "a")])
    assert res.exit_code == 2 and "unknown field 'nope'" in res.output
    res = runner.invoke(train, ["--opponent", "nobody", "--run-dir", str(tmp_path / "a")])
    assert res.exit_code == 2 and "choices" in res.output
    res = runner.invoke(train, ["--resume", "--run-dir", str(tmp_path / "missing")])
    assert res.exit_code == 2 and f"{tmp_path / 'missing'} has no checkpoint to resume from" in res.output
    if not torch.cuda.is_available():  # a device the machine lacks: one line, and no run directory left behind
        for args in (["--device", "cuda"], ["--selfplay", "--device", "cuda"]):
            res = runner.invoke(train, [*args, "--preset", "tiny", "--run-dir", str(tmp_path / "gpu")])
            assert res.exit_code == 1 and "use --device cpu" in res.output, res.output
            assert not (tmp_path / "gpu").exists()


def test_action_repeat_option_sets_the_field() -> None:
    from click.testing import CliRunner

    from agent.cli.train import build_config, train

    assert build_config("tiny", {"action_repeat": 2}, (), None).train.action_repeat == 2
    assert build_config("tiny", {"action_repeat": None}, (), None).train.action_repeat == 1
    assert "--action-repeat" in CliRunner().invoke(train, ["--help"]).output


def test_train_command_runs_and_resumes(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agent.cli.train import train

    run = tmp_path / "run"
    args = [
        "--preset",
        "tiny",
        "--steps",
        "120",
        "--run-dir",
        str(run),
        "--no-progress",
        *[a for o in FAST for a in ("--set", o)],
    ]
    res = CliRunner().invoke(train, args)
    assert res.exit_code == 0, res.output
    assert "finished at env step 120" in res.output
    res = CliRunner().invoke(train, ["--resume", "--run-dir", str(run), "--steps", "160", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "from env step 120" in res.output and "finished at env step 160" in res.output


@pytest.mark.parametrize(
    "args,field",
    [
        (["--set", "actor.eta=nan"], "actor.eta"),
        (["--set", "actor.eta=inf"], "actor.eta"),
        (["--set", "train.train_ratio=inf"], "train.train_ratio"),
        (["--set", "train.train_ratio=-inf"], "train.train_ratio"),
        (["--set", "train.eval_rounds=0"], "train.eval_rounds"),
        (["--seed", "-1"], "train.seed"),
        (["--action-repeat", "0"], "train.action_repeat=0: must be in [1, 2147483647]"),
        (["--set", "train.action_repeat=-1"], "train.action_repeat=-1: must be in [1, 2147483647]"),
    ],
)
def test_train_refuses_non_finite_and_out_of_range_values(tmp_path: Path, args: list[str], field: str) -> None:
    from click.testing import CliRunner

    from agent.cli.train import train

    run = tmp_path / "run"
    fast = [a for o in [*FAST, "train.eval_every=0"] for a in ("--set", o)]  # were it to train: briefly
    res = CliRunner().invoke(train, ["--preset", "tiny", "--steps", "8", "--run-dir", str(run), *fast, *args])
    assert res.exit_code == 2, res.output
    assert field in error_line(res.output)
    assert not run.exists() and not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_resume_reads_the_config_from_the_checkpoint(tmp_path: Path, damage: str) -> None:
    """A kill while config.json was written must not block --resume: the checkpoint holds the config."""
    from click.testing import CliRunner

    from agent.cli.train import train
    from agent.config import load_config

    run = tmp_path / "run"
    args = ["--preset", "tiny", "--steps", "80", "--run-dir", str(run), "--no-progress"]
    res = CliRunner().invoke(train, [*args, *[a for o in [*FAST, "train.eval_every=0"] for a in ("--set", o)]])
    assert res.exit_code == 0, res.output
    config = run / "config.json"
    if damage == "truncate":
        config.write_text(config.read_text()[:40])
    else:
        config.unlink()
    res = CliRunner().invoke(train, ["--resume", "--run-dir", str(run), "--steps", "120", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "from env step 80" in res.output and "finished at env step 120" in res.output
    cfg = load_config(config)  # rewritten whole from the checkpoint's config, with the new --steps
    assert cfg.train.steps == 120 and cfg.model.deter == 32 and cfg.train.eval_every == 0


def _read_only(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """Make os.access report `paths` unwritable (chmod does not stop root, who may run the tests)."""
    real = os.access
    denied = {str(p) for p in paths}
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if str(p) in denied and mode & os.W_OK else real(p, mode, **kw)
    )


@pytest.mark.parametrize("where", ["run dir", "parent", "grandparent"])
@pytest.mark.parametrize("selfplay", [False, True])
def test_train_refuses_a_read_only_run_dir_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, selfplay: bool
) -> None:
    from click.testing import CliRunner

    from agent.cli.train import train

    parent = tmp_path / "runs"
    run = parent / "exp" / "run" if where == "grandparent" else parent / "run"
    if where == "run dir":
        run.mkdir(parents=True)
    else:
        parent.mkdir()
    _read_only(monkeypatch, run if where == "run dir" else parent)
    args = ["--preset", "tiny", "--steps", "8", "--run-dir", str(run), "--no-progress"]
    fast = [a for o in [*FAST, "train.eval_every=0"] for a in ("--set", o)]
    res = CliRunner().invoke(train, [*args, *fast, *(["--selfplay"] if selfplay else [])])
    assert res.exit_code != 0, res.output
    line = error_line(res.output)
    assert str(run) in line and "read-only" in line, line
    if where != "run dir":
        assert str(parent) in line and not list(parent.iterdir())  # nothing created
    else:
        assert not list(run.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_train_refuses_a_chmod_read_only_run_dir(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agent.cli.train import train

    parent = tmp_path / "runs"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        args = ["--preset", "tiny", "--steps", "8", "--run-dir", str(parent / "run"), "--no-progress"]
        res = CliRunner().invoke(train, [*args, *[a for o in FAST for a in ("--set", o)]])
    finally:
        parent.chmod(0o755)
    assert res.exit_code != 0 and str(parent) in error_line(res.output)


def test_check_run_dir_names_a_read_only_file_a_resumed_run_appends_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.training.trainer import check_run_dir

    (tmp_path / "metrics.jsonl").write_text("")
    check_run_dir(tmp_path)
    _read_only(monkeypatch, tmp_path / "metrics.jsonl")
    with pytest.raises(ValueError, match=f"{tmp_path / 'metrics.jsonl'} is read-only"):
        check_run_dir(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        check_run_dir(tmp_path / "file" / "run")


def _failing_update(at: int, nan: bool = False):
    """An update that raises once the run reaches env step `at` (after filling a
    parameter with NaN when asked: a diverged update)."""
    real = Trainer._update

    def update(self: Trainer):
        if self.env_steps >= at:
            if nan:
                with torch.no_grad():
                    next(self.agent.parameters()).fill_(float("nan"))
            raise RuntimeError("boom in the update\nsecond line of the message")
        return real(self)

    return update


def test_an_error_in_an_update_saves_the_completed_steps_and_resume_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_config
) -> None:
    from agent.training.trainer import TrainingError

    cfg = fast_config("train.steps=200", "train.eval_every=0")
    monkeypatch.setattr(Trainer, "_update", _failing_update(120))
    tr = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    with pytest.raises(TrainingError) as info:
        tr.train()
    tr.close()
    monkeypatch.undo()
    err = info.value
    assert isinstance(err.error, RuntimeError) and err.__cause__ is err.error
    assert err.saved and err.env_steps == 120 and err.checkpoint_step == 120
    assert str(err) == (
        "training stopped by an error at env step 120: RuntimeError: boom in the update; a checkpoint was saved"
    )
    done = (118 - 64) * 16 // 32  # the updates of the last completed iteration; the failing one is not counted
    counters = load_checkpoint(tmp_path)["counters"]
    assert (counters["env_steps"], counters["updates"]) == (120, done)
    log = (tmp_path / "error.log").read_text()
    assert "Traceback" in log and "boom in the update" in log and "env step 120" in log

    resumed = Trainer(cfg, tmp_path, resume=True, progress=False, tensorboard=False)
    assert (resumed.env_steps, resumed.updates) == (120, done)
    result = resumed.train()
    resumed.close()
    assert result["env_steps"] == 200 and result["updates"] == (200 - 64) * 16 // 32


def test_an_error_in_an_env_step_callback_saves_a_checkpoint(tmp_path: Path, fast_config) -> None:
    from agent.training.trainer import TrainingError

    def snapshot(t: Trainer) -> None:
        if t.env_steps == 100:
            raise ValueError("the snapshot could not be rated")

    tr = Trainer(fast_config("train.steps=200", "train.eval_every=0"), tmp_path, progress=False, tensorboard=False)
    tr.on_env_step.append(snapshot)
    with pytest.raises(TrainingError, match="at env step 100: ValueError: the snapshot could not be rated"):
        tr.train()
    tr.close()
    counters = load_checkpoint(tmp_path)["counters"]  # the collection completed, its updates had not run yet
    assert (counters["env_steps"], counters["updates"]) == (100, (98 - 64) * 16 // 32)


def test_an_error_while_the_games_step_leaves_the_state_of_the_last_completed_step(tmp_path: Path, fast_config) -> None:
    """The crash checkpoint holds what a stop after the last completed step holds."""
    from agent.training.trainer import TrainingError

    cfg = fast_config("train.steps=200", "train.eval_every=0")
    stopped = Trainer(cfg, tmp_path / "stopped", progress=False, tensorboard=False)
    stopped.on_env_step.append(lambda t: t.stop() if t.env_steps >= 100 else None)
    stopped.train()
    stopped.close()

    def break_the_games(t: Trainer) -> None:
        if t.env_steps == 100:

            def step(actions: np.ndarray):
                raise RuntimeError("the physics failed")

            t.envs.step = step

    crashed = Trainer(cfg, tmp_path / "crashed", progress=False, tensorboard=False)
    crashed.on_env_step.append(break_the_games)
    with pytest.raises(TrainingError, match="at env step 100: RuntimeError: the physics failed"):
        crashed.train()
    crashed.close()

    want, got = load_checkpoint(tmp_path / "stopped"), load_checkpoint(tmp_path / "crashed")
    assert {k: v for k, v in got["counters"].items() if k != "time"} == {
        k: v for k, v in want["counters"].items() if k != "time"
    }
    for k, v in want["model"].items():
        assert torch.equal(got["model"][k], v), k
    with np.load(tmp_path / "stopped" / want["replay"]) as a, np.load(tmp_path / "crashed" / got["replay"]) as b:
        for key in ("obs", "action", "reward", "is_first", "is_terminal", "ptr", "size"):
            assert np.array_equal(a[key], b[key]), key


def test_a_diverged_model_never_overwrites_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_config
) -> None:
    from agent.training.trainer import TrainingError

    monkeypatch.setattr(Trainer, "_update", _failing_update(150, nan=True))
    cfg = fast_config("train.steps=200", "train.eval_every=0", "train.checkpoint_every=100")
    tr = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    with pytest.raises(TrainingError) as info:
        tr.train()
    tr.close()
    err = info.value
    assert not err.saved and err.checkpoint_step == 100
    assert str(err).endswith(
        "no checkpoint was saved (the model or its optimiser holds non-finite values); "
        "the last checkpoint is at env step 100"
    )
    data = load_checkpoint(tmp_path)
    assert data["counters"]["env_steps"] == 100
    assert all(torch.isfinite(v).all() for v in data["model"].values() if v.is_floating_point())


def test_a_failing_save_is_reported_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_config) -> None:
    from agent.training.trainer import TrainingError

    def full_disk(self: Trainer):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Trainer, "_update", _failing_update(100))
    monkeypatch.setattr(Trainer, "save", full_disk)
    tr = Trainer(fast_config("train.steps=200", "train.eval_every=0"), tmp_path, progress=False, tensorboard=False)
    with pytest.raises(TrainingError) as info:
        tr.train()
    tr.close()
    assert not info.value.saved and info.value.checkpoint_step is None
    assert str(info.value).endswith(
        "no checkpoint was saved (saving failed: OSError: [Errno 28] No space left on device); no checkpoint exists yet"
    )
    assert "No space left on device" in (tmp_path / "error.log").read_text()


def test_train_command_reports_an_error_in_one_line_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_config
) -> None:
    from click.testing import CliRunner

    from agent.cli.train import train

    run = tmp_path / "run"
    args = ["--preset", "tiny", "--steps", "160", "--run-dir", str(run), "--no-progress"]
    args += [a for o in [*FAST, "train.eval_every=0"] for a in ("--set", o)]
    monkeypatch.setattr(Trainer, "_update", _failing_update(120))
    res = CliRunner().invoke(train, args)
    monkeypatch.undo()
    assert res.exit_code == 1, res.output
    assert error_line(res.output) == (
        "Error: training stopped by an error at env step 120: RuntimeError: boom in the update; a checkpoint was "
        f"saved, continue with: hockey-agent train --resume --run-dir {run} (traceback in {run / 'error.log'})"
    )
    assert "Traceback" in (run / "error.log").read_text()
    res = CliRunner().invoke(train, ["--resume", "--run-dir", str(run), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "from env step 120" in res.output and "finished at env step 160" in res.output


def test_the_agent_can_act_during_the_prefill(tmp_path: Path, fast_config) -> None:
    """prefill_policy=agent: the policy's own samples from the first step (no uniform draws)."""
    cfg = fast_config("train.steps=100", "train.eval_every=0", "train.prefill=200", "train.prefill_policy=agent")
    tr = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    tr.rng = None  # the uniform prefill draws from this generator: any draw would fail
    tr.collect()
    first = tr.replay.action[:, 0].copy()
    assert np.all(np.abs(first) <= 1.0) and tr.updates_due() == 0
    tr.close()
    random = Trainer(fast_config("train.steps=100", "train.eval_every=0", "train.prefill=200"), tmp_path / "r",
                     progress=False, tensorboard=False)  # fmt: skip
    random.collect()
    assert not np.array_equal(random.replay.action[:, 0], first)
    random.close()


def test_online_training_takes_new_sequences_first(tmp_path: Path, fast_config) -> None:
    cfg = fast_config("train.steps=100", "train.eval_every=0", "train.online=true")
    tr = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    assert tr.replay.online_len == cfg.train.seq_len
    while not tr.replay.queue:
        tr.collect()
    queued = list(tr.replay.queue)
    tr.update_once()
    assert len(tr.replay.queue) < len(queued)
    tr.close()


OFFICIAL = (
    "train.replay_context=true",
    "train.online=true",
    "train.prefill_policy=agent",
    "optim.name=laprop",
    "optim.warmup=2",
    "critic.repval_scale=0.3",
    "model.init=official",
)


def test_the_official_recipe_trains_and_resumes_bit_for_bit(tmp_path: Path, fast_config) -> None:
    cfg = fast_config("train.steps=160", "train.eval_every=0", *OFFICIAL)
    first = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    first.train()
    assert first.replay.has_latent.any() and first.updates > 0
    expected = [first.update_once() for _ in range(3)]
    expected_params = _params(first)
    first.close()
    resumed = Trainer(cfg, tmp_path, resume=True, progress=False, tensorboard=False)
    got = [resumed.update_once() for _ in range(3)]
    resumed.close()
    assert got == expected
    assert all(np.isfinite(v) for m in got for k, v in m.items() if not isinstance(v, list))
    for k, v in _params(resumed).items():
        assert torch.equal(v, expected_params[k]), k


def test_a_budget_in_updates_ends_the_run(tmp_path: Path, fast_config) -> None:
    tr = Trainer(fast_config("train.steps=100000", "train.eval_every=0", "train.updates=5"), tmp_path,
                 progress=False, tensorboard=False)  # fmt: skip
    result = tr.train()
    tr.close()
    assert result["updates"] == 5 and not result["interrupted"] and result["env_steps"] < 1000


def test_the_progress_bar_runs(tmp_path: Path, fast_config) -> None:
    """A run with the progress display on (the default a user gets) trains and shows its fields."""
    tr = Trainer(fast_config("train.steps=100", "train.eval_every=0"), tmp_path, progress=True, tensorboard=False)
    assert not tr.train()["interrupted"]
    tr.close()


def test_the_progress_display_fits_an_80_column_terminal() -> None:
    """The bar on one line, the rates and the news on the next: folded, never cut with an ellipsis."""
    import io

    from rich.console import Console

    console = Console(width=80, file=io.StringIO(), record=True, force_terminal=False)
    progress = Trainer._progress(console)
    status = "eval won: strong 36%, weak 71%; league rating 1179; worst 25% vs strong over 8"
    progress.add_task("train", total=1_000_000, completed=25_400, ups=1.95, eps=3.9, win="59%", status=status)
    console.print(progress.get_renderable())
    text = console.export_text()
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "25400/1000000 env steps" in text
    flat = " ".join(line.strip() for line in text.splitlines())
    assert "1.95 updates/s, 3.9 env steps/s, rounds won 59%; eval won: strong 36%, weak 71%" in flat
    assert "league rating 1179; worst 25% vs strong over 8" in flat
