"""League members: who can be rated, and how each becomes a playing Policy.

Three kinds: 'scripted' (every name in agent.players.scripted.SCRIPTED, added to every new
league), 'snapshot' (a frozen copy of the learning agent: an exported .onnx file or a
checkpoint) and 'external' (an .onnx file or checkpoint a user adds). Every member
plays through the Policy interface; `agent.players.match.play_game` calls `reset()` at the
start of each round, so a recurrent member's state never leaks between rounds.

A snapshot's role (selfplay/roles.py) is read from its `parent_run`: a league run names its
learners' snapshots `<run>/<role>-<i>` (`<run>/main-0`, `<run>/main-exploiter-0`, ...); a
snapshot of one main agent (self-play without roles) has the plain run name.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from agent.players.policy import BatchPolicy, Policy
from agent.players.scripted import SCRIPTED, make_scripted, scripted_batch

KINDS = ("scripted", "snapshot", "external")
ROLES = ("main", "main-exploiter", "league-exploiter")  # the learners of a league, whose snapshots are members
_LEARNER = re.compile(r"(main|main-exploiter|league-exploiter)-\d+")

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
        from agent.training.checkpoint import load_policy

        return load_policy(path, device="cpu")
    raise ValueError(f"unknown player {spec!r}; expected {describe_choices()}")


def load_batch_player(spec: str, games: int, seed: int | None = None, stochastic: bool = False) -> BatchPolicy:
    """`spec` as a player of `games` games at once (agent.players.policy.BatchPolicy).

    Scripted: one player per game, game i's seeded `scripted_seed(seed, i)`; ONNX: one
    runtime with a state per game; a run directory or checkpoint: the DreamerAgent
    acting for all games in one step (`stochastic` samples instead of the mean). A
    learned player holds each action for its action repeat (the file's metadata, the
    checkpoint's `train.action_repeat`).
    """
    if spec in SCRIPTED:
        return scripted_batch(spec, games, seed)
    path = Path(spec)
    if stochastic and (path.suffix.lower() == ".onnx" or not path.exists()):
        raise ValueError("a stochastic player needs a run directory or checkpoint")
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise ValueError(f"ONNX file {spec!r} does not exist")
        from export.runtime import OnnxAgent

        agent = OnnxAgent(path)
        agent.reset_batch(games)
        return agent
    if path.exists():
        from agent.dreamer.agent import BatchActingPolicy
        from agent.training.checkpoint import load_agent

        dreamer, cfg, _ = load_agent(path, device="cpu")
        return BatchActingPolicy(dreamer, games, deterministic=not stochastic, action_repeat=cfg.train.action_repeat)
    raise ValueError(f"unknown player {spec!r}; expected {describe_choices()}")


class LeagueError(Exception):
    """A problem the user can fix (unknown member, bad file, newer database): no traceback."""


@dataclass(frozen=True)
class Member:
    """One row of the members table; `path` is None for scripted members."""

    name: str
    kind: str
    path: str | None = None
    parent_run: str | None = None
    step: int | None = None
    created: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LeagueError(f"unknown member kind {self.kind!r}; choices: {', '.join(KINDS)}")
        if not self.name or self.name != self.name.strip():
            raise LeagueError(f"member name {self.name!r} must be non-empty without surrounding spaces")
        if (self.kind == "scripted") != (self.path is None):
            raise LeagueError(f"member {self.name!r}: scripted members have no path, all others need one")

    @property
    def spec(self) -> str:
        """What `load_player` accepts for this member."""
        return self.name if self.path is None else self.path


def role_of(member: Member) -> str:
    """'scripted', 'external', or the role of the learner a snapshot froze (one of ROLES).

    A snapshot whose parent_run is not `<run>/<role>-<i>` comes from one main agent
    training alone (or was added by hand), so it counts as a main agent's.
    """
    if member.kind != "snapshot":
        return member.kind
    run, slash, learner = (member.parent_run or "").rpartition("/")
    match = _LEARNER.fullmatch(learner) if slash and run else None
    return match.group(1) if match else "main"


def scripted_members() -> list[Member]:
    """One member per scripted player, as a fresh league starts."""
    now = time.time()
    return [Member(name=name, kind="scripted", created=now) for name in SCRIPTED]


def load_policy(member: Member, seed: int | None = None) -> Policy:
    """Build the member's Policy; `seed` makes scripted players' randomness reproducible."""
    if member.kind == "scripted":
        return load_player(member.name, seed=seed)
    return load_player(member.spec)


def file_member(
    name: str, path: str | Path, kind: str = "external", parent_run: str | None = None, step: int | None = None
) -> Member:
    """A snapshot/external member for `path`, checked by loading it and playing one step.

    Loading first means a typo or a corrupt file is refused before anything is
    written to the database.
    """
    import numpy as np

    if kind == "scripted":
        raise LeagueError(f"scripted members are added automatically; choose a kind from: {', '.join(KINDS[1:])}")
    if name in SCRIPTED:
        raise LeagueError(f"{name!r} is a scripted player's name; choose another member name")
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise LeagueError(f"{path}: no such file or directory")
    member = Member(name=name, kind=kind, path=str(resolved), parent_run=parent_run, step=step, created=time.time())
    try:
        policy = load_policy(member)
        policy.reset()
        action = np.asarray(policy.act(np.zeros(18)), dtype=np.float64)
    except Exception as exc:  # any loader failure means the file is unusable as a member
        raise LeagueError(f"{path} does not load as a player ({type(exc).__name__}: {exc})") from exc
    if action.shape != (4,) or not np.all(np.isfinite(action)):
        raise LeagueError(f"{path} loads but its action is not 4 finite values: {action}")
    return member
