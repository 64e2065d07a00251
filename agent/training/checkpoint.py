"""Checkpoints: save and load a run's state, and load a trained agent as a Policy.

A checkpoint is one torch file holding only tensors, dicts, lists, numbers and
strings (configs as nested dicts, generator states as JSON strings), so it loads
with `torch.load(weights_only=True)` and never runs pickled code. Keys:
`format`, `preset`, `config` (config_to_dict), `model` (state_dict), `optimizer`,
`counters` (env_steps, decisions, updates, episodes, time; checkpoints from before
the action repeat lack decisions), `rng` (python, numpy, torch, cuda, trainer, envs),
`trainer` (loop state), `replay` (file name of the replay .npz next to it, or "" when
none). Files are written to a tmp name and moved with os.replace,
so a kill never leaves a half-written checkpoint.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from agent.atomic import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"
KEPT_CHECKPOINTS = "checkpoints"  # train.keep_checkpoints: every checkpoint, kept here by env steps
CONFIG_FILE = "config.json"
FORMAT = 1


def resolve(path: str | Path) -> Path:
    """The checkpoint file of a run directory, or the file itself."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (expected a run directory or a checkpoint file)")
    return path


def save(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` atomically to `path`."""
    import torch

    path = Path(path)
    with atomic_write(path, "wb") as f:
        torch.save({"format": FORMAT, **payload}, f)
    return path


# sentences of torch's load errors that advise loading the file unsafely or filing a report
_ADVICE = ("weights_only", "safe_globals", "trust", "file an issue", "Please ", "Check the documentation")


def _reason(exc: BaseException) -> str:
    """The first line of torch's reason a file did not load, without its advice.

    Torch's message for a file its safe loader refuses recommends retrying with
    weights_only=False or allow-listing the offending class: wrong advice for a file
    that may come from anyone, so only the reason itself is kept.
    """
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    for line in text.splitlines():
        sentences = [s.strip() for s in line.split(". ") if s.strip()]
        kept = [s for s in sentences if not any(a in s for a in _ADVICE)]
        if kept:
            return f"{type(exc).__name__}: {kept[0].rstrip('.')}"
    return type(exc).__name__


def load(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint (run dir or file) safely; a corrupt or foreign file is a ValueError."""
    import torch

    file = resolve(path)
    try:
        with warnings.catch_warnings():  # a foreign pickle protocol: the error below says enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(file, map_location=device, weights_only=True)
    except OSError as exc:
        raise ValueError(f"cannot read {file}: {exc.strerror or exc}") from exc
    except Exception as exc:  # the safe unpickler fails on random bytes in many ways
        raise ValueError(f"{file} is not a readable checkpoint (corrupt or another format): {_reason(exc)}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{file} is not a hockey-agent checkpoint of format {FORMAT}")
    missing = [k for k in ("config", "model", "counters") if k not in data]
    if missing:
        raise ValueError(f"{file} lacks {missing}: not a complete checkpoint")
    return data


# what resuming a run reads besides config, model and counters: section -> keys
RESUME_KEYS: dict[str, tuple[str, ...]] = {
    "counters": ("env_steps", "updates", "episodes", "time"),
    "optimizer": (),  # the optimisers the config names (`optimizer_names`)
    "rng": ("python", "numpy", "torch", "trainer", "envs"),
    "trainer": ("recent", "env_builds"),
}


def check_resumable(data: dict[str, Any], file: str | Path) -> None:
    """Raise a ValueError naming `file` and what it lacks when a run cannot resume from it."""
    missing = [k for k in (*RESUME_KEYS, "replay") if k not in data]
    if missing:
        raise ValueError(f"{file} lacks {missing}: not a complete checkpoint")
    from agent.config import config_from_dict
    from agent.dreamer.agent import optimizer_names

    try:
        parts = optimizer_names(config_from_dict(data["config"]))
    except (ValueError, TypeError, AttributeError):
        parts = ()  # a config that does not load is reported where the run reads it
    for section, keys in RESUME_KEYS.items():
        keys = (*parts, *keys) if section == "optimizer" else keys
        value = data[section]
        lacking = [k for k in keys if not isinstance(value, dict) or k not in value]
        if lacking:
            raise ValueError(f"{file} is not a complete checkpoint: its {section} lacks {lacking}")
    if not isinstance(data["replay"], str):
        raise ValueError(f"{file} is not a complete checkpoint: its replay is not a file name")


def replay_beside(data: dict[str, Any], file: str | Path) -> Path:
    """The replay file that the checkpoint `data` (read from `file`) names, which lies beside it;
    a ValueError naming `file` when it names none or the file is not there."""
    name = data.get("replay")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{file} names no replay file")
    path = Path(file).parent / name
    if not path.is_file():
        raise ValueError(f"{file} names the replay file {name}, which is not beside it")
    return path


def load_optimizer_state(agent: Any, state: dict[str, Any], what: str) -> None:
    """Restore the agent's optimisers; a state that does not fit is a ValueError naming `what`."""
    try:
        agent.load_optimizer_state(state)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from exc


def check_compatible(expected: Any, found: Any, what: str) -> None:
    """Raise a ValueError naming every differing field of the model-defining config sections
    of two Configs (a checkpoint's read with `config_from_dict`, so fields newer than it
    hold their defaults)."""
    from agent.config import config_to_dict

    expected, found = config_to_dict(expected), config_to_dict(found)
    diffs = []
    for section in ("model", "actor"):
        exp, got = expected.get(section, {}), found.get(section, {})
        for key in sorted(set(exp) | set(got)):
            if section == "actor" and key not in ("dist", "min_std", "max_std"):
                continue  # other actor fields are training settings, not shapes
            if section == "model" and key in ("init", "compute_dtype"):
                continue  # how the weights were first drawn, and the precision of products: not what they are
            if exp.get(key) != got.get(key):
                diffs.append(f"{section}.{key}: run {exp.get(key)!r} vs checkpoint {got.get(key)!r}")
    if diffs:
        raise ValueError(f"{what} was made with another model configuration (another preset?): " + "; ".join(diffs))


def load_model_state(agent: Any, state: dict[str, Any], what: str) -> None:
    """Load a state dict only when every name and shape matches (never a partial load)."""
    own = agent.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or extra or shapes:
        raise ValueError(
            f"{what} does not fit this model: missing {missing[:5]}, unexpected {extra[:5]}, "
            f"shape mismatches {shapes[:5]}"
        )
    agent.load_state_dict(state, strict=True)


def load_agent(path: str | Path, device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild the DreamerAgent of a checkpoint: (agent in eval mode, Config, checkpoint dict)."""
    from agent.config import config_from_dict
    from agent.dreamer.agent import DreamerAgent

    data = load(path, device)
    cfg = config_from_dict(data["config"])
    agent = DreamerAgent(cfg).to(device)
    load_model_state(agent, data["model"], str(resolve(path)))
    agent.eval()
    return agent, cfg, data


def load_policy(path: str | Path, device: str = "cpu") -> Any:
    """A deterministic ActingPolicy (actor mean) from a run directory or checkpoint file,
    holding each action for the run's `train.action_repeat` frames."""
    from agent.dreamer.agent import ActingPolicy

    agent, cfg, _ = load_agent(path, device)
    return ActingPolicy(agent, deterministic=True, action_repeat=cfg.train.action_repeat)
