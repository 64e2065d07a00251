"""The torch-free ONNX runtime against small hand-built graphs (no trained agent needed)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import MALFORMED_METADATA, NOISE_INPUTS, SAMPLED_META, STATE, WEIGHTS, build, metadata

from agent.players.policy import Policy
from export.runtime import AgentFileError, OnnxAgent, draw_noise


def reference(obs: np.ndarray, prev: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the test graph computes, in numpy."""
    w = WEIGHTS
    action = np.clip(np.tanh(obs @ w["w_obs"] + prev @ w["w_prev"] + state @ w["w_state"]) * 1.5, -1, 1)
    return action, np.tanh(state @ w["s_state"] + obs @ w["s_obs"])


@pytest.fixture
def agent_file(tmp_path: Path) -> Path:
    return build(tmp_path / "agent.onnx")


def test_act_matches_reference_with_state_fed_back(agent_file: Path) -> None:
    agent = OnnxAgent(agent_file)
    assert isinstance(agent, Policy)
    assert (agent.preset, agent.train_step, agent.state_size) == ("tiny", 1234, STATE)
    assert agent.action_layout == ["x", "y", "torque", "shoot"]
    obs_seq = np.random.default_rng(1).normal(size=(30, 18))
    prev = np.zeros((1, 4), np.float32)
    state = np.zeros((1, STATE), np.float32)
    for obs in obs_seq:
        action = agent.act(obs)
        expected, state = reference(obs[None].astype(np.float32), prev, state)
        prev = expected.astype(np.float32)
        assert action.dtype == np.float64 and action.shape == (4,)
        np.testing.assert_allclose(action, expected[0], atol=1e-5)
        np.testing.assert_allclose(agent.state, state[0], atol=1e-5)
    agent.reset()
    np.testing.assert_array_equal(agent.state, np.zeros(STATE))
    first = reference(obs_seq[:1].astype(np.float32), np.zeros((1, 4), np.float32), np.zeros((1, STATE), np.float32))
    np.testing.assert_allclose(agent.act(obs_seq[0]), first[0][0], atol=1e-5)


def test_act_batch_rows_are_independent(agent_file: Path) -> None:
    agent = OnnxAgent(agent_file)
    obs = np.random.default_rng(2).normal(size=(10, 3, 18))
    agent.reset_batch(3)
    for t in range(10):
        if t == 5:
            agent.reset_rows([1])
            agent.reset_rows([])
        batch_actions = agent.act_batch(obs[t])
        assert batch_actions.shape == (3, 4)
    # replay row 1 alone from its reset at t=5, and row 0 from the start
    agent.reset()
    for t in range(5, 10):
        single = agent.act(obs[t, 1])
    np.testing.assert_allclose(batch_actions[1], single, atol=1e-6)
    agent.reset()
    for t in range(10):
        single = agent.act(obs[t, 0])
    np.testing.assert_allclose(batch_actions[0], single, atol=1e-6)
    with pytest.raises(ValueError, match="reset_batch"):
        agent.act_batch(obs[0, :2])
    with pytest.raises(ValueError, match="row mask"):
        agent.reset_rows(np.array([True, False]))
    with pytest.raises(ValueError, match="indices"):
        agent.reset_rows([3])


def _count_graph_calls(agent: OnnxAgent) -> list[int]:
    """Record the batch size of every graph call the agent makes from now on."""
    calls: list[int] = []
    run_graph = agent.run_graph

    def counted(obs: np.ndarray, prev: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(obs))
        return run_graph(obs, prev, state)

    agent.run_graph = counted  # type: ignore[method-assign]
    return calls


def test_action_repeat_runs_the_graph_every_kth_call_and_restarts_at_reset(tmp_path: Path) -> None:
    held = OnnxAgent(build(tmp_path / "repeat2.onnx", meta=metadata(action_repeat="2")))
    every = OnnxAgent(build(tmp_path / "repeat1.onnx", meta=metadata(action_repeat="1")))
    assert (held.action_repeat, every.action_repeat) == (2, 1)
    calls = _count_graph_calls(held)
    obs_seq = np.random.default_rng(3).normal(size=(7, 18))
    for _ in range(2):
        held.reset()
        every.reset()
        calls.clear()
        for t, obs in enumerate(obs_seq):
            action = held.act(obs)
            if t % 2 == 0:  # the first call of the round decides, then every second
                expected = every.act(obs)
            np.testing.assert_array_equal(action, expected)
        assert calls == [1, 1, 1, 1]  # calls 0, 2, 4, 6


def test_action_repeat_per_batch_game(tmp_path: Path) -> None:
    agent = OnnxAgent(build(tmp_path / "repeat3.onnx", meta=metadata(action_repeat="3")))
    singles = [OnnxAgent(build(tmp_path / f"single{i}.onnx", meta=metadata(action_repeat="3"))) for i in range(3)]
    calls = _count_graph_calls(agent)
    rng = np.random.default_rng(4)
    agent.reset_batch(3)
    for t in range(8):
        if t == 2:  # game 1 starts a round: its repeat restarts
            agent.reset_rows([1])
            singles[1].reset()
        rows = np.array([0, 2]) if t == 5 else np.arange(3)  # game 1 sits one call out
        obs = rng.normal(size=(len(rows), 18))
        got = agent.act_batch(obs) if len(rows) == 3 else agent.act_rows(rows, obs)
        want = np.stack([singles[r].act(o) for r, o in zip(rows, obs)])
        np.testing.assert_allclose(got, want, atol=1e-6)
    # game 0 decides at calls 0, 3, 6; game 1 at 0, 2 (its reset), 6 (it sat out call 5); game 2 at 0, 3, 6
    assert calls == [3, 1, 2, 3]


def test_a_file_without_action_repeat_acts_every_frame_and_says_so_once(
    agent_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="export.runtime"):
        first = OnnxAgent(agent_file)
        again = OnnxAgent(agent_file)
        calls = _count_graph_calls(first)
        for _ in range(5):
            first.act(np.zeros(18))
    assert first.action_repeat == again.action_repeat == 1 and calls == [1] * 5
    notes = [r.getMessage() for r in caplog.records if "action_repeat" in r.getMessage()]
    assert notes == [
        f"{agent_file} has no action_repeat in its metadata (exported before the key existed): it acts every frame"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "metadata action_repeat=0 must be positive"),
        ("-2", "metadata action_repeat=-2 must be positive"),
        ("two", "metadata action_repeat='two' is not an integer"),
        ("1.5", "metadata action_repeat='1.5' is not an integer"),
        ("4000000000", "metadata action_repeat=4000000000 is over the limit of 2147483647"),
        ("9" * 50, "metadata action_repeat is 50 characters long"),
    ],
)
def test_an_absurd_action_repeat_is_refused_in_one_line(tmp_path: Path, value: str, message: str) -> None:
    path = build(tmp_path / "bad.onnx", meta=metadata(action_repeat=value))
    with pytest.raises(AgentFileError, match=f"^{message}") as raised:
        OnnxAgent(path)
    assert "\n" not in str(raised.value)


def test_vector_initial_state(tmp_path: Path) -> None:
    values = [0.5, -0.25, 0.0, 1.0, 0.0, 1.0]
    path = build(tmp_path / "a.onnx", meta=metadata(initial_state=json.dumps({"kind": "vector", "values": values})))
    agent = OnnxAgent(path)
    np.testing.assert_allclose(agent.state, values)
    agent.act(np.zeros(18))
    agent.reset()
    np.testing.assert_allclose(agent.state, values)


def test_bad_observations(agent_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    agent = OnnxAgent(agent_file)
    with pytest.raises(ValueError, match="18 values"):
        agent.act(np.zeros(17))
    with pytest.raises(ValueError, match="not numeric"):
        agent.act(["a"] * 18)
    obs = np.zeros(18)
    obs[[0, 3, 7]] = [np.nan, np.inf, -np.inf]
    with caplog.at_level(logging.WARNING, logger="export.runtime"):
        action = agent.act(obs)
    assert np.all(np.isfinite(action)) and np.all(np.abs(action) <= 1)
    assert np.all(np.isfinite(agent.state))
    assert "non-finite" in caplog.text
    huge = np.full(18, 1e300)
    assert np.all(np.isfinite(agent.act(huge)))


def test_non_finite_graph_output_acts_zeros(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    agent = OnnxAgent(build(tmp_path / "nan.onnx", action_scale=float("nan")))
    agent.act(np.ones(18))
    with caplog.at_level(logging.WARNING, logger="export.runtime"):
        action = agent.act(np.ones(18))
    np.testing.assert_array_equal(action, np.zeros(4))
    np.testing.assert_array_equal(agent.state, np.zeros(STATE))
    assert "non-finite" in caplog.text
    agent.reset_batch(2)
    np.testing.assert_array_equal(agent.act_batch(np.ones((2, 18))), np.zeros((2, 4)))


def _sampled(path: Path) -> Path:
    return build(path, noise=True, meta=metadata(**SAMPLED_META))


def _play(agent: OnnxAgent, steps: int = 12) -> np.ndarray:
    obs = np.random.default_rng(3).normal(size=(steps, 18))
    agent.reset()
    return np.array([agent.act(o) for o in obs])


def test_a_sampled_policy_draws_its_noise_from_its_own_seeded_generator(tmp_path: Path) -> None:
    path = _sampled(tmp_path / "sampled.onnx")
    agent = OnnxAgent(path, seed=7)
    assert agent.policy == "sample" and agent.noise_inputs == {
        "noise": ("normal", 4),
        "latent_noise": ("uniform", STATE),
    }
    first = _play(agent)
    np.testing.assert_array_equal(_play(OnnxAgent(path, seed=7)), first)  # a seed repeats
    assert not np.allclose(_play(OnnxAgent(path, seed=8)), first)  # another seed differs
    assert not np.allclose(_play(agent), first)  # the generator runs on across rounds
    # each step feeds the graph the generator's next draws: noise first, then latent_noise
    rng, agent = np.random.default_rng(7), OnnxAgent(path, seed=7)
    obs = np.random.default_rng(3).normal(size=18)
    noise = draw_noise(rng, agent.noise_inputs, 1)
    assert noise["noise"].shape == (1, 4) and noise["latent_noise"].shape == (1, STATE)
    assert noise["latent_noise"].min() >= 0 and noise["latent_noise"].max() < 1
    # after a reset the previous action and the state are zeros
    expected = np.clip(np.tanh(obs @ WEIGHTS["w_obs"]) * 1.5 + 0.5 * noise["noise"][0], -1, 1)
    np.testing.assert_allclose(agent.act(obs), expected, atol=1e-5)
    np.testing.assert_allclose(agent.state, np.tanh(obs @ WEIGHTS["s_obs"] + noise["latent_noise"][0]), atol=1e-5)
    agent.reset_batch(3)
    assert agent.act_batch(np.zeros((3, 18))).shape == (3, 4)


def test_a_file_without_a_policy_acts_the_mean(agent_file: Path) -> None:
    agent = OnnxAgent(agent_file, seed=1)
    assert "policy" not in agent.metadata and agent.policy == "mean" and agent.noise_inputs == {}
    np.testing.assert_array_equal(_play(agent), _play(OnnxAgent(agent_file, seed=2)))


@pytest.mark.parametrize(
    ("changes", "noise", "message"),
    [
        ({"policy": "greedy"}, True, "policy 'greedy' unknown; choices: mean, sample"),
        ({"noise_inputs": None}, True, "needs noise_inputs"),
        ({"noise_inputs": "[]"}, True, "JSON object of inputs"),
        ({"noise_inputs": json.dumps({**NOISE_INPUTS, "noise": {"kind": "cauchy", "size": 4}})}, True, "cauchy"),
        ({"noise_inputs": json.dumps({**NOISE_INPUTS, "noise": {"kind": "normal", "size": 0}})}, True, "size 0"),
        ({"noise_inputs": json.dumps({**NOISE_INPUTS, "noise": {"kind": "normal", "size": 5}})}, True, "size 4"),
        ({"noise_inputs": json.dumps({"noise": NOISE_INPUTS["noise"]})}, True, "graph inputs are"),
        ({"policy": "mean"}, True, "graph inputs are"),  # a mean policy's graph takes no noise
        ({}, False, "graph inputs are"),  # a sampled policy's graph needs its noise inputs
    ],
)
def test_sampled_contract_violations_refused_at_load(tmp_path: Path, changes: dict, noise: bool, message: str) -> None:
    meta = {k: v for k, v in {**SAMPLED_META, **changes}.items() if v is not None}
    path = build(tmp_path / "bad.onnx", noise=noise, meta=metadata(**meta))
    with pytest.raises(AgentFileError, match=message):
        OnnxAgent(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"meta": metadata(hockey_agent__format=None)}, "hockey_agent.format"),
        ({"meta": metadata(hockey_agent__format="9")}, "unsupported"),
        ({"meta": metadata(state_size="7", stoch_size="3")}, "size 6, expected 7"),
        ({"meta": metadata(deter_size="5")}, "deter_size"),
        ({"meta": metadata(obs_layout="[1, 2]")}, "obs_layout"),
        ({"meta": metadata(initial_state='{"kind": "random"}')}, "zeros"),
        ({"names": ("observation", "prev_action", "state")}, "expected"),
        ({"obs_size": 17}, "size 17, expected 18"),
        ({"batch": 1}, "fixed batch"),
    ],
)
def test_contract_violations_refused_at_load(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = build(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(AgentFileError, match=message):
        OnnxAgent(path)


@pytest.mark.parametrize("case", MALFORMED_METADATA.values(), ids=MALFORMED_METADATA.keys())
def test_malformed_metadata_refused_in_one_line(tmp_path: Path, case: tuple[dict, str]) -> None:
    changes, message = case
    path = build(tmp_path / "bad.onnx", meta=metadata(**changes))
    with pytest.raises(AgentFileError, match=message) as raised:
        OnnxAgent(path)
    text = str(raised.value)
    assert "\n" not in text and len(text) < 400 + len(str(path))


def test_state_size_limit_fits_the_presets() -> None:
    from agent.config import make_config
    from export.runtime import MAX_STATE_SIZE

    for preset in ("tiny", "small", "medium"):
        model = make_config(preset).model
        assert model.deter + model.stoch * model.classes <= MAX_STATE_SIZE / 4


def test_non_onnx_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    with pytest.raises(AgentFileError, match="not a loadable ONNX model"):
        OnnxAgent(junk)
    assert issubclass(AgentFileError, ValueError)
    with pytest.raises(FileNotFoundError):
        OnnxAgent(tmp_path / "absent.onnx")
    with pytest.raises(ValueError, match="threads"):
        OnnxAgent(junk, threads=0)


def test_runtime_imports_and_acts_without_torch(agent_file: Path) -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'onnx', 'agent.dreamer', 'gymnasium', 'Box2D'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np\n"
        "from export.runtime import OnnxAgent\n"
        f"agent = OnnxAgent({str(agent_file)!r})\n"
        "a = agent.act(np.zeros(18))\n"
        "assert a.shape == (4,)\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
