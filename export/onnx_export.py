"""Export a trained DreamerAgent's acting step to one ONNX graph, and check it.

The graph follows docs/ARCHITECTURE.md ("The exported agent"): inputs obs, prev_action,
state (deter first, then the flattened one-hot stochastic part), outputs action and
next_state, batch dynamic, symlog inside. Policy 'mean' (the default) acts the
posterior's categorical mode and the actor's mode (the clipped mean of a bounded
normal, the most likely class of each discrete group); policy 'sample' acts as the agent
does in training, sampling both the posterior and the action, from two more inputs
that the runtime fills: `noise` (the actor's: standard normal [batch, 4] for the
continuous actors, uniform [batch, groups] for the discrete one) and `latent_noise`
(uniform [batch, latents], the posterior's). Sampling the latent too (not only the
action) makes the exported sampled policy the one `hockey-agent eval --policy sample`
measures, `BatchActingPolicy(deterministic=False)`, draw for draw. The module is the
core's `DreamerAgent.export_modules(policy)`.

Exporter: torch 2.13 defaults to the torch.export-based ("dynamo") exporter, which needs
the `onnxscript` package (not a dependency of this project) and takes ~10-20 s. The
TorchScript exporter works with the installed packages, takes ~1 s and gives the same
latency after onnxruntime's graph optimisation (it has no rule for torch's fused
rms_norm; the core's RMSNorm writes the formula out while exporting). It is the
default; `exporter="dynamo"` is available where onnxscript is installed.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.atomic import atomic_write
from export.runtime import ACTION_SIZE, OBS_SIZE, OnnxAgent, draw_noise

if TYPE_CHECKING:
    import onnx
    import torch

    from agent.dreamer.agent import ActingPolicy, DreamerAgent

FORMAT_VERSION = "1"
SAMPLED_FORMAT_VERSION = "2"  # format 1 plus the noise inputs: runtimes that predate them refuse the file
POLICIES = ("mean", "sample")
EXPORTER_NAME = "hockey-agent-export/1"
EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
MIN_OPSET = {"torchscript": 14, "dynamo": 18}
MAX_OPSET = {"torchscript": 20, "dynamo": 23}
CHECK_TOLERANCE = 1e-4
MIN_CHECK_STEPS = 250

# docs/game.md, "The observation": the player's own block, the other player's, the puck, the counters.
_BODY = ("x", "y", "angle", "vx", "vy", "angular_velocity")
OBS_LAYOUT: tuple[str, ...] = (
    tuple(f"own_{name}" for name in _BODY)
    + tuple(f"other_{name}" for name in _BODY)
    + ("puck_x", "puck_y", "puck_vx", "puck_vy", "own_keep_counter", "other_keep_counter")
)
ACTION_LAYOUT: tuple[str, ...] = ("force_x", "force_y", "torque", "shoot")


@dataclass(frozen=True)
class LoadedAgent:
    """A checkpoint's agent on the CPU with what the metadata needs."""

    agent: DreamerAgent
    preset: str
    train_step: int
    source: Path


def load_checkpoint_agent(source: str | os.PathLike[str]) -> LoadedAgent:
    """Rebuild the agent of a run directory or checkpoint file on the CPU, in eval mode."""
    from agent.training import checkpoint

    agent, _, data = checkpoint.load_agent(source, device="cpu")
    counters = data.get("counters", {})
    return LoadedAgent(
        agent=agent,
        preset=str(data.get("preset") or "custom"),
        train_step=int(counters.get("env_steps", 0)),
        source=checkpoint.resolve(source),
    )


def _cpu_eval_copy(agent: DreamerAgent) -> DreamerAgent:
    """A CPU copy in eval mode, so exporting mid-training neither moves the caller's agent
    off its device nor changes its mode: a fresh agent (eager, whatever the original
    compiled) with the original's state, built without drawing from the global random
    streams."""
    import dataclasses

    import torch

    from agent.dreamer.agent import DreamerAgent

    cfg = dataclasses.replace(agent.cfg, train=dataclasses.replace(agent.cfg.train, compile=False, device="cpu"))
    with torch.random.fork_rng(devices=[]):
        copy = DreamerAgent(cfg)
    copy.load_state_dict({k: v.detach().cpu() for k, v in agent.state_dict().items()})
    return copy.eval()


def _export_torchscript(step: torch.nn.Module, args: tuple[Any, ...], opset: int, inputs: list[str]) -> bytes:
    import torch

    names = [*inputs, "action", "next_state"]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter says it is legacy
        torch.onnx.export(
            step,
            args,
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=inputs,
            output_names=names[len(inputs) :],
            dynamic_axes={name: {0: "batch"} for name in names},
            do_constant_folding=True,
        )
    return buffer.getvalue()


def _export_dynamo(step: torch.nn.Module, args: tuple[Any, ...], opset: int, inputs: list[str]) -> bytes:
    import importlib.util

    import torch

    if importlib.util.find_spec("onnxscript") is None:
        raise ValueError(
            "exporter 'dynamo' needs the onnxscript package (pip install onnxscript); choices: " + ", ".join(EXPORTERS)
        )
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        step,
        args,
        dynamo=True,
        opset_version=opset,
        input_names=inputs,
        output_names=["action", "next_state"],
        dynamic_shapes=tuple({0: batch} for _ in inputs),
        optimize=True,
        verbose=False,
    )
    return program.model_proto.SerializeToString()


def build_metadata(
    preset: str,
    train_step: int,
    deter_size: int,
    stoch_size: int,
    initial_state: np.ndarray,
    exporter: str,
    noise_inputs: dict[str, tuple[str, int]] | None = None,
    action_repeat: int = 1,
) -> dict[str, str]:
    """The metadata strings of the graph contract; `noise_inputs` (name -> (kind, size))
    makes it a sampled policy's; `action_repeat` is the run's."""
    import torch

    if np.any(initial_state):
        initial = {"kind": "vector", "values": [float(v) for v in initial_state]}
    else:
        initial = {"kind": "zeros"}
    sampled = {}
    if noise_inputs:
        inputs = {name: {"kind": kind, "size": size} for name, (kind, size) in noise_inputs.items()}
        sampled = {"noise_inputs": json.dumps(inputs)}
    return {
        "hockey_agent.format": SAMPLED_FORMAT_VERSION if noise_inputs else FORMAT_VERSION,
        "exporter_version": f"{EXPORTER_NAME} torch/{torch.__version__} {exporter}",
        "preset": preset,
        "train_step": str(int(train_step)),
        "obs_layout": json.dumps(list(OBS_LAYOUT)),
        "action_layout": json.dumps(list(ACTION_LAYOUT)),
        "state_size": str(deter_size + stoch_size),
        "deter_size": str(deter_size),
        "stoch_size": str(stoch_size),
        "initial_state": json.dumps(initial),
        "policy": "sample" if noise_inputs else "mean",
        **sampled,
        "action_repeat": str(int(action_repeat)),
    }


def _declare_output_shapes(model: onnx.ModelProto, sizes: dict[str, int]) -> None:
    """Declare outputs as [batch, size]: the tracer leaves the feature size symbolic, and a
    declared size lets the runtime (and any viewer) see the contract without running it."""
    for output in model.graph.output:
        batch_dim, size_dim = output.type.tensor_type.shape.dim
        batch_dim.dim_param = "batch"
        size_dim.dim_value = sizes[output.name]


def _write_atomically(model: onnx.ModelProto, out: Path) -> None:
    """Serialise to a temporary file next to `out` and rename, so a kill leaves no half file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "wb") as f:
        f.write(model.SerializeToString())


def export_agent(
    agent: DreamerAgent,
    out: str | os.PathLike[str],
    *,
    preset: str,
    train_step: int,
    opset: int | None = None,
    exporter: str = "torchscript",
    policy: str = "mean",
) -> dict[str, str]:
    """Export `agent`'s acting step to `out` (checked, metadata attached); returns the metadata.

    `opset` None takes the exporter's default (DEFAULT_OPSET); `policy` is 'mean' or
    'sample' (the module docstring). The action repeat in the metadata is the agent's
    config's `train.action_repeat` (the checkpoint's).
    """
    import onnx
    import torch

    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choices: {', '.join(EXPORTERS)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choices: {', '.join(POLICIES)}")
    opset = DEFAULT_OPSET[exporter] if opset is None else opset
    if not MIN_OPSET[exporter] <= opset <= MAX_OPSET[exporter]:
        raise ValueError(
            f"opset {opset} unsupported by the {exporter} exporter; "
            f"choose {MIN_OPSET[exporter]} to {MAX_OPSET[exporter]}"
        )
    agent = _cpu_eval_copy(agent)
    step = agent.export_modules(policy).eval()
    init = agent.initial_state(1)
    initial_state = torch.cat([init["deter"], init["stoch"]], -1)[0].numpy()
    batch = 2  # an example batch of 1 could be specialised as a constant by the tracer
    args: tuple[Any, ...] = (
        torch.zeros(batch, OBS_SIZE),
        torch.zeros(batch, ACTION_SIZE),
        torch.as_tensor(initial_state).repeat(batch, 1),
    )
    inputs = ["obs", "prev_action", "state"]
    noise_inputs: dict[str, tuple[str, int]] = {}
    if policy == "sample":
        noise_inputs = {"noise": (step.noise_kind, step.noise_size), "latent_noise": ("uniform", step.latents)}
        args += tuple(torch.full((batch, size), 0.5) for _, size in noise_inputs.values())
        inputs += list(noise_inputs)
    with torch.no_grad():
        if exporter == "torchscript":
            raw = _export_torchscript(step, args, opset, inputs)
        else:
            raw = _export_dynamo(step, args, opset, inputs)
    model = onnx.load_from_string(raw)
    _declare_output_shapes(model, {"action": ACTION_SIZE, "next_state": step.state_size})
    metadata = build_metadata(
        preset,
        train_step,
        step.deter_size,
        step.stoch_size,
        initial_state,
        exporter,
        noise_inputs,
        action_repeat=agent.cfg.train.action_repeat,
    )
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    _write_atomically(model, Path(out))
    return metadata


class NoiseFedPolicy:
    """The PyTorch agent's sampled step (`DreamerAgent.acting_step` with noise) for one
    game, fed the noise an `OnnxAgent` of the same file and seed draws, draw for draw:
    the PyTorch side of a sampled graph's check."""

    def __init__(
        self, agent: DreamerAgent, noise_inputs: dict[str, tuple[str, int]], seed: int, action_repeat: int = 1
    ) -> None:
        self.agent, self.noise_inputs, self.action_repeat = agent, noise_inputs, action_repeat
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        import torch

        self.state = self.agent.initial_state(1)
        self.prev_action = torch.zeros(1, ACTION_SIZE)
        self._hold, self._held = 0, np.zeros(ACTION_SIZE)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """A new sampled action every `action_repeat` calls (drawing noise only then, as the
        runtime does), the held one in between."""
        import torch

        if self._hold > 0:
            self._hold -= 1
            return self._held.copy()
        noise = {k: torch.as_tensor(v) for k, v in draw_noise(self.rng, self.noise_inputs, 1).items()}
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1))
        with torch.no_grad():
            action, deter, stoch = self.agent.acting_step(
                obs_t, self.prev_action, self.state["deter"], self.state["stoch"], noise["noise"], noise["latent_noise"]
            )
        self.state, self.prev_action = {"deter": deter, "stoch": stoch}, action
        self._held, self._hold = action[0].numpy().astype(np.float64), self.action_repeat - 1
        return self._held.copy()


class Lockstep:
    """Plays with the PyTorch agent while the ONNX agent, fed the same observations and
    its own states, acts alongside; records the largest action and state differences."""

    def __init__(self, torch_actor: ActingPolicy | NoiseFedPolicy, onnx_agent: OnnxAgent) -> None:
        self.torch_actor, self.onnx_agent = torch_actor, onnx_agent
        self.steps = 0
        self.max_action_diff = 0.0
        self.max_state_diff = 0.0

    def reset(self) -> None:
        self.torch_actor.reset()
        self.onnx_agent.reset()

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = self.torch_actor.act(obs)
        onnx_action = self.onnx_agent.act(obs)
        self.steps += 1
        self.max_action_diff = max(self.max_action_diff, float(np.max(np.abs(action - onnx_action))))
        state = self.torch_actor.state
        torch_state = np.concatenate([state["deter"][0].numpy(), state["stoch"][0].numpy()])
        state_diff = np.max(np.abs(torch_state - self.onnx_agent.state))
        self.max_state_diff = max(self.max_state_diff, float(state_diff))
        return action


def _game_winners(games: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    from agent.players.match import game_winner  # the game (Box2D) loads only when a check runs

    return tuple(game_winner(rounds) for rounds in games)


@dataclass(frozen=True)
class CheckReport:
    """What `check_export` measured: differences over `steps` steps and both outcomes."""

    steps: int
    games: int
    max_action_diff: float
    max_state_diff: float
    torch_rounds: tuple[tuple[int, ...], ...]
    onnx_rounds: tuple[tuple[int, ...], ...]
    tolerance: float = CHECK_TOLERANCE

    @property
    def torch_winners(self) -> tuple[int, ...]:
        return _game_winners(self.torch_rounds)

    @property
    def onnx_winners(self) -> tuple[int, ...]:
        return _game_winners(self.onnx_rounds)

    @property
    def same_outcome(self) -> bool:
        """Same game winners. Round results are reported but not required to match: the
        game is chaotic, and a trained agent's 1e-5 float differences can flip a round."""
        return self.torch_winners == self.onnx_winners

    @property
    def ok(self) -> bool:
        return self.max_action_diff < self.tolerance and self.max_state_diff < self.tolerance and self.same_outcome


def check_export(
    agent: DreamerAgent, onnx_path: str | os.PathLike[str], *, games: int = 1, seed: int = 0, opponent: str = "weak"
) -> CheckReport:
    """Run the ONNX graph and the PyTorch agent side by side over whole games.

    At least `games` games are played, and more until the PyTorch agent has acted
    MIN_CHECK_STEPS times. Each game is played twice with the same seeds against the
    same scripted opponent: once driven by the PyTorch agent with the ONNX agent acting alongside on the same
    observations (each feeding back its own state), which gives the differences, and
    once driven by the ONNX agent alone, which gives its outcome. A sampled graph
    (metadata policy 'sample') is checked with the same noise fed to both sides: the
    runtime's generator seeded `seed` and the same draws for the PyTorch step
    (`NoiseFedPolicy`). Both hold their actions for the agent's action repeat (the
    PyTorch agent's config, the file's metadata).
    """
    from agent.dreamer.agent import ActingPolicy
    from agent.players.match import play_game
    from agent.players.scripted import SCRIPTED, make_scripted

    if opponent not in SCRIPTED:
        raise ValueError(f"unknown opponent {opponent!r}; choices: {', '.join(SCRIPTED)}")
    if games < 1:
        raise ValueError(f"games must be at least 1, got {games}")
    agent = _cpu_eval_copy(agent)
    repeat = agent.cfg.train.action_repeat
    onnx_agent = OnnxAgent(onnx_path, seed=seed)
    torch_actor: ActingPolicy | NoiseFedPolicy = ActingPolicy(agent, deterministic=True, action_repeat=repeat)
    if onnx_agent.policy == "sample":
        torch_actor = NoiseFedPolicy(agent, onnx_agent.noise_inputs, seed, action_repeat=repeat)
    lockstep = Lockstep(torch_actor, onnx_agent)
    onnx_player = OnnxAgent(onnx_path, seed=seed)
    torch_rounds, onnx_rounds = [], []
    game = 0
    while game < games or lockstep.steps < MIN_CHECK_STEPS:
        game_seed = seed + game
        game += 1
        result = play_game(lockstep, make_scripted(opponent, seed=game_seed), seed=game_seed)
        torch_rounds.append(result.rounds)
        result = play_game(onnx_player, make_scripted(opponent, seed=game_seed), seed=game_seed)
        onnx_rounds.append(result.rounds)
    return CheckReport(
        steps=lockstep.steps,
        games=game,
        max_action_diff=lockstep.max_action_diff,
        max_state_diff=lockstep.max_state_diff,
        torch_rounds=tuple(torch_rounds),
        onnx_rounds=tuple(onnx_rounds),
    )
