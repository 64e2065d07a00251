"""The torch-free runtime: play with an exported ONNX agent (numpy + onnxruntime only).

The tournament client, the league and evaluation all act through `OnnxAgent`, so this
module must import without torch, onnx or the training code. The graph contract (input
and output names, sizes, metadata) is the one in docs/ARCHITECTURE.md ("The exported
agent"); a file that breaks it is refused at load time with `AgentFileError`, while bad
observations at acting time are repaired and logged, because a tournament game must
never crash mid-round.

A file whose metadata says `policy` = "sample" samples its actions: its graph takes the
noise inputs that `noise_inputs` lists, and the runtime draws them every step from its
own numpy generator (`OnnxAgent(path, seed=...)`; seed None draws from the operating
system, so every client run plays differently). Files without the key act the mean.

Action repeat: the metadata's `action_repeat` k makes the agent play as it was trained:
the graph runs on every k-th call of a game after its reset (the first call included),
and the calls in between answer the held action. A file exported before the key existed
plays with 1, and says so once per file.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import numpy as np
import onnxruntime as ort

from agent.config import MAX_ACTION_REPEAT
from agent.game.rules import ACTION_SIZE, OBS_SIZE

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS = ("1", "2")  # "2": format 1 plus the noise inputs of a sampled policy
POLICIES = ("mean", "sample")
NOISE_KINDS = ("normal", "uniform")  # standard normal; uniform in [0, 1)
REQUIRED_METADATA = (
    "hockey_agent.format",
    "exporter_version",
    "preset",
    "train_step",
    "obs_layout",
    "action_layout",
    "state_size",
    "deter_size",
    "stoch_size",
    "initial_state",
)
# Largest recurrent state an agent file may declare (deter + stoch values). The presets'
# states are 64 + 8*4 = 96 (tiny), 512 + 32*4 = 640 (small) and 2048 + 32*16 = 2560
# (medium); 16384 leaves 6x headroom over medium and costs 64 KiB per game row, while a
# corrupt size (billions) would allocate gigabytes at load.
MAX_STATE_SIZE = 16384
# Longest metadata value parsed: JSON values (a vector initial state of MAX_STATE_SIZE
# floats at full precision is about 26 * 16384 = 426,000 characters) and integers.
# Checked before parsing, so a corrupt file costs no time or memory to refuse.
MAX_JSON_CHARS = 1_000_000
MAX_INT_CHARS = 20
# Game observations stay within a few tens (positions +-5, speeds ~25, counters <= 15);
# anything beyond this is corrupt input, clipped so float32 and symlog stay finite.
OBS_LIMIT = 1.0e4
# agent files without `action_repeat` already noted (once per file and process)
_NOTED_WITHOUT_REPEAT: set[str] = set()


class AgentFileError(ValueError):
    """The file is not an exported hockey agent that follows the graph contract."""


def _session_options(threads: int) -> ort.SessionOptions:
    """Options for a session that keeps to `threads` cores and never busy-waits.

    Spinning threads would burn the core the game (or the other player) needs between
    steps; sequential execution avoids a second thread pool for this small graph.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _shown(value: Any, limit: int = 60) -> str:
    """repr of a metadata value, cut for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(metadata: dict[str, str], key: str, limit: int) -> str:
    """The metadata string under `key`, refused unread when longer than `limit`."""
    value = metadata[key]
    if len(value) > limit:
        raise AgentFileError(f"metadata {key} is {len(value)} characters long, at most {limit}")
    return value


def _int(metadata: dict[str, str], key: str) -> int:
    text = _text(metadata, key, MAX_INT_CHARS)
    try:
        return int(text)
    except ValueError:
        raise AgentFileError(f"metadata {key}={_shown(text)} is not an integer") from None


def _positive_int(metadata: dict[str, str], key: str, maximum: int = MAX_STATE_SIZE) -> int:
    value = _int(metadata, key)
    if value <= 0:
        raise AgentFileError(f"metadata {key}={value} must be positive")
    if value > maximum:
        raise AgentFileError(f"metadata {key}={value} is over the limit of {maximum}")
    return value


def _json(metadata: dict[str, str], key: str) -> Any:
    """The JSON value under `key`: length checked first, deep nesting refused."""
    text = _text(metadata, key, MAX_JSON_CHARS)
    try:
        return json.loads(text)
    except RecursionError:
        raise AgentFileError(f"metadata {key} is nested too deeply to be a valid value") from None
    except ValueError:  # JSONDecodeError, or an integer literal too long to convert
        raise AgentFileError(f"metadata {key} is not JSON: {_shown(text)}") from None


def _json_list(metadata: dict[str, str], key: str, length: int) -> list[str]:
    value = _json(metadata, key)
    if not isinstance(value, list) or len(value) != length:
        raise AgentFileError(f"metadata {key} must be a JSON list of {length} names, got {_shown(value)}")
    return [_shown(name) if not isinstance(name, str) else name for name in value]


def _initial_state(metadata: dict[str, str], state_size: int) -> np.ndarray:
    """Decode `initial_state` ({"kind": "zeros"} or {"kind": "vector", "values": [...]})."""
    spec = _json(metadata, "initial_state")
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "zeros":
        return np.zeros(state_size, dtype=np.float32)
    if kind == "vector":
        values = spec.get("values")
        numbers = isinstance(values, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        )
        if not numbers:
            raise AgentFileError(f"metadata initial_state values must be a list of numbers, got {_shown(values)}")
        array = np.asarray(values, dtype=np.float64)
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused here
            finite = bool(np.all(np.isfinite(array.astype(np.float32))))
        if array.shape != (state_size,) or not finite:
            raise AgentFileError(f"metadata initial_state holds {array.size} values, expected {state_size} finite ones")
        return array.astype(np.float32)
    raise AgentFileError(f"metadata initial_state kind {_shown(kind)} unknown; choices: 'zeros', 'vector'")


def _noise_inputs(metadata: dict[str, str]) -> dict[str, tuple[str, int]]:
    """The graph's noise inputs, name -> (kind, size): none for policy 'mean' (or no key)."""
    policy = metadata.get("policy", "mean")
    if policy not in POLICIES:
        raise AgentFileError(f"metadata policy {_shown(policy)} unknown; choices: {', '.join(POLICIES)}")
    if policy == "mean":
        return {}
    if "noise_inputs" not in metadata:
        raise AgentFileError("metadata policy 'sample' needs noise_inputs, which is missing")
    spec = _json(metadata, "noise_inputs")
    if not isinstance(spec, dict) or not spec:
        raise AgentFileError(f"metadata noise_inputs must be a JSON object of inputs, got {_shown(spec)}")
    inputs = {}
    for name, item in spec.items():
        kind = item.get("kind") if isinstance(item, dict) else None
        size = item.get("size") if isinstance(item, dict) else None
        if kind not in NOISE_KINDS:
            raise AgentFileError(
                f"metadata noise_inputs {name!r} kind {_shown(kind)} unknown; choices: normal, uniform"
            )
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_STATE_SIZE:
            raise AgentFileError(f"metadata noise_inputs {name!r} size {_shown(size)} must be in [1, {MAX_STATE_SIZE}]")
        inputs[name] = (kind, size)
    return inputs


def draw_noise(rng: np.random.Generator, inputs: dict[str, tuple[str, int]], batch: int) -> dict[str, np.ndarray]:
    """One step's noise for `batch` rows, float32 [batch, size] per input, drawn in the
    order of `inputs` (the metadata's): standard normal or uniform in [0, 1)."""
    noise = {}
    for name, (kind, size) in inputs.items():
        values = rng.standard_normal((batch, size)) if kind == "normal" else rng.random((batch, size))
        noise[name] = values.astype(np.float32)
    return noise


def _check_io(kind: str, nodes: list[Any], expected: dict[str, int], dynamic_batch: bool) -> None:
    """Check names, float32 type, rank 2 and feature sizes of the graph's inputs or outputs."""
    names = [node.name for node in nodes]
    if sorted(names) != sorted(expected):
        raise AgentFileError(f"graph {kind}s are {names}, expected {sorted(expected)}")
    for node in nodes:
        if node.type != "tensor(float)":
            raise AgentFileError(f"{kind} '{node.name}' has type {node.type}, expected tensor(float)")
        shape = node.shape
        if not shape:  # unknown shape (outputs only): the probe run checks it
            continue
        if len(shape) != 2:
            raise AgentFileError(f"{kind} '{node.name}' has rank {len(shape)}, expected 2 ([batch, size])")
        size = shape[1]
        if isinstance(size, int) and size != expected[node.name]:
            raise AgentFileError(f"{kind} '{node.name}' has size {size}, expected {expected[node.name]}")
        if dynamic_batch and isinstance(shape[0], int):
            raise AgentFileError(
                f"{kind} '{node.name}' has a fixed batch dimension {shape[0]}; the contract needs a dynamic one"
            )


def repair_observation(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Non-finite values replaced (nan -> 0, inf -> +-OBS_LIMIT), huge ones clipped.

    Returns the repaired float64 array and what was repaired (empty when nothing was),
    so that a corrupt observation never crashes a game.
    """
    problems = []
    bad = ~np.isfinite(values)
    if bad.any():
        problems.append(f"{int(bad.sum())} non-finite")
        values = np.nan_to_num(values, nan=0.0, posinf=OBS_LIMIT, neginf=-OBS_LIMIT)
    huge = np.abs(values) > OBS_LIMIT
    if huge.any():
        problems.append(f"{int(huge.sum())} beyond +-{OBS_LIMIT:g}")
        values = np.clip(values, -OBS_LIMIT, OBS_LIMIT)
    return values, problems


def _note_without_repeat(path: str) -> None:
    """Say once per agent file (and process) that it carries no action repeat."""
    key = os.path.realpath(path)
    if key not in _NOTED_WITHOUT_REPEAT:
        _NOTED_WITHOUT_REPEAT.add(key)
        logger.warning(
            "%s has no action_repeat in its metadata (exported before the key existed): it acts every frame", path
        )


class OnnxAgent:
    """A learned player running one exported ONNX acting step per call.

    Implements the `Policy` protocol (`reset`, `act`) for one game, and `act_batch`
    with per-row recurrent states for many games at once (`reset_batch`, `reset_rows`).
    The single-game state and the batch state are independent. A sampled policy
    (`policy` == "sample") draws its noise from a numpy generator seeded with `seed`
    (None: fresh entropy); one generator serves all calls, so a seed repeats a whole
    sequence of calls. Each game holds its action for `action_repeat` calls (the
    metadata's; 1 when it has none).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int = 1, seed: int | None = None) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"no agent file at {self.path}")
        try:
            self._session = ort.InferenceSession(
                self.path, _session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own classes for unreadable files
            raise AgentFileError(f"{self.path} is not a loadable ONNX model: {exc}") from None

        metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        missing = [key for key in REQUIRED_METADATA if key not in metadata]
        if missing:
            raise AgentFileError(f"{self.path}: metadata missing {missing} (not an exported hockey agent?)")
        if metadata["hockey_agent.format"] not in SUPPORTED_FORMATS:
            raise AgentFileError(
                f"hockey_agent.format {_shown(metadata['hockey_agent.format'])} unsupported; "
                f"choices: {list(SUPPORTED_FORMATS)}"
            )
        self._metadata = metadata
        self.state_size = _positive_int(metadata, "state_size")
        self.deter_size = _positive_int(metadata, "deter_size")
        self.stoch_size = _positive_int(metadata, "stoch_size")
        if self.deter_size + self.stoch_size != self.state_size:
            raise AgentFileError(
                f"deter_size {self.deter_size} + stoch_size {self.stoch_size} != state_size {self.state_size}"
            )
        self.train_step = _int(metadata, "train_step")
        self.preset = _text(metadata, "preset", 200)
        self.exporter_version = _text(metadata, "exporter_version", 200)
        self.obs_layout = _json_list(metadata, "obs_layout", OBS_SIZE)
        self.action_layout = _json_list(metadata, "action_layout", ACTION_SIZE)
        self._initial = _initial_state(metadata, self.state_size)
        self.noise_inputs = _noise_inputs(metadata)
        self.policy = "sample" if self.noise_inputs else "mean"
        self._rng = np.random.default_rng(seed)
        if "action_repeat" in metadata:
            self.action_repeat = _positive_int(metadata, "action_repeat", MAX_ACTION_REPEAT)
        else:
            self.action_repeat = 1
            _note_without_repeat(self.path)

        inputs = {"obs": OBS_SIZE, "prev_action": ACTION_SIZE, "state": self.state_size}
        inputs |= {name: size for name, (_, size) in self.noise_inputs.items()}
        outputs = {"action": ACTION_SIZE, "next_state": self.state_size}
        _check_io("input", self._session.get_inputs(), inputs, dynamic_batch=True)
        _check_io("output", self._session.get_outputs(), outputs, dynamic_batch=False)
        self._probe()

        self.reset()
        self.reset_batch(1)

    @property
    def metadata(self) -> dict[str, str]:
        """All metadata strings stored in the file."""
        return dict(self._metadata)

    @property
    def initial_state(self) -> np.ndarray:
        """The packed recurrent state after a reset, float32 [S]."""
        return self._initial.copy()

    @property
    def state(self) -> np.ndarray:
        """The single-game packed state the next `act` starts from, float32 [S]."""
        return self._state[0].copy()

    def _probe(self) -> None:
        """Run the graph once at batch 2 so a broken file fails at load, not mid-game."""
        obs = np.zeros((2, OBS_SIZE), dtype=np.float32)
        prev = np.zeros((2, ACTION_SIZE), dtype=np.float32)
        state = np.tile(self._initial, (2, 1))
        noise = {name: np.full((2, size), 0.5, np.float32) for name, (_, size) in self.noise_inputs.items()}
        try:
            action, next_state = self.run_graph(obs, prev, state, noise)
        except Exception as exc:
            raise AgentFileError(f"{self.path}: a probe step at batch 2 failed: {exc}") from None
        if action.shape != (2, ACTION_SIZE) or next_state.shape != (2, self.state_size):
            raise AgentFileError(
                f"{self.path}: probe step returned action {action.shape} and next_state "
                f"{next_state.shape}, expected (2, {ACTION_SIZE}) and (2, {self.state_size})"
            )

    def draw_noise(self, batch: int) -> dict[str, np.ndarray]:
        """The next step's noise inputs for `batch` rows from the agent's generator (none for 'mean')."""
        return draw_noise(self._rng, self.noise_inputs, batch)

    def run_graph(
        self,
        obs: np.ndarray,
        prev_action: np.ndarray,
        state: np.ndarray,
        noise: dict[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One raw graph call on float32 batches, no checks: (action [B,4], next_state [B,S]).

        A sampled policy's noise inputs are drawn (`draw_noise`) unless `noise` gives them."""
        feed = {
            "obs": np.ascontiguousarray(obs, dtype=np.float32),
            "prev_action": np.ascontiguousarray(prev_action, dtype=np.float32),
            "state": np.ascontiguousarray(state, dtype=np.float32),
        }
        if self.noise_inputs:
            noise = self.draw_noise(feed["obs"].shape[0]) if noise is None else noise
            feed |= {name: np.ascontiguousarray(noise[name], dtype=np.float32) for name in self.noise_inputs}
        action, next_state = self._session.run(["action", "next_state"], feed)
        return action, next_state

    def _warn(self, message: str) -> None:
        """Warn once per reset, then log at debug level, so a broken feed cannot flood the log."""
        if self._warned:
            logger.debug(message)
        else:
            logger.warning(message)
            self._warned = True

    def _sanitize(self, obs: Any) -> np.ndarray:
        """Observations [B,18] as float32, with non-finite or huge values repaired (and warned)."""
        try:
            values = np.array(obs, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"observation is not numeric: {exc}") from None
        values, problems = repair_observation(values)
        if problems:
            self._warn("observation repaired (" + ", ".join(problems) + " values)")
        return values.astype(np.float32)

    def _step(self, obs: np.ndarray, prev: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Graph step for [B] rows; rows with a non-finite output act zeros and restart."""
        action, next_state = self.run_graph(obs, prev, state)
        broken = ~(np.isfinite(action).all(axis=1) & np.isfinite(next_state).all(axis=1))
        if broken.any():
            self._warn(f"graph output non-finite in {int(broken.sum())} rows; acting zeros and resetting their state")
            action = action.copy()
            next_state = next_state.copy()
            action[broken] = 0.0
            next_state[broken] = self._initial
        action = np.clip(action, -1.0, 1.0)
        return action, next_state, action.astype(np.float64)

    def reset(self) -> None:
        """Start a round: initial state from the metadata, previous action zeros, the
        action repeat restarted (the next call runs the graph)."""
        self._state = self._initial[None, :].copy()
        self._prev = np.zeros((1, ACTION_SIZE), dtype=np.float32)
        self._hold = 0  # calls left that answer the held action
        self._held = np.zeros(ACTION_SIZE)
        self._warned = False

    def act(self, obs: np.ndarray) -> np.ndarray:
        """One step for the single game: 18 observation values -> 4 actions (float64, in [-1, 1]).

        The graph runs on every `action_repeat`-th call after `reset`; the others answer the held action."""
        values = self._sanitize(obs)
        if values.shape != (OBS_SIZE,):
            raise ValueError(f"observation must hold {OBS_SIZE} values, got shape {values.shape}")
        if self._hold > 0:
            self._hold -= 1
            return self._held.copy()
        action, self._state, result = self._step(values[None, :], self._prev, self._state)
        self._prev = action
        self._held, self._hold = result[0], self.action_repeat - 1
        return result[0].copy()

    def reset_batch(self, batch: int) -> None:
        """Start `batch` independent games for `act_batch`, all at the initial state."""
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        self._batch_state = np.tile(self._initial, (batch, 1))
        self._batch_prev = np.zeros((batch, ACTION_SIZE), dtype=np.float32)
        self._batch_hold = np.zeros(batch, dtype=np.int64)  # per game: calls left that answer the held action
        self._batch_held = np.zeros((batch, ACTION_SIZE))
        self._warned = False

    def reset_rows(self, rows: Any) -> None:
        """Restart some of the batch games (indices or a boolean mask of length B)."""
        index = np.asarray(rows)
        batch = self._batch_state.shape[0]
        if index.size == 0 and index.dtype != bool:
            return
        if index.dtype == bool:
            if index.shape != (batch,):
                raise ValueError(f"row mask must have length {batch}, got shape {index.shape}")
        elif not np.issubdtype(index.dtype, np.integer) or index.min() < -batch or index.max() >= batch:
            raise ValueError(f"rows must be integer indices in [-{batch}, {batch}), got {rows!r}")
        self._batch_state[index] = self._initial
        self._batch_prev[index] = 0.0
        self._batch_hold[index] = 0

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        """One step for every batch game: obs [B,18] -> actions [B,4] (float64, in [-1, 1])."""
        values = self._sanitize(obs)
        batch = self._batch_state.shape[0]
        if values.shape != (batch, OBS_SIZE):
            raise ValueError(
                f"batch observations must have shape ({batch}, {OBS_SIZE}), got {values.shape}; "
                "call reset_batch(B) to change the batch size"
            )
        return self._act_index(np.arange(batch), values)

    def act_rows(self, rows: Any, obs: np.ndarray) -> np.ndarray:
        """One step for some batch games (integer indices): obs [k,18] -> actions [k,4].

        With `reset_rows` this makes the agent a `BatchPolicy` (agent/players/policy.py)."""
        index = np.asarray(rows, np.int64)
        values = self._sanitize(obs)
        if values.shape != (index.size, OBS_SIZE):
            raise ValueError(f"observations must have shape ({index.size}, {OBS_SIZE}), got {values.shape}")
        return self._act_index(index, values)

    def _act_index(self, index: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The batch games `index` on checked observations: the graph runs for the games
        whose held action has run out, the others answer theirs."""
        due = self._batch_hold[index] == 0
        self._batch_hold[index[~due]] -= 1
        if due.any():
            rows = index[due]
            action, state, result = self._step(values[due], self._batch_prev[rows], self._batch_state[rows])
            self._batch_state[rows] = state
            self._batch_prev[rows] = action
            self._batch_held[rows] = result
            self._batch_hold[rows] = self.action_repeat - 1
        return self._batch_held[index].copy()

    def __repr__(self) -> str:
        return (
            f"OnnxAgent({self.path!r}, preset={self.preset!r}, train_step={self.train_step}, "
            f"state_size={self.state_size}, policy={self.policy!r}, action_repeat={self.action_repeat})"
        )


def describe(agent: OnnxAgent) -> str:
    """A one-line human summary of an agent file (for CLI messages)."""
    size_kib = math.ceil(os.path.getsize(agent.path) / 1024)
    return (
        f"{os.path.basename(agent.path)}: preset {agent.preset}, train step {agent.train_step}, "
        f"state {agent.deter_size}+{agent.stoch_size}, policy {agent.policy}, action repeat {agent.action_repeat}, "
        f"{size_kib} KiB, "
        f"exporter {agent.exporter_version}"
    )
