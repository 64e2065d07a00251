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

After every rating the league's worst cases are recomputed (league/report.py: each
member's lowest score rate against a member it played `worst_min_games` games against):
the newest snapshot's goes into its league row of metrics.jsonl (`league/worst_win`,
`league/worst_games`, `league/worst_left_out`, and `league/worst_opponent/<name>` holding
the same rate, since metrics rows hold numbers only) and onto the progress line, and the
main agents' snapshot with the highest worst case, the champion candidate, is copied to
<run dir>/champion.onnx with champion.json saying which member it is and why.

`run_learner` trains one main agent this way; with league roles (several lineages,
exploiters: selfplay/roles.py) the league of learners trains in turns instead
(selfplay/league_loop.py; selfplay/run.py chooses), and the sampler, hub and snapshotter
below serve every role.

Resume: the sampler's PFSP state is saved in the trainer's checkpoint; snapshots
already in the database when a run resumes are kept, and the next snapshot is the
next multiple of `snapshot_every`.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.config import SEED_LEAGUE, Config, scripted_seed
from agent.players.policy import Policy
from league.members import LeagueError
from selfplay.pfsp import PFSPSampler
from selfplay.roles import LEAGUE_STATE, MAIN, MAIN_EXPLOITER, ROLES

if TYPE_CHECKING:
    from agent.training.trainer import Trainer
    from league.members import Member
    from league.report import LeaderRow

SELF = "self"  # the PFSP name of the learner's latest self
OUTCOME_SCORE = {1: 1.0, 0: 0.5, -1: 0.0}  # trainer outcome -> PFSP outcome
CHAMPION_ONNX = "champion.onnx"  # in the run directory: the champion candidate's snapshot
CHAMPION_CARD = "champion.json"  # which member that is, and its worst case


def league_dir_for(cfg: Config, run_dir: Path) -> Path:
    """The run's league: train.league_dir, or <run dir>/league."""
    return Path(cfg.train.league_dir) if cfg.train.league_dir else run_dir / "league"


class LeagueSampler:
    """The trainer's opponent sampler for self-play (see the module docstring), for one role.

    `role` 'main' (the default, self-play without roles): PFSP over every member plus
    `latest_share` against the latest self. 'league-exploiter': the same without the
    latest self. 'main-exploiter': only the latest snapshot of the main agent whose
    snapshots have parent_run `target`; it follows each new one. Besides PFSP's results
    the sampler keeps every opponent's last `exploiter_games` outcomes, which tell when
    an exploiter has beaten its opponents (`beaten`).

    Each game slot keeps its own instance of every opponent it has met, because
    learned opponents carry a recurrent state per game.
    """

    def __init__(self, cfg: Config, league_dir: Path, role: str = MAIN, target: str | None = None) -> None:
        from league.db import LeagueDB
        from league.members import scripted_members

        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; choices: {', '.join(ROLES)}")
        if (role == MAIN_EXPLOITER) != (target is not None):
            raise ValueError("a main exploiter, and only one, names the parent run of the main agent it plays")
        t = cfg.train
        self.role, self.target = role, target
        self.league_dir = league_dir
        self.seed = t.seed
        self.action_repeat = t.action_repeat  # the learner's latest self plays as it learns
        self.games = t.exploiter_games
        self.scripted = () if role == MAIN_EXPLOITER else t.scripted_opponents  # PFSP's scripted group
        self.rng = np.random.default_rng(t.seed + SEED_LEAGUE)
        self.pfsp = PFSPSampler(
            scripted=self.scripted,
            weighting=t.pfsp,
            self_share=t.latest_share if role == MAIN else 0.0,
            scripted_share=0.0 if role == MAIN_EXPLOITER else t.scripted_share,
            latest=SELF,
        )
        self.outcomes: dict[str, deque[int]] = {}  # opponent -> the learner's last outcomes (+1, 0, -1)
        with LeagueDB(league_dir, create=True) as db:
            db.start_with(scripted_members())
            self.members = {m.name: m for m in db.members()}
        self.trainer: Trainer | None = None
        self._players: dict[tuple[int, str], Policy] = {}
        self._sync()

    def bind(self, trainer: Trainer) -> None:
        """Give the sampler the learner, whose latest self is an opponent too."""
        self.trainer = trainer

    def add(self, member: Member) -> None:
        """A new league member (a snapshot of any learner, an external agent): an opponent if the role plays it."""
        self.members[member.name] = member
        self._sync()

    def target_member(self) -> str | None:
        """A main exploiter's opponent: the latest snapshot of its main agent (None before the first)."""
        mine = [m for m in self.members.values() if m.kind == "snapshot" and m.parent_run == self.target]
        if not mine:
            return None
        return max(mine, key=lambda m: (m.step if m.step is not None else -1, m.created, m.name)).name

    def _sync(self) -> None:
        """Make the PFSP pool what the role plays, given the members known."""
        pool = set(self.pfsp.names())
        if self.role == MAIN_EXPLOITER:
            want = {self.target_member()} - {None}
            for name in pool - want:
                self.pfsp.remove(name)
            self._players = {key: p for key, p in self._players.items() if key[1] in want}
        else:
            # a restored pool keeps the scripted group the config names now (a resumed run may change it)
            scripted = {n for n in pool if n in self.members and self.members[n].kind == "scripted"}
            for name in sorted(scripted - set(self.scripted)):
                self.pfsp.remove(name)
            for name in self.scripted:
                if name not in pool:
                    self.pfsp.add(name, scripted=True)
            want = {name for name, m in self.members.items() if m.kind != "scripted"} - pool
        for name in sorted(want - pool, key=lambda n: (self.members[n].created, n)):
            self.pfsp.add(name)

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
        if self.role != MAIN and not self.pfsp.names():
            raise LeagueError(f"a {self.role} has no opponent yet: {self.target} has no snapshot in the league")
        name = self.pfsp.sample(self.rng)
        key = (env_index, name)
        if key not in self._players:
            self._players[key] = self._make(env_index, name)
        return name, self._players[key]

    def report(self, name: str, outcome: int) -> None:
        """The learner's outcome of a round against `name`: +1 win, 0 draw, -1 loss.

        A round that began against an opponent the pool has dropped since (a main
        exploiter's previous target) still counts in the outcomes, not in PFSP.
        """
        if name != SELF:
            self.outcomes.setdefault(name, deque(maxlen=self.games)).append(int(outcome))
        if name == SELF or name in self.pfsp.names():
            self.pfsp.update(name, OUTCOME_SCORE[int(outcome)])

    def beaten(self, rate: float) -> bool:
        """Whether the learner won at least `rate` of its last `exploiter_games` rounds against
        every opponent in its pool (each needs that many rounds); False with an empty pool."""
        names = self.pfsp.names()

        def beats(name: str) -> bool:
            recent = self.outcomes.get(name, ())
            return len(recent) >= self.games and sum(o == 1 for o in recent) >= rate * len(recent)

        return bool(names) and all(beats(name) for name in names)

    def forget(self, results: bool) -> None:
        """Start the exploiter's evidence afresh after a snapshot; `results` also PFSP's (after a reset)."""
        self.outcomes.clear()
        if results:
            self.pfsp.forget()

    def probabilities(self) -> dict[str, float]:
        return self.pfsp.probabilities()

    def state_dict(self) -> dict[str, Any]:
        return {
            "pfsp": self.pfsp.state_dict(),
            "rng": json.dumps(self.rng.bit_generator.state),
            "outcomes": {name: list(recent) for name, recent in self.outcomes.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pfsp.load_state_dict(state["pfsp"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.outcomes = {
            name: deque((int(o) for o in recent), maxlen=self.games)
            for name, recent in state.get("outcomes", {}).items()  # absent in checkpoints made before roles
        }
        # members added after the checkpoint (a kill between snapshot and save) stay opponents;
        # a main exploiter follows its main agent's latest snapshot
        self._sync()


class LeagueHub:
    """The league a run's learners share: it freezes, adds and rates their snapshots, tells
    every sampler about each new member, and keeps the progress lines, the worst cases and
    the champion candidate up to date.

    `mains` are the parent runs of this run's main agents (the champion's candidates).
    """

    def __init__(self, league_dir: Path, run_dir: Path, games: int, min_games: int, mains: Sequence[str]) -> None:
        self.league_dir = league_dir
        self.run_dir = run_dir
        self.games = games
        self.min_games = min_games
        self.mains = tuple(mains)
        self.samplers: list[LeagueSampler] = []
        self.learners: list[tuple[Trainer, str]] = []  # (trainer, parent run of its snapshots)
        self.champion: LeaderRow | None = None

    def register(self, trainer: Trainer, sampler: LeagueSampler, parent_run: str) -> None:
        self.samplers.append(sampler)
        self.learners.append((trainer, parent_run))

    def snapshot(self, trainer: Trainer, sampler: LeagueSampler, name: str, parent_run: str) -> Path:
        """Freeze the learner as the ONNX member `name`, rate it, log its league row; returns its file.

        A name already in the league (a rerun after a kill) keeps its file and its games.
        """
        from export.onnx_export import export_agent
        from league.db import LeagueDB
        from league.members import file_member
        from league.runner import evaluate

        path = self.league_dir / "snapshots" / f"{name}.onnx"
        with LeagueDB(self.league_dir) as db:
            known = {m.name: m for m in db.members()}
        if name in known and known[name].path:
            path = Path(known[name].path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            export_agent(trainer.agent, path, preset=trainer.preset or "custom", train_step=trainer.env_steps)
            member = file_member(name, path, kind="snapshot", parent_run=parent_run, step=trainer.env_steps)
            with LeagueDB(self.league_dir) as db:
                db.add_members([member])
            for other in self.samplers:
                other.add(member)
            if sampler not in self.samplers:
                sampler.add(member)
        evaluate(self.league_dir, games_per_pair=self.games, workers=0, progress=False)
        rows = self.refresh()
        row = _league_row(self.league_dir, sampler, name)
        worst = rows[name].worst
        if worst is not None and worst.opponent is not None:
            row["league/worst_win"] = worst.win
            row["league/worst_games"] = float(worst.games)
            row[f"league/worst_opponent/{worst.opponent}"] = worst.win
        if worst is not None:
            row["league/worst_left_out"] = float(worst.left_out)
        trainer.metrics.log_row("league", trainer.env_steps, trainer.updates, trainer.elapsed(), row)
        return path

    def refresh(self) -> dict[str, LeaderRow]:
        """Recompute ratings and worst cases; update every learner's progress line and the champion."""
        from league.report import choose_champion, leaderboard

        rows = {r.name: r for r in leaderboard(self.league_dir, n_boot=0, min_games=self.min_games)}
        for trainer, parent_run in self.learners:
            mine = [r for r in rows.values() if r.kind == "snapshot" and r.parent_run == parent_run]
            if not mine:
                continue
            latest = max(mine, key=lambda r: r.step if r.step is not None else -1)
            trainer.status_fields["league"] = f"league rating {latest.bt:.0f}"
            if latest.worst is not None and latest.worst.opponent is not None:
                w = latest.worst
                trainer.status_fields["worst"] = f"worst {w.win:.0%} vs {w.opponent} over {w.games}"
        champion = choose_champion(list(rows.values()), runs=self.mains)
        if champion is not None:
            self._write_champion(champion)
        self.champion = champion
        return rows

    def _write_champion(self, champion: LeaderRow) -> None:
        """<run dir>/champion.onnx (copied atomically when the champion changes) and champion.json."""
        from league.db import LeagueDB

        target = self.run_dir / CHAMPION_ONNX
        card = self.run_dir / CHAMPION_CARD
        previous = json.loads(card.read_text()).get("member") if card.is_file() else None
        with LeagueDB(self.league_dir) as db:
            source = Path(db.member(champion.name).path or "")
        if previous != champion.name or not target.is_file():
            _copy_atomically(source, target)
        worst = champion.worst
        assert worst is not None  # choose_champion only picks snapshots with a worst case
        text = json.dumps(
            {
                "member": champion.name,
                "role": champion.role,
                "parent_run": champion.parent_run,
                "step": champion.step,
                "file": str(source),
                "league": str(self.league_dir),
                "worst_win": worst.win,
                "worst_opponent": worst.opponent,
                "worst_games": worst.games,
                "worst_left_out": worst.left_out,
                "min_games": worst.min_games,
                "bt": champion.bt,
                "chosen_by": "the highest worst-case win rate among the main agents' snapshots, then the rating",
            },
            indent=2,
        )
        tmp = card.with_name(card.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(card)


class Snapshotter:
    """Every `every` env steps: snapshot the learner into the league as `<name>-<env step>`.

    Each snapshot is also the learner's <run dir>/agent.onnx, ready for the client. A
    periodic snapshot with no update since the previous one (a prefill longer than
    `every`, the start of an --init run) is skipped: the league would hold the same
    weights twice, and PFSP would count them as two opponents.
    """

    def __init__(
        self, hub: LeagueHub, sampler: LeagueSampler, name: str, parent_run: str, every: int, start_step: int
    ) -> None:
        self.hub = hub
        self.sampler = sampler
        self.name = name
        self.parent_run = parent_run
        self.every = every
        self.next = (start_step // every + 1) * every if every > 0 else None
        self.latest: Path | None = None
        self.latest_step = -1
        self.latest_updates: int | None = None  # updates of the newest snapshot (None: none this process)

    def __call__(self, trainer: Trainer) -> None:
        if self.next is not None and trainer.env_steps >= self.next:
            if trainer.updates != self.latest_updates:
                self.snapshot(trainer)
            while self.next <= trainer.env_steps:
                self.next += self.every

    def snapshot(self, trainer: Trainer) -> Path:
        """Freeze the learner as an ONNX member named <name>-<step> and rate it."""
        path = self.hub.snapshot(trainer, self.sampler, f"{self.name}-{trainer.env_steps}", self.parent_run)
        _copy_atomically(path, trainer.run_dir / "agent.onnx")  # the newest agent, ready for the client
        self.latest, self.latest_step, self.latest_updates = path, trainer.env_steps, trainer.updates
        return path


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy to a tmp file beside `target`, then move it into place: a reader never sees half a file."""
    import os
    import shutil

    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _league_row(league_dir: Path, sampler: LeagueSampler, newest: str) -> dict[str, float]:
    """The newest snapshot's ratings and the PFSP probabilities, for the metrics log."""
    from league.db import LeagueDB

    with LeagueDB(league_dir) as db:
        history = db.rating_history()
    row: dict[str, float] = {}
    for r in history:
        if r.member == newest:
            row[f"league/{r.kind}"] = float(r.value)
    for name, p in sampler.probabilities().items():
        row[f"pfsp/{name}"] = float(p)
    return row


def run_learner(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    *,
    preset: str = "",
    progress: bool = True,
    init: str | Path | None = None,
) -> dict[str, Any]:
    """Train one main agent with self-play until cfg.train.steps; returns the trainer's result plus paths.

    Every snapshot is also written to <run dir>/agent.onnx, ready for `hockey-agent
    client`, so the newest agent is always there while the run goes on; at the end
    (unless interrupted) the learner is snapshotted once more. `init` starts a new run
    from another agent's weights (Trainer). A run directory holding a league of roles is
    refused.
    """
    from agent.training.trainer import Trainer

    run_dir = Path(run_dir)
    if (run_dir / LEAGUE_STATE).is_file():
        raise ValueError(
            f"{run_dir} holds a league of roles; continue it with its roles (train.lineages, "
            "train.main_exploiters, train.league_exploiters) or choose another --run-dir"
        )
    league_dir = league_dir_for(cfg, run_dir)
    sampler = LeagueSampler(cfg, league_dir)
    trainer = Trainer(
        cfg, run_dir, opponent_sampler=sampler, resume=resume, preset=preset, progress=progress, init=init
    )
    sampler.bind(trainer)
    t = cfg.train
    hub = LeagueHub(league_dir, run_dir, t.snapshot_games, t.worst_min_games, mains=[run_dir.name])
    hub.register(trainer, sampler, run_dir.name)
    snapshots = Snapshotter(hub, sampler, run_dir.name, run_dir.name, t.snapshot_every, trainer.env_steps)
    trainer.on_env_step.append(snapshots)
    try:
        result = trainer.train()
        if not result["interrupted"] and snapshots.latest_step != trainer.env_steps:
            snapshots.snapshot(trainer)
        if (run_dir / "agent.onnx").is_file():
            result["agent"] = str(run_dir / "agent.onnx")
        if hub.champion is not None:
            result["champion"] = str(run_dir / CHAMPION_ONNX)
    finally:
        trainer.close()
    result["league"] = str(league_dir)
    result["run_dir"] = str(run_dir)
    return result
