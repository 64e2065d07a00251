"""Plain helpers that more than one test module (or a benchmark) calls with arguments.

Test modules import them as `from helpers import ...`: pytest's default `prepend` import
mode puts tests/ on sys.path, so this works the same under `pytest` and `python -m pytest`.
No test module imports another one. Fixtures built on these are in conftest.py. A
benchmark that uses them puts tests/ on sys.path itself (see benchmarks/bench_client.py).

Nothing heavy (torch, onnx, pytest) is imported at module level, so importing this module
stays cheap and works without the dev extra.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# ---- training --------------------------------------------------------------------

# A very small model and loop: the tests check plumbing, not learning.
FAST = [
    "model.deter=32",
    "model.hidden=16",
    "model.stoch=4",
    "model.classes=4",
    "model.blocks=1",
    "model.units=16",
    "model.layers=1",
    "actor.horizon=4",
    "train.envs=2",
    "train.batch_size=4",
    "train.seq_len=8",
    "train.train_ratio=16",
    "train.prefill=64",
    "train.replay_capacity=2000",
    "train.opponent=still",
    "train.mode=shooting",
    "train.eval_every=200",
    "train.eval_rounds=3",
    "train.eval_opponents=still",
    "train.checkpoint_every=0",
    "train.log_every=2",
]


# ---- agent files: small ONNX graphs that follow the export contract (docs/ARCHITECTURE.md)


def contract_metadata(
    state_size: int,
    deter_size: int,
    stoch_size: int,
    *,
    preset: str = "test",
    train_step: str = "0",
    exporter_version: str = "test",
    initial_state: str = json.dumps({"kind": "zeros"}),
) -> dict[str, str]:
    """The metadata an agent file carries, for a graph with these state sizes."""
    return {
        "hockey_agent.format": "1",
        "exporter_version": exporter_version,
        "preset": preset,
        "train_step": train_step,
        "obs_layout": json.dumps([f"o{i}" for i in range(18)]),
        "action_layout": json.dumps(["x", "y", "torque", "shoot"]),
        "state_size": str(state_size),
        "deter_size": str(deter_size),
        "stoch_size": str(stoch_size),
        "initial_state": initial_state,
    }


def contract_model(
    name: str,
    nodes: list,
    inits: list,
    state_size: int,
    metadata: dict[str, str],
    *,
    names: tuple[str, str, str] = ("obs", "prev_action", "state"),
    obs_size: int = 18,
    batch: str | int = "batch",
    extra_inputs: dict[str, int] | None = None,
) -> Any:
    """An onnx ModelProto: inputs obs, prev_action, state (and `extra_inputs`, name -> size,
    such as a sampled policy's noise); outputs action, next_state."""
    from onnx import TensorProto, helper

    obs_name, prev_name, state_name = names
    extra = [helper.make_tensor_value_info(k, TensorProto.FLOAT, [batch, n]) for k, n in (extra_inputs or {}).items()]
    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info(obs_name, TensorProto.FLOAT, [batch, obs_size]),
            helper.make_tensor_value_info(prev_name, TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info(state_name, TensorProto.FLOAT, [batch, state_size]),
            *extra,
        ],
        [
            helper.make_tensor_value_info("action", TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info("next_state", TensorProto.FLOAT, [batch, state_size]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    return model


def write_agent_file(path: Path) -> Path:
    """A tiny ONNX graph following the exported-agent contract (docs/ARCHITECTURE.md).

    action = clip(obs @ A + state @ B, -1, 1); next_state = tanh(obs @ C + 0.5 state):
    the action depends on the recurrent state, so a missed reset changes it.
    """
    import onnx
    from onnx import helper, numpy_helper

    deter, stoch = 3, 2
    size = deter + stoch
    rng = np.random.default_rng(0)
    weights = {
        "A": rng.normal(0, 0.3, (18, 4)),
        "B": rng.normal(0, 1.0, (size, 4)),
        "C": rng.normal(0, 0.3, (18, size)),
        "half": np.array(0.5),
        "low": np.array(-1.0),
        "high": np.array(1.0),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), name=k) for k, v in weights.items()]
    nodes = [
        helper.make_node("MatMul", ["obs", "A"], ["oa"]),
        helper.make_node("MatMul", ["state", "B"], ["sb"]),
        helper.make_node("Add", ["oa", "sb"], ["raw"]),
        helper.make_node("Clip", ["raw", "low", "high"], ["action"]),
        helper.make_node("MatMul", ["obs", "C"], ["oc"]),
        helper.make_node("Mul", ["state", "half"], ["sh"]),
        helper.make_node("Add", ["oc", "sh"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["next_state"]),
    ]
    unused = helper.make_node("Identity", ["prev_action"], ["prev_copy"])
    metadata = contract_metadata(
        size, deter, stoch, initial_state=json.dumps({"kind": "vector", "values": [0.3] * size})
    )
    onnx.save(contract_model("test_agent", nodes + [unused], inits, size, metadata), path)
    return path


# The runtime's test graph (test_runtime.py; the malformed-file cases are reused elsewhere).
STATE = 6
_RNG = np.random.default_rng(0)
WEIGHTS = {
    "w_obs": _RNG.normal(size=(18, 4)).astype(np.float32) * 0.3,
    "w_prev": _RNG.normal(size=(4, 4)).astype(np.float32),
    "w_state": _RNG.normal(size=(STATE, 4)).astype(np.float32),
    "s_state": _RNG.normal(size=(STATE, STATE)).astype(np.float32) * 0.5,
    "s_obs": _RNG.normal(size=(18, STATE)).astype(np.float32) * 0.3,
}


def metadata(**changes: str | None) -> dict[str, str]:
    """Contract metadata for the runtime test graph; keyword changes replace (None removes) a key."""
    meta = contract_metadata(STATE, 4, STATE - 4, preset="tiny", train_step="1234")
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    return meta


def build(
    path: Path,
    *,
    meta: dict[str, str] | None = None,
    names: tuple[str, str, str] = ("obs", "prev_action", "state"),
    obs_size: int = 18,
    batch: str | int = "batch",
    action_scale: float = 1.5,
    noise: bool = False,
) -> Path:
    """Write the runtime test graph following (or, by the arguments, breaking) the contract.

    `noise` makes it a sampled policy's graph (give the metadata to match, SAMPLED_META):
    0.5 noise [batch, 4] is added to the action before the clip, latent_noise
    [batch, STATE] to next_state's pre-activation."""
    import onnx
    from onnx import helper, numpy_helper

    obs_name, prev_name, state_name = names
    inits = [numpy_helper.from_array(v, k) for k, v in WEIGHTS.items()]
    inits += [
        numpy_helper.from_array(np.array(action_scale, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(-1.0, dtype=np.float32), "lo"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "hi"),
    ]
    nodes = [
        helper.make_node("MatMul", [obs_name, "w_obs"], ["a1"]),
        helper.make_node("MatMul", [prev_name, "w_prev"], ["a2"]),
        helper.make_node("MatMul", [state_name, "w_state"], ["a3"]),
        helper.make_node("Sum", ["a1", "a2", "a3"], ["a4"]),
        helper.make_node("Tanh", ["a4"], ["a5"]),
        helper.make_node("Mul", ["a5", "scale"], ["a6"]),
        helper.make_node("Clip", ["a7" if noise else "a6", "lo", "hi"], ["action"]),
        helper.make_node("MatMul", [state_name, "s_state"], ["s1"]),
        helper.make_node("MatMul", [obs_name, "s_obs"], ["s2"]),
        helper.make_node("Add", ["s1", "s2"], ["s3"]),
        helper.make_node("Tanh", ["s4" if noise else "s3"], ["next_state"]),
    ]
    if noise:  # inserted where their results are needed: the nodes stay in topological order
        inits.append(numpy_helper.from_array(np.array(0.5, dtype=np.float32), "noise_scale"))
        nodes[-1:-1] = [helper.make_node("Add", ["s3", "latent_noise"], ["s4"])]
        nodes[6:6] = [
            helper.make_node("Mul", ["noise", "noise_scale"], ["n1"]),
            helper.make_node("Add", ["a6", "n1"], ["a7"]),
        ]
    if obs_size != 18:  # a graph reading fewer observation values
        inits[0] = numpy_helper.from_array(WEIGHTS["w_obs"][:obs_size], "w_obs")
        inits[4] = numpy_helper.from_array(WEIGHTS["s_obs"][:obs_size], "s_obs")
    model = contract_model(
        "test_agent",
        nodes,
        inits,
        STATE,
        metadata() if meta is None else meta,
        names=names,
        obs_size=obs_size,
        batch=batch,
        extra_inputs={"noise": 4, "latent_noise": STATE} if noise else None,
    )
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


# metadata of the sampled test graph (build(..., noise=True)): noise standard normal, latent_noise uniform
NOISE_INPUTS = {"noise": {"kind": "normal", "size": 4}, "latent_noise": {"kind": "uniform", "size": STATE}}
SAMPLED_META = {"hockey_agent__format": "2", "policy": "sample", "noise_inputs": json.dumps(NOISE_INPUTS)}


def vector(values: object) -> str:
    return json.dumps({"kind": "vector", "values": values})


MALFORMED_METADATA = {
    "strings": ({"initial_state": vector(["0.5"] * STATE)}, "initial_state values must be"),
    "nested": ({"initial_state": vector([[0.0]] * STATE)}, "initial_state values must be"),
    "nulls": ({"initial_state": vector([None] * STATE)}, "initial_state values must be"),
    "null-values": ({"initial_state": vector(None)}, "initial_state values must be"),
    "dict-values": ({"initial_state": vector({"a": 1})}, "initial_state values must be"),
    "bools": ({"initial_state": vector([True] * STATE)}, "initial_state values must be"),
    "deep-state": ({"initial_state": "[" * 100_000}, "initial_state is nested too deeply"),
    "deep-layout": ({"obs_layout": "[" * 100_000}, "obs_layout is nested too deeply"),
    "long-state": ({"initial_state": " " * 2_000_000 + "{}"}, "initial_state is 2000002 characters long"),
    "huge-state": ({"state_size": "4000000000", "deter_size": "3999999996"}, "state_size=4000000000 is over"),
    "huge-number": ({"train_step": "9" * 100_000}, "train_step is 100000 characters long"),
}


# ---- processes: `hockey-agent serve` and `client` as a user runs them ---------------

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
TOKEN = "s3cr3t-token-4711"
OTHER_TOKEN = "other-token-0815"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", *args]


def client_command(port: int, token: str, log: Path, *args: str) -> list[str]:
    """`hockey-agent client *args` against the local server on `port`."""
    return command(
        "client",
        *args,
        "--server-url",
        "127.0.0.1",
        "--server-port",
        str(port),
        "--token",
        token,
        "--log",
        str(log),
    )


def start_server(port: int, log: Path, *args: str) -> subprocess.Popen:
    """Start `hockey-agent serve` and wait until it listens."""
    server = subprocess.Popen(
        command("serve", "--port", str(port), "--log", str(log), *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    assert "listening on" in line, line + server.stdout.read()
    return server


def start_client(port: int, token: str, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        client_command(port, token, log, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )


def finish(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError(f"process did not finish:\n{out}") from None
    return process.returncode, out


def events(path: Path, kind: str | None = None) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [row for row in rows if kind is None or row["event"] == kind]


# What the package build needs (a copy, so the build leaves no files in the checkout).
SOURCES = ("agent", "export", "league", "selfplay", "pyproject.toml", "README.md")


def copy_sources(dest: Path) -> Path:
    """Copy what `pip install '.[client]'` builds from into `dest`."""
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif path.exists():
            shutil.copy(path, dest / name)
    return dest


# ---- read-only places and one-line errors ---------------------------------------


def simulate_read_only(monkeypatch: Any, *paths: Path) -> None:
    """Make os.access deny writing to `paths`, as it does for a non-root user on a 0o555 directory.

    Tests run as root too, where chmod stops nothing; the code asks os.access before writing,
    so this exercises its read-only paths everywhere (run_read_only below checks the real thing).
    """
    blocked = {os.path.realpath(p) for p in paths}
    real = os.access

    def access(path: str | os.PathLike, mode: int, **kwargs: object) -> bool:
        if mode & os.W_OK and os.path.realpath(path) in blocked:
            return False
        return real(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)


def run_read_only(directory: Path, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `args` while `directory` is really read-only: chmod 0o555 for a normal user; for
    root (whom chmod does not stop) a read-only bind mount in a private mount namespace."""
    import pytest

    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "MPLBACKEND": "Agg", "COLUMNS": "200"}
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in [directory, *directory.iterdir()]}
        try:
            for path in modes:
                path.chmod(0o555 if path.is_dir() else 0o444)
            return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
    mount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    namespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, str(directory)]
    probe = subprocess.run([*namespace, "true"], capture_output=True, text=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("running as root, where chmod does not stop writes, and no read-only mount is allowed here")
    return subprocess.run([*namespace, *args], capture_output=True, text=True, env=env, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess | object) -> str:
    """The single line a command printed on failure (no traceback)."""
    if isinstance(result, subprocess.CompletedProcess):
        text = result.stdout + result.stderr
    else:  # click's test runner result: output holds both streams
        text = result.output
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, text
    return lines[0]


def error_line(output: str) -> str:
    """The one 'Error:' line of a refused command (click's usage lines may precede it)."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error:"), output
    assert sum(line.startswith("Error:") for line in lines) == 1, output
    return lines[-1]
