"""Checkpoints: round trip, safe loading, clear errors for corrupt or other-preset files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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
