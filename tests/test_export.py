"""ONNX export of a DreamerAgent: the CLI, the side-by-side check, the graph contract."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from helpers import one_line_error, run_read_only, simulate_read_only

from agent.config import config_to_dict, make_config
from agent.dreamer.agent import DreamerAgent
from agent.training import checkpoint
from export.cli import export_cmd
from export.onnx_export import (
    ACTION_LAYOUT,
    OBS_LAYOUT,
    CheckReport,
    check_export,
    export_agent,
    load_checkpoint_agent,
)
from export.runtime import OnnxAgent

torch.set_num_threads(1)


def make_agent(seed: int = 0, *overrides: str) -> DreamerAgent:
    torch.manual_seed(seed)
    return DreamerAgent(make_config("tiny", list(overrides))).eval()


def save_run(run: Path, agent: DreamerAgent) -> Path:
    checkpoint.save(
        run / checkpoint.CHECKPOINT_FILE,
        {
            "preset": "tiny",
            "config": config_to_dict(agent.cfg),
            "model": agent.state_dict(),
            "counters": {"env_steps": 4321, "updates": 7, "episodes": 3, "time": 1.0},
        },
    )
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory holding a checkpoint of a freshly initialised tiny agent."""
    return save_run(tmp_path_factory.mktemp("run"), make_agent())


def _shapes(path: Path) -> dict[str, list]:
    graph = onnx.load(path).graph
    return {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*graph.input, *graph.output]
    }


def test_cli_export_with_check(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "agent.onnx"
    result = CliRunner().invoke(export_cmd, [str(run_dir), "-o", str(out), "--check"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    agent = OnnxAgent(out)
    assert (agent.preset, agent.train_step) == ("tiny", 4321)
    cfg = make_config("tiny").model
    assert agent.deter_size == cfg.deter and agent.stoch_size == cfg.stoch * cfg.classes
    assert agent.obs_layout == list(OBS_LAYOUT) and len(OBS_LAYOUT) == 18
    assert agent.action_layout == list(ACTION_LAYOUT)
    assert json.loads(agent.metadata["initial_state"]) == {"kind": "zeros"}
    assert agent.metadata["action_repeat"] == "1" and agent.action_repeat == 1
    assert "torchscript" in agent.exporter_version
    assert agent.metadata["policy"] == "mean" and agent.metadata["hockey_agent.format"] == "1"
    assert "noise_inputs" not in agent.metadata
    assert _shapes(out) == {
        "obs": ["batch", 18],
        "prev_action": ["batch", 4],
        "state": ["batch", agent.state_size],
        "action": ["batch", 4],
        "next_state": ["batch", agent.state_size],
    }
    assert [p.name for p in tmp_path.iterdir()] == ["agent.onnx"]  # no temporary file left


def _play(agent: OnnxAgent, steps: int = 30) -> np.ndarray:
    obs = np.random.default_rng(0).normal(scale=2.0, size=(steps, 18))
    agent.reset()
    return np.array([agent.act(o) for o in obs])


def test_cli_export_of_the_sampled_policy_with_check(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sampled.onnx"
    result = CliRunner().invoke(export_cmd, [str(run_dir), "-o", str(out), "--policy", "sample", "--check"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "policy sample" in result.output
    agent = OnnxAgent(out, seed=1)
    meta = agent.metadata
    assert meta["policy"] == "sample" and meta["hockey_agent.format"] == "2"
    latents = make_config("tiny").model.stoch
    assert json.loads(meta["noise_inputs"]) == {
        "noise": {"kind": "normal", "size": 4},
        "latent_noise": {"kind": "uniform", "size": latents},
    }
    shapes = _shapes(out)
    assert shapes["noise"] == ["batch", 4] and shapes["latent_noise"] == ["batch", latents]
    # the runtime samples: another seed plays differently, the same seed repeats
    first = _play(agent)
    assert (np.abs(first) <= 1).all()
    np.testing.assert_array_equal(_play(OnnxAgent(out, seed=1)), first)
    assert not np.allclose(_play(OnnxAgent(out, seed=2)), first)


def test_sampled_check_feeds_both_sides_the_same_noise(run_dir: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint_agent(run_dir)
    out = tmp_path / "sampled.onnx"
    export_agent(loaded.agent, out, preset="tiny", train_step=0, policy="sample")
    report = check_export(loaded.agent, out, games=1, seed=4)
    assert report.ok and report.max_action_diff < 1e-5, report
    # an agent whose sampled step differs is caught, as for the mean
    with torch.no_grad():
        for param in loaded.agent.actor.parameters():
            param.add_(0.05)
    assert not check_export(loaded.agent, out, games=1, seed=4).ok


@pytest.mark.parametrize("policy", ["mean", "sample"])
@pytest.mark.parametrize("action_set", ["bins3", "joint25"])
def test_a_discrete_agent_exports_and_passes_the_check(tmp_path: Path, action_set: str, policy: str) -> None:
    agent = make_agent(3, "actor.dist=discrete", f"actor.action_set={action_set}")
    (tmp_path / "run").mkdir()
    run = save_run(tmp_path / "run", agent)
    out = tmp_path / "agent.onnx"
    result = CliRunner().invoke(export_cmd, [str(run), "-o", str(out), "--policy", policy, "--check", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    onnx_agent = OnnxAgent(out, seed=0)
    assert onnx_agent.policy == policy and _shapes(out)["action"] == ["batch", 4]
    actions = _play(onnx_agent)
    assert set(np.unique(actions)) <= {-1.0, 0.0, 1.0}  # the chosen actions' vectors, in [-1, 1]


def test_an_agent_trained_with_action_repeat_exports_it_and_the_check_passes(tmp_path: Path) -> None:
    agent = make_agent(2, "train.action_repeat=2")
    run = tmp_path / "run"
    run.mkdir()
    counters = {"env_steps": 800, "updates": 7, "episodes": 3, "time": 1.0}
    payload = {"preset": "tiny", "config": config_to_dict(agent.cfg), "model": agent.state_dict()}
    checkpoint.save(run / checkpoint.CHECKPOINT_FILE, {**payload, "counters": counters})
    out = tmp_path / "agent.onnx"
    result = CliRunner().invoke(export_cmd, [str(run), "-o", str(out), "--check"])
    assert result.exit_code == 0, result.output
    assert "action repeat 2" in result.output and "PASS" in result.output
    onnx_agent = OnnxAgent(out)
    assert onnx_agent.metadata["action_repeat"] == "2" and onnx_agent.action_repeat == 2
    # the check compares the two agents as they play: both hold each action for 2 frames
    loaded = load_checkpoint_agent(run)
    report = check_export(loaded.agent, out, games=1, seed=1)
    assert report.ok and report.steps >= 250


def test_check_fails_on_a_different_agent(run_dir: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint_agent(run_dir)
    out = tmp_path / "agent.onnx"
    export_agent(loaded.agent, out, preset=loaded.preset, train_step=loaded.train_step)
    with torch.no_grad():
        for param in loaded.agent.actor.parameters():
            param.add_(0.05)
    report = check_export(loaded.agent, out, games=1, seed=3)
    assert not report.ok and report.steps >= 250
    assert report.max_action_diff > 1e-3


def test_check_asks_for_the_same_game_winners_not_the_same_rounds() -> None:
    def report(onnx_rounds: tuple[int, ...]) -> CheckReport:
        return CheckReport(
            steps=300,
            games=1,
            max_action_diff=1e-5,
            max_state_diff=1e-6,
            torch_rounds=((1, 1, -1, 1),),
            onnx_rounds=(onnx_rounds,),
        )

    assert report((0, 1, 1, 1)).ok  # a round flipped by float noise, the same game result
    assert not report((-1, -1, 1, 0)).ok
    diverged = CheckReport(
        steps=300, games=1, max_action_diff=2e-4, max_state_diff=1e-6, torch_rounds=((1,),), onnx_rounds=((1,),)
    )
    assert not diverged.ok


def test_batch_graph_matches_torch_policy_step(tmp_path: Path) -> None:
    agent = make_agent(seed=1).train()
    out = tmp_path / "agent.onnx"
    export_agent(agent, out, preset="tiny", train_step=0)
    assert agent.training  # the caller's agent is left as it was
    onnx_agent = OnnxAgent(out)
    rng = np.random.default_rng(0)
    batch = 5
    onnx_agent.reset_batch(batch)
    state = agent.initial_state(batch)
    prev = torch.zeros(batch, 4)
    for t in range(20):
        obs = rng.normal(scale=2.0, size=(batch, 18))
        first = torch.full((batch,), t == 0)
        action, state = agent.policy_step(
            torch.as_tensor(obs, dtype=torch.float32), prev, state, first, deterministic=True
        )
        prev = action
        np.testing.assert_allclose(onnx_agent.act_batch(obs), action.numpy(), atol=1e-5)


def test_bad_arguments(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "agent.onnx"
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    result = runner.invoke(export_cmd, [str(junk), "-o", str(out)])
    assert result.exit_code != 0 and "not a readable checkpoint" in result.output
    result = runner.invoke(export_cmd, [str(run_dir), "-o", str(out), "--opset", "9"])
    assert result.exit_code != 0 and "choose 14 to 20" in result.output
    assert not out.exists()
    agent = make_agent()
    with pytest.raises(ValueError, match="choices: torchscript, dynamo"):
        export_agent(agent, out, preset="tiny", train_step=0, exporter="jit")
    with pytest.raises(ValueError, match="choices: mean, sample"):
        export_agent(agent, out, preset="tiny", train_step=0, policy="greedy")
    result = runner.invoke(export_cmd, [str(run_dir), "-o", str(out), "--policy", "greedy"])
    assert result.exit_code == 2 and "'greedy' is not one of 'mean', 'sample'" in result.output
    if importlib.util.find_spec("onnxscript") is None:
        with pytest.raises(ValueError, match="onnxscript"):
            export_agent(agent, out, preset="tiny", train_step=0, exporter="dynamo")
    export_agent(agent, out, preset="tiny", train_step=0)
    with pytest.raises(ValueError, match="unknown opponent"):
        check_export(agent, out, opponent="nobody")


@pytest.mark.skipif(importlib.util.find_spec("onnxscript") is None, reason="the dynamo exporter needs onnxscript")
def test_dynamo_exporter(tmp_path: Path) -> None:
    agent = make_agent(seed=2)
    out = tmp_path / "agent.onnx"
    export_agent(agent, out, preset="tiny", train_step=0, exporter="dynamo")
    report = check_export(agent, out, games=1)
    assert report.ok, report


def test_output_in_a_read_only_directory_is_one_line(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    simulate_read_only(monkeypatch, tmp_path)
    out = tmp_path / "sub" / "agent.onnx"
    result = CliRunner().invoke(export_cmd, [str(run_dir), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert f"cannot write {out}: the directory {tmp_path} is read-only" in one_line_error(result)
    assert not (tmp_path / "sub").exists()


def test_output_in_a_really_read_only_directory(run_dir: Path, tmp_path: Path) -> None:
    import sys

    out = tmp_path / "agent.onnx"
    result = run_read_only(tmp_path, [sys.executable, "-m", "agent.cli", "export", str(run_dir), "-o", str(out)])
    assert result.returncode == 1 and f"cannot write {out}" in one_line_error(result)


def test_a_sampled_agent_with_action_repeat_passes_the_check(tmp_path: Path) -> None:
    agent = make_agent(5, "train.action_repeat=2")
    (tmp_path / "run").mkdir()
    run = save_run(tmp_path / "run", agent)
    out = tmp_path / "agent.onnx"
    result = CliRunner().invoke(export_cmd, [str(run), "-o", str(out), "--policy", "sample", "--check", "--seed", "3"])
    assert result.exit_code == 0, result.output
    onnx_agent = OnnxAgent(out, seed=0)
    assert onnx_agent.policy == "sample" and onnx_agent.action_repeat == 2
    actions = _play(onnx_agent, steps=6)
    np.testing.assert_array_equal(actions[0::2], actions[1::2])  # each sampled action held two frames
