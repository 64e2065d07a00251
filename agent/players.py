"""Turn a player spec from the command line into a Policy.

A spec is a scripted name (agent.opponents.SCRIPTED), an exported ONNX file, or a
training run directory / checkpoint file. The ONNX runtime and the checkpoint loader
are imported only when such a spec is used, so scripted matches need neither.
"""

from __future__ import annotations

from pathlib import Path

from agent.opponents import SCRIPTED, make_scripted
from agent.policy import Policy

FILE_KINDS = "an exported .onnx file, a run directory or a checkpoint file"


def describe_choices() -> str:
    """The accepted specs, for error messages."""
    return f"a scripted player ({', '.join(SCRIPTED)}) or {FILE_KINDS}"


def load_player(spec: str, seed: int | None = None) -> Policy:
    """Resolve `spec` to a Policy; an unknown spec is a ValueError listing the choices.

    `seed` only affects scripted players (learned ones act deterministically).
    """
    if spec in SCRIPTED:
        return make_scripted(spec, seed=seed)
    path = Path(spec)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise ValueError(f"ONNX file {spec!r} does not exist")
        from export.runtime import OnnxAgent

        return OnnxAgent(path)
    if path.exists():
        from agent.checkpoint import load_policy

        return load_policy(path, device="cpu")
    raise ValueError(f"unknown player {spec!r}; expected {describe_choices()}")
