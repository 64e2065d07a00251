"""Self-play training: the DreamerV3 trainer against a league, with frozen snapshots.

The trainer (agent/trainer.py) asks an opponent sampler for a player at the start of
every round. Here that sampler draws from the league with PFSP (selfplay/pfsp.py):
a share of rounds against the learner's latest self, a share against the scripted
players, the rest against frozen snapshots and external members, weighted towards
the ones the learner still loses to. Every `snapshot_every` env steps the learner
is exported to ONNX (the same artefact the tournament client plays), added to the
league database as a member, rated against the others (`snapshot_games` games per
new pair) and becomes an opponent. Sides alternate: in normal games the learner is
player 1 or, through the mirrored observation, player 2, drawn per round.

Resume: the sampler's PFSP state is saved in the trainer's checkpoint; snapshots
already in the database when a run resumes are kept, and the next snapshot is the
next multiple of `snapshot_every`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.config import SEED_LEAGUE, Config, scripted_seed
from agent.players.policy import Policy
from selfplay.pfsp import PFSPSampler

if TYPE_CHECKING:
    from agent.training.trainer import Trainer
    from league.members import Member

SELF = "self"  # the PFSP name of the learner's latest self
OUTCOME_SCORE = {1: 1.0, 0: 0.5, -1: 0.0}  # trainer outcome -> PFSP outcome


def league_dir_for(cfg: Config, run_dir: Path) -> Path:
    """The run's league: train.league_dir, or <run dir>/league."""
    return Path(cfg.train.league_dir) if cfg.train.league_dir else run_dir / "league"


class LeagueSampler:
    """The trainer's opponent sampler for self-play (see the module docstring).

    Each game slot keeps its own instance of every opponent it has met, because
    learned opponents carry a recurrent state per game.
    """

    def __init__(self, cfg: Config, league_dir: Path) -> None:
        from agent.players.scripted import SCRIPTED
        from league.db import LeagueDB
        from league.members import scripted_members

        t = cfg.train
        self.league_dir = league_dir
        self.seed = t.seed
        self.action_repeat = t.action_repeat  # the learner's latest self plays as it learns
        self.rng = np.random.default_rng(t.seed + SEED_LEAGUE)
        self.pfsp = PFSPSampler(
            scripted=SCRIPTED, weighting=t.pfsp, self_share=t.latest_share, scripted_share=t.scripted_share, latest=SELF
        )
        with LeagueDB(league_dir, create=True) as db:
            db.start_with(scripted_members())
            self.members = {m.name: m for m in db.members()}
        for member in self.members.values():
            if member.kind != "scripted":
                self.pfsp.add(member.name)
        self.trainer: Trainer | None = None
        self._players: dict[tuple[int, str], Policy] = {}

    def bind(self, trainer: Trainer) -> None:
        """Give the sampler the learner, whose latest self is an opponent too."""
        self.trainer = trainer

    def add(self, member: Member) -> None:
        self.members[member.name] = member
        self.pfsp.add(member.name)

    def _make(self, env_index: int, name: str) -> Policy:
        from agent.dreamer.agent import ActingPolicy
        from league.members import load_policy

        if name == SELF:
            if self.trainer is None:
                raise RuntimeError("LeagueSampler.bind(trainer) must be called before sampling")
            return ActingPolicy(self.trainer.agent, deterministic=True, action_repeat=self.action_repeat)
        member = self.members[name]
        seed = scripted_seed(self.seed, env_index) if member.kind == "scripted" else None
        return load_policy(member, seed=seed)

    def sample(self, env_index: int) -> tuple[str, Policy]:
        name = self.pfsp.sample(self.rng)
        key = (env_index, name)
        if key not in self._players:
            self._players[key] = self._make(env_index, name)
        return name, self._players[key]

    def report(self, name: str, outcome: int) -> None:
        self.pfsp.update(name, OUTCOME_SCORE[int(outcome)])

    def probabilities(self) -> dict[str, float]:
        return self.pfsp.probabilities()

    def state_dict(self) -> dict[str, Any]:
        return {"pfsp": self.pfsp.state_dict(), "rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pfsp.load_state_dict(state["pfsp"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        # members added after the checkpoint (a kill between snapshot and save) stay opponents
        pool = set(self.pfsp.probabilities())
        for member in self.members.values():
            if member.kind != "scripted" and member.name not in pool:
                self.pfsp.add(member.name)


class Snapshotter:
    """Every `every` env steps: export the learner, add it to the league, rate it."""

    def __init__(
        self, sampler: LeagueSampler, run_name: str, preset: str, every: int, games: int, start_step: int
    ) -> None:
        self.sampler = sampler
        self.run_name = run_name
        self.preset = preset
        self.every = every
        self.games = games
        self.next = (start_step // every + 1) * every if every > 0 else None
        self.latest: Path | None = None
        self.latest_step = -1

    def __call__(self, trainer: Trainer) -> None:
        if self.next is not None and trainer.env_steps >= self.next:
            self.snapshot(trainer)
            while self.next <= trainer.env_steps:
                self.next += self.every

    def snapshot(self, trainer: Trainer) -> Path:
        """Freeze the learner as an ONNX member named <run>-<step> and rate it."""
        from export.onnx_export import export_agent
        from league.db import LeagueDB
        from league.members import file_member
        from league.runner import evaluate

        name = f"{self.run_name}-{trainer.env_steps}"
        path = self.sampler.league_dir / "snapshots" / f"{name}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        export_agent(trainer.agent, path, preset=self.preset or "custom", train_step=trainer.env_steps)
        with LeagueDB(self.sampler.league_dir) as db:
            if name not in {m.name for m in db.members()}:
                member = file_member(name, path, kind="snapshot", parent_run=self.run_name, step=trainer.env_steps)
                db.add_members([member])
                self.sampler.add(member)
        evaluate(self.sampler.league_dir, games_per_pair=self.games, workers=0, progress=False)
        row = _league_row(self.sampler, name)
        trainer.metrics.log_row("league", trainer.env_steps, trainer.updates, trainer.elapsed(), row)
        if "league/bt" in row:
            trainer.status_fields["league"] = f"league rating {row['league/bt']:.0f}"
        _copy_atomically(path, trainer.run_dir / "agent.onnx")  # the newest agent, ready for the client
        self.latest, self.latest_step = path, trainer.env_steps
        return path


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy to a tmp file beside `target`, then move it into place: a reader never sees half a file."""
    import os
    import shutil

    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _league_row(sampler: LeagueSampler, newest: str) -> dict[str, float]:
    """The newest snapshot's ratings and the PFSP probabilities, for the metrics log."""
    from league.db import LeagueDB

    with LeagueDB(sampler.league_dir) as db:
        history = db.rating_history()
    row: dict[str, float] = {}
    for r in history:
        if r.member == newest:
            row[f"league/{r.kind}"] = float(r.value)
    for name, p in sampler.probabilities().items():
        row[f"pfsp/{name}"] = float(p)
    return row


def run_selfplay(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    *,
    preset: str = "",
    progress: bool = True,
    init: str | Path | None = None,
) -> dict[str, Any]:
    """Train with self-play until cfg.train.steps; returns the trainer's result plus paths.

    Every snapshot is also written to <run dir>/agent.onnx, ready for `hockey-agent
    client`, so the newest agent is always there while the run goes on; at the end
    (unless interrupted) the learner is snapshotted once more. `init` starts a new run
    from another agent's weights (Trainer).
    """
    from agent.training.trainer import Trainer

    run_dir = Path(run_dir)
    league_dir = league_dir_for(cfg, run_dir)
    sampler = LeagueSampler(cfg, league_dir)
    trainer = Trainer(
        cfg, run_dir, opponent_sampler=sampler, resume=resume, preset=preset, progress=progress, init=init
    )
    sampler.bind(trainer)
    snapshots = Snapshotter(
        sampler, run_dir.name, trainer.preset, cfg.train.snapshot_every, cfg.train.snapshot_games, trainer.env_steps
    )
    trainer.on_env_step.append(snapshots)
    try:
        result = trainer.train()
        if not result["interrupted"] and snapshots.latest_step != trainer.env_steps:
            snapshots.snapshot(trainer)
        if (run_dir / "agent.onnx").is_file():
            result["agent"] = str(run_dir / "agent.onnx")
    finally:
        trainer.close()
    result["league"] = str(league_dir)
    result["run_dir"] = str(run_dir)
    return result
