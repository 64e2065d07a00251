"""Checkpoints: round trip, safe loading, clear errors for corrupt or other-preset files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import error_line

from agent.training import checkpoint as ckpt
from agent.training.trainer import Trainer

torch.set_num_threads(1)

# helpers.FAST without evaluation, 100 env steps
SMALL = ("train.eval_every=0", "train.steps=100")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, fast_config) -> Path:
    path = tmp_path_factory.mktemp("run")
    tr = Trainer(fast_config(*SMALL), path, preset="tiny", progress=False, tensorboard=False)
    tr.train()
    tr.close()
    return path


def test_checkpoint_holds_only_safe_types_and_loads_weights_only(run_dir: Path) -> None:
    data = torch.load(run_dir / ckpt.CHECKPOINT_FILE, weights_only=True)
    assert data["format"] == ckpt.FORMAT and data["preset"] == "tiny"
    assert data["config"]["model"]["deter"] == 32
    assert set(data["rng"]) >= {"python", "numpy", "torch", "trainer", "envs"}
    assert len(data["rng"]["envs"]) == 2
    assert not list(run_dir.glob("*.tmp"))


def test_load_agent_and_policy_round_trip(run_dir: Path) -> None:
    agent, cfg, data = ckpt.load_agent(run_dir)
    saved = data["model"]
    for k, v in agent.state_dict().items():
        assert torch.equal(v, saved[k]), k
    policy = ckpt.load_policy(run_dir / ckpt.CHECKPOINT_FILE)
    policy.reset()
    obs = np.linspace(-1, 1, 18)
    a1 = policy.act(obs)
    policy.reset()
    assert a1.shape == (4,) and np.all(np.abs(a1) <= 1) and np.array_equal(a1, policy.act(obs))


def test_players_load_a_run_dir(run_dir: Path) -> None:
    from league.members import load_player

    player = load_player(str(run_dir))
    player.reset()
    assert player.act(np.zeros(18)).shape == (4,)


def test_corrupt_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        ckpt.load(bad)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a hockey-agent checkpoint"):
        ckpt.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.load(tmp_path / "missing")


def test_truncated_checkpoint_is_a_clear_error(run_dir: Path, tmp_path: Path) -> None:
    raw = (run_dir / ckpt.CHECKPOINT_FILE).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        ckpt.load(cut)


def test_resume_with_another_preset_fails_before_loading(run_dir: Path, tmp_path: Path, fast_config) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    other = fast_config(*SMALL, "model.deter=64")
    with pytest.raises(ValueError, match=r"another model configuration.*model.deter: run 64 vs checkpoint 32"):
        Trainer(other, copy, resume=True, progress=False, tensorboard=False)


def test_shape_mismatch_never_loads_partially(run_dir: Path, fast_config) -> None:
    from agent.dreamer.agent import DreamerAgent

    agent = DreamerAgent(fast_config(*SMALL, "model.units=24"))
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    with pytest.raises(ValueError, match="shape mismatches"):
        ckpt.load_model_state(agent, ckpt.load(run_dir)["model"], "test")
    for k, v in agent.state_dict().items():
        assert torch.equal(v, before[k]), k


class Foreign:
    """A class no checkpoint holds: torch's safe loader refuses to build it."""


def _unreadable_files(tmp_path: Path) -> list[Path]:
    files = {
        "random.pt": np.random.default_rng(0).bytes(2000),  # torch: 'Unsupported operand'
        "text.pt": b"hello world\n",  # torch: KeyError
        "empty.pt": b"",  # torch: EOFError
    }
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
    torch.save({"x": Foreign()}, tmp_path / "foreign.pt")  # torch: advice to allow-list the class
    return [tmp_path / name for name in [*files, "foreign.pt"]]


def test_unreadable_files_give_one_line_without_torchs_advice(tmp_path: Path) -> None:
    for path in _unreadable_files(tmp_path):
        with pytest.raises(ValueError) as info:
            ckpt.load(path)
        text = str(info.value)
        assert text.startswith(f"{path} is not a readable checkpoint"), text
        assert "\n" not in text, text
        for advice in ("weights_only", "safe_globals", "trust", "file an issue"):
            assert advice not in text, text
    with pytest.raises(ValueError, match=r"UnpicklingError: Unsupported global: GLOBAL .*Foreign"):
        ckpt.load(tmp_path / "foreign.pt")


def _tampered_copy(run_dir: Path, tmp_path: Path, change) -> Path:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    data = torch.load(copy / ckpt.CHECKPOINT_FILE, weights_only=True)
    change(data)
    torch.save(data, copy / ckpt.CHECKPOINT_FILE)
    return copy


@pytest.mark.parametrize(
    "change,missing",
    [
        (lambda d: d.update(optimizer={}), "optimizer lacks ['wm', 'actor', 'critic']"),
        (lambda d: d["optimizer"].pop("wm"), "optimizer lacks ['wm']"),
        (lambda d: d["optimizer"].update(actor=[]), "optimiser state of the actor does not fit"),
        (lambda d: d["optimizer"]["critic"].pop("param_groups"), "optimiser state of the critic does not fit"),
        (lambda d: d.update(optimizer=[1, 2]), "optimizer lacks"),
        (lambda d: d.pop("rng"), "lacks ['rng']"),
        (lambda d: d["rng"].pop("trainer"), "rng lacks ['trainer']"),
        (lambda d: d["counters"].pop("updates"), "counters lacks ['updates']"),
        (lambda d: d["trainer"].pop("recent"), "trainer lacks ['recent']"),
    ],
)
def test_malformed_checkpoint_sections_are_clear_errors(
    run_dir: Path, tmp_path: Path, change, missing: str, fast_config
) -> None:
    copy = _tampered_copy(run_dir, tmp_path, change)
    with pytest.raises(ValueError, match="^" + str(copy / ckpt.CHECKPOINT_FILE)) as info:
        Trainer(fast_config(*SMALL), copy, resume=True, progress=False, tensorboard=False)
    assert missing in str(info.value)


def test_agent_names_what_its_optimiser_state_lacks(fast_config) -> None:
    from agent.dreamer.agent import DreamerAgent

    agent = DreamerAgent(fast_config(*SMALL))
    with pytest.raises(ValueError, match=r"optimiser state lacks \['wm', 'actor', 'critic'\]"):
        agent.load_optimizer_state({"rng": torch.zeros(1)})
    with pytest.raises(ValueError, match="optimiser state of the world model does not fit"):
        agent.load_optimizer_state({**agent.optimizer_state(), "wm": {"state": {}}})


def test_train_resume_with_a_malformed_optimiser_state_is_one_line(run_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agent.cli.train import train

    copy = _tampered_copy(run_dir, tmp_path, lambda d: d.update(optimizer={}))
    res = CliRunner().invoke(train, ["--resume", "--run-dir", str(copy), "--steps", "120", "--no-progress"])
    assert res.exit_code != 0
    line = error_line(res.output)
    assert str(copy / ckpt.CHECKPOINT_FILE) in line and "optimizer lacks ['wm', 'actor', 'critic']" in line


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "{}", "--opponent", "still", "--games", "1"],
        ["export", "{}", "-o", "{}.onnx"],
        ["play", "{}", "still", "--games", "1"],
        ["train", "--resume", "--run-dir", "{}", "--no-progress"],
    ],
)
def test_commands_answer_an_unreadable_checkpoint_in_one_line(tmp_path: Path, command: list[str]) -> None:
    from click.testing import CliRunner

    from agent.cli.main import main

    for path in _unreadable_files(tmp_path):
        target = path
        if command[0] == "train":  # a run directory holding the unreadable checkpoint
            target = tmp_path / f"run-{path.stem}"
            target.mkdir()
            (target / ckpt.CHECKPOINT_FILE).write_bytes(path.read_bytes())
        res = CliRunner().invoke(main, [arg.replace("{}", str(target)) for arg in command])
        assert res.exit_code != 0, res.output
        line = error_line(res.output)
        assert "is not a readable checkpoint" in line and "weights_only" not in line, line


def test_the_replay_beside_a_checkpoint_is_found_or_refused_by_name(tmp_path: Path) -> None:
    file = tmp_path / "checkpoint.pt"
    (tmp_path / "replay-8.npz").write_bytes(b"")
    assert ckpt.replay_beside({"replay": "replay-8.npz"}, file) == tmp_path / "replay-8.npz"
    with pytest.raises(ValueError, match=r"checkpoint.pt names the replay file replay-9.npz, which is not beside it"):
        ckpt.replay_beside({"replay": "replay-9.npz"}, file)
    for data in ({}, {"replay": ""}, {"replay": 3}):
        with pytest.raises(ValueError, match=r"checkpoint.pt names no replay file"):
            ckpt.replay_beside(data, file)


def test_a_resume_whose_replay_file_is_gone_is_refused_in_one_line(tmp_path: Path, run_dir: Path) -> None:
    import shutil

    from click.testing import CliRunner

    from agent.cli.train import train

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    for replay in run.glob("replay-*.npz"):
        replay.unlink()
    res = CliRunner().invoke(train, ["--resume", "--run-dir", str(run), "--no-progress"])
    assert res.exit_code == 1, res.output
    assert "names the replay file replay-" in error_line(res.output) and "which is not beside it" in res.output
