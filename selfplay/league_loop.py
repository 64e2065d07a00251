"""A league of learners in one process, taking turns (the roles and turns: selfplay/roles.py).

Run directory:
    <run>/league.json         the league's own state (LEAGUE_STATE): config, preset, whose
                              turn it is and where it ends, turns taken, exploiter counters
    <run>/config.json         the league's config
    <run>/main-0/, ...        one Trainer run directory per learner (checkpoint, replay,
                              metrics.jsonl with its league rows, agent.onnx for mains)
    <run>/league/             the league every learner shares (train.league_dir to move it)
    <run>/champion.onnx       the champion candidate (selfplay/loop.py), champion.json says which

Every learner stays in memory between its turns, so a turn starts without loading
anything: its model and optimisers (a few MB for the tiny preset, tens of MB for small)
and its replay (about 100 bytes a row: 10 MB for tiny's 100,000 rows, 100 MB for small's
million, far more with train.replay_context's stored latents; the pages are taken as the
replay fills). A league of four small learners fits in well under a GB; lower
train.replay_capacity for more.
The learners share the process's global random generators (each Trainer saves and
restores them with its checkpoint), so a resumed league continues correctly but not bit
for bit as an uninterrupted one would.

A turn plays the learner's Trainer until its env steps reach the turn's end (or its own
share of `train.steps`); the trainer saves its checkpoint at the end of every turn. A
main agent is snapshotted every `snapshot_every` of its own env steps during its turns
(and once at its start, so that its main exploiters have a target); an exploiter is
checked at the end of each of its turns: snapshotted when it has beaten its opponents
(LeagueSampler.beaten) or gone `exploiter_steps` env steps without a snapshot, then
reset as its role says. Ctrl-C (SIGINT) or SIGTERM ends the league after the current
turn's step (its checkpoint saved) or between turns; the same command continues it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import Config, config_to_dict, save_config
from agent.training.signals import install_stop_signals, restore_signals
from selfplay.loop import CHAMPION_ONNX, LeagueHub, LeagueSampler, Snapshotter, league_dir_for
from selfplay.roles import (
    LEAGUE_EXPLOITER,
    LEAGUE_STATE,
    MAIN,
    MAIN_EXPLOITER,
    ExploiterCounters,
    LearnerSpec,
    Turns,
    learner_config,
    plan_learners,
    read_state,
    reset_drawn,
    write_state,
)

if TYPE_CHECKING:
    from agent.training.trainer import Trainer


def adopt(learner: Trainer, source: Trainer) -> None:
    """Give `learner` the current weights and optimiser state of `source` (an exploiter's reset).

    The learner keeps its own random stream, replay and counters.
    """
    from agent.training import checkpoint as ckpt

    if learner.agent.graph_captured:
        learner.agent.release_graph()
    ckpt.load_model_state(learner.agent, source.agent.state_dict(), f"the weights of {source.run_dir}")
    state = source.agent.optimizer_state()
    state.update(rng=learner.agent.generator().get_state(), rng_device=learner.agent.device.type)
    ckpt.load_optimizer_state(learner.agent, state, f"the optimiser state of {source.run_dir}")


@dataclasses.dataclass
class Learner:
    """One learner of the league: its spec, Trainer, sampler and where its turn ends."""

    spec: LearnerSpec
    trainer: Trainer
    sampler: LeagueSampler
    member_prefix: str  # its snapshots are named <member_prefix>-<env step>
    parent_run: str  # and carry this parent_run: <run name>/<learner name>
    snapshots: Snapshotter | None = None  # main agents only
    turn_end: int | None = None
    turn_over: bool = False

    def __call__(self, trainer: Trainer) -> None:
        """After every batched env step: stop the trainer at the end of the turn."""
        if self.turn_end is not None and trainer.env_steps >= self.turn_end:
            self.turn_over = True
            trainer.stop()

    def done(self) -> bool:
        t = self.trainer
        return t.env_steps >= t.cfg.train.steps or t.budget_spent()


class League:
    """The learners of one league run, their turns and the league's own state (module docstring)."""

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        *,
        preset: str = "",
        progress: bool = True,
        init: str | Path | None = None,
    ) -> None:
        from agent.training import checkpoint as ckpt
        from agent.training.trainer import Trainer

        self.cfg = cfg
        self.run_dir = run_dir
        self.league_dir = league_dir_for(cfg, run_dir)
        self.progress = progress
        state = read_state(run_dir) if (run_dir / LEAGUE_STATE).is_file() else {}
        if state and init is not None:
            raise ValueError(f"{run_dir} holds a league already: --init starts a new one")
        self.preset = preset or state.get("preset", "")
        specs = plan_learners(cfg)
        t = cfg.train
        mains = [s for s in specs if s.role == MAIN]
        self.hub = LeagueHub(
            self.league_dir, run_dir, t.snapshot_games, t.worst_min_games, [self._parent_run(s) for s in mains]
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.json")
        self.learners: dict[str, Learner] = {}
        try:
            for spec in specs:
                own = learner_config(cfg, spec)
                directory = run_dir / spec.name
                resumed = (directory / ckpt.CHECKPOINT_FILE).is_file()
                target = self._parent_run(spec, follows=True) if spec.role == MAIN_EXPLOITER else None
                sampler = LeagueSampler(own, self.league_dir, role=spec.role, target=target)
                trainer = Trainer(
                    own,
                    directory,
                    opponent_sampler=sampler,
                    resume=resumed,
                    preset=self.preset,
                    progress=progress,
                    init=init if spec.role == MAIN and not resumed else None,
                )
                learner = Learner(spec, trainer, sampler, f"{run_dir.name}-{spec.name}", self._parent_run(spec))
                self.learners[spec.name] = learner  # closed on error from here on
                if spec.role != MAIN and not resumed:  # a new exploiter starts from its main agent's weights
                    adopt(trainer, self.learners[spec.follows].trainer)
                sampler.bind(trainer)
                trainer.status_fields["learner"] = spec.name
                self.hub.register(trainer, sampler, learner.parent_run)
                if spec.role == MAIN:
                    learner.snapshots = Snapshotter(
                        self.hub, sampler, learner.member_prefix, learner.parent_run, t.snapshot_every,
                        trainer.env_steps,
                    )  # fmt: skip
                    trainer.on_env_step.append(learner.snapshots)
                trainer.on_env_step.append(learner)
        except BaseException:
            self.close()
            raise
        self.turns = Turns({name: learner.spec.share for name, learner in self.learners.items()}, t.turn_steps)
        self.turns.load_state_dict(state.get("turns", {}))
        saved = state.get("exploiters", {})
        self.counters = {
            name: ExploiterCounters(**saved[name]) if name in saved else ExploiterCounters(learner.trainer.env_steps)
            for name, learner in self.learners.items()
            if learner.spec.role != MAIN
        }
        self._stop = False

    def _parent_run(self, spec: LearnerSpec, follows: bool = False) -> str:
        """The parent_run of a learner's snapshots (or, with `follows`, of the main agent it follows)."""
        return f"{self.run_dir.name}/{spec.follows if follows else spec.name}"

    def save_state(self) -> None:
        write_state(
            self.run_dir,
            {
                "preset": self.preset,
                "config": config_to_dict(self.cfg),
                "turns": self.turns.state_dict(),
                "exploiters": {name: dataclasses.asdict(c) for name, c in self.counters.items()},
            },
        )

    def say(self, text: str) -> None:
        if self.progress:
            from rich.console import Console

            Console().print(text)

    # ----- the league's life ------------------------------------------------------------
    def start(self) -> None:
        """Snapshot every main agent the league has no snapshot of yet (its main exploiters' first target)."""
        from league.db import LeagueDB

        with LeagueDB(self.league_dir, create=True) as db:
            frozen = {m.parent_run for m in db.members() if m.kind == "snapshot"}
        for learner in self.learners.values():
            if learner.spec.role == MAIN and learner.parent_run not in frozen:
                assert learner.snapshots is not None
                learner.snapshots.snapshot(learner.trainer)

    def play_turn(self) -> bool:
        """Play the next turn (or finish the one a killed run left); False when every learner is done."""
        done = {name for name, learner in self.learners.items() if learner.done()}
        turn = self.turns.begin({name: lr.trainer.env_steps for name, lr in self.learners.items()}, done)
        if turn is None:
            return False
        name, end = turn
        self.save_state()  # the turn is on disk before it plays: a rerun continues it
        learner = self.learners[name]
        trainer = learner.trainer
        if trainer.env_steps < end:
            self.say(f"turn {sum(self.turns.taken.values()) + 1}: {name} from env step {trainer.env_steps} to {end}")
            learner.turn_end, learner.turn_over = end, False
            try:
                result = trainer.train()
            finally:
                learner.turn_end = None
            if result["interrupted"] and not learner.turn_over:  # Ctrl-C or SIGTERM in the turn
                self._stop = True
                return True
        if learner.spec.role != MAIN:
            self.check_exploiter(learner)
        self.turns.finish()
        self.save_state()
        return True

    def check_exploiter(self, learner: Learner) -> None:
        """At the end of an exploiter's turn: snapshot it when it has beaten its opponents or
        gone `exploiter_steps` env steps without a snapshot, then reset it as its role says."""
        t = self.cfg.train
        trainer, spec = learner.trainer, learner.spec
        counters = self.counters[spec.name]
        beaten = learner.sampler.beaten(t.exploiter_win)
        timeout = t.exploiter_steps > 0 and trainer.env_steps - counters.since >= t.exploiter_steps
        if not (beaten or timeout):
            return
        name = f"{learner.member_prefix}-{trainer.env_steps}"
        self.hub.snapshot(trainer, learner.sampler, name, learner.parent_run)
        reset = spec.role == MAIN_EXPLOITER or (
            spec.role == LEAGUE_EXPLOITER
            and reset_drawn(t.seed, spec.order, counters.snapshots, t.league_exploiter_reset)
        )
        if reset:
            adopt(trainer, self.learners[spec.follows].trainer)
        learner.sampler.forget(results=reset)
        trainer.save()  # the reset weights and the fresh evidence are the learner's checkpoint
        why = "beat its opponents" if beaten else f"{t.exploiter_steps} env steps without a snapshot"
        self.say(f"{spec.name} snapshotted as {name} ({why})" + (f", reset to {spec.follows}" if reset else ""))
        counters.since = trainer.env_steps
        counters.snapshots += 1
        counters.resets += int(reset)

    def finish(self) -> None:
        """Snapshot every main agent once more at its last env step (unless just done)."""
        for learner in self.learners.values():
            snaps = learner.snapshots
            if snaps is not None and snaps.latest_step != learner.trainer.env_steps:
                snaps.snapshot(learner.trainer)

    def run(self) -> dict[str, Any]:
        """Play turns until every learner has its share of env steps or a stop; returns the totals."""
        previous = install_stop_signals(lambda: self._stop, self._request_stop)
        try:
            self.save_state()
            self.start()
            while not self._stop and self.play_turn():
                pass
            if not self._stop:
                self.finish()
                self.save_state()
        finally:
            restore_signals(previous)
        trainers = [learner.trainer for learner in self.learners.values()]
        result: dict[str, Any] = {
            "env_steps": sum(t.env_steps for t in trainers),
            "decisions": sum(t.decisions for t in trainers),
            "updates": sum(t.updates for t in trainers),
            "episodes": sum(t.episodes for t in trainers),
            "time": max(t.elapsed() for t in trainers),  # each learner's clock runs through every turn
            "interrupted": self._stop,
            "learners": {name: learner.trainer.env_steps for name, learner in self.learners.items()},
            "league": str(self.league_dir),
            "run_dir": str(self.run_dir),
        }
        if self.hub.champion is not None:
            result["agent"] = result["champion"] = str(self.run_dir / CHAMPION_ONNX)
            result["champion_member"] = self.hub.champion.name
        return result

    def _request_stop(self) -> None:
        """Between turns SIGINT/SIGTERM ask the league to stop (a second SIGINT stops at once);
        during a turn the Trainer's own handlers do, and the league stops after the turn."""
        self._stop = True

    def close(self) -> None:
        for learner in self.learners.values():
            learner.trainer.close()


def run_league(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    *,
    preset: str = "",
    progress: bool = True,
    init: str | Path | None = None,
) -> dict[str, Any]:
    """Train the league of `cfg`'s roles in `run_dir`; returns the totals, the league and the champion.

    A run directory holding a league is continued (the learners from their checkpoints,
    the turns from LEAGUE_STATE); `resume` only says the caller expects that. One holding
    the run of a single main agent is refused.
    """
    from agent.training import checkpoint as ckpt

    run_dir = Path(run_dir)
    if (run_dir / ckpt.CHECKPOINT_FILE).is_file():
        raise ValueError(f"{run_dir} holds the run of one main agent; a league of roles needs a --run-dir of its own")
    if resume and not (run_dir / LEAGUE_STATE).is_file():
        raise ValueError(f"{run_dir} holds no league to continue ({LEAGUE_STATE} missing)")
    league = League(cfg, run_dir, preset=preset, progress=progress, init=init)
    try:
        return league.run()
    finally:
        league.close()
