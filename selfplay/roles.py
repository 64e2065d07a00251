"""The roles of a self-play league, who plays whom, and whose turn it is (after AlphaStar's league).

Learners, each a Trainer in its own run subdirectory, named `<role>-<i>`:

- main agents (`main-0` ... `main-<lineages-1>`): PFSP over every league member (the
  snapshots of every role, external members and every scripted player, `strong`
  included from the start) plus `latest_share` of the rounds against their latest self.
  Each is a lineage of its own: main agent i trains on seed `learner_seed(seed, k)` (k
  its place among the learners, 0 for main-0: the run's own seed) and on reward
  `lineage_rewards[i % len]`, so lineages differ in seed and in reward mix.
- main exploiters (`main-exploiter-<j>`): play only the latest snapshot of main agent
  j % lineages, to find what beats it now. Snapshotted once they win `exploiter_win` of
  their last `exploiter_games` rounds against it (or after `exploiter_steps` env steps
  without a snapshot), then reset to that main agent's current weights and optimiser.
- league exploiters (`league-exploiter-<j>`): PFSP over the whole league, never against
  their latest self, to find what beats the league. Snapshotted once they win
  `exploiter_win` of their last `exploiter_games` rounds against every member (or after
  `exploiter_steps` env steps without a snapshot); after a snapshot they are reset with
  chance `league_exploiter_reset` to the current weights of main agent j % lineages.

A new exploiter starts from the weights of the main agent it follows, so no learner
starts from a random policy when the mains start from `--init`.

Turns: one process, one learner at a time. The league's `train.steps` is shared by the
learners: role r gets the share `<r>_share` (renormalised over the roles present), split
evenly among its learners, and each learner trains for that many env steps. A turn is
`turn_steps` env steps of one learner; the next turn goes to the learner furthest behind
its share (its env steps over its share the smallest; ties: mains first, then in order),
so over any stretch the turns follow the shares. The learner's own checkpoint is saved at
the end of every turn; the league's own state (whose turn it is and where it ends, the
turns taken, each exploiter's snapshot counters) is LEAGUE_STATE in the run directory,
written atomically at the start and end of every turn, so a rerun continues the turn that
was playing.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.atomic import atomic_write
from agent.config import SEED_LEAGUE_RESET, Config, config_from_dict, config_to_dict, learner_seed
from league.members import ROLES

MAIN, MAIN_EXPLOITER, LEAGUE_EXPLOITER = ROLES
LEAGUE_STATE = "league.json"  # the league run's own state, in its run directory
STATE_FORMAT = 1


@dataclass(frozen=True)
class LearnerSpec:
    """One learner of the league: its name (= run subdirectory), role, place and what makes it differ.

    `order` is its place among all learners (mains first), which picks its seed;
    `follows` is the main agent an exploiter plays (main exploiter) or is reset to;
    `share` its share of the league's env steps.
    """

    name: str
    role: str
    index: int
    order: int
    seed: int
    reward: str
    follows: str | None
    share: float


def plan_learners(cfg: Config) -> list[LearnerSpec]:
    """The league's learners for `cfg`: mains, then main exploiters, then league exploiters."""
    t = cfg.train
    counts = {MAIN: t.lineages, MAIN_EXPLOITER: t.main_exploiters, LEAGUE_EXPLOITER: t.league_exploiters}
    shares = {MAIN: t.main_share, MAIN_EXPLOITER: t.main_exploiter_share, LEAGUE_EXPLOITER: t.league_exploiter_share}
    total = sum(shares[r] for r in ROLES if counts[r])
    specs: list[LearnerSpec] = []
    for role in ROLES:
        for i in range(counts[role]):
            order = len(specs)
            main = role == MAIN
            specs.append(
                LearnerSpec(
                    name=f"{role}-{i}",
                    role=role,
                    index=i,
                    order=order,
                    seed=learner_seed(t.seed, order),
                    reward=t.lineage_rewards[i % len(t.lineage_rewards)] if main else t.reward,
                    follows=None if main else f"{MAIN}-{i % t.lineages}",
                    share=shares[role] / total / counts[role],
                )
            )
    return specs


def learner_config(cfg: Config, spec: LearnerSpec) -> Config:
    """The learner's own config: the league's, with its seed, reward and share of the env steps."""
    own = config_from_dict(config_to_dict(cfg))
    own.train.seed = spec.seed
    own.train.reward = spec.reward
    own.train.steps = max(1, round(cfg.train.steps * spec.share))
    return own


def reset_drawn(seed: int, order: int, snapshots: int, chance: float) -> bool:
    """Whether a league exploiter is reset after its `snapshots`-th snapshot (counted from 0).

    Drawn from the run seed, the learner and the count alone, so a rerun after a kill
    draws the same.
    """
    rng = np.random.default_rng([seed, SEED_LEAGUE_RESET, order, snapshots])
    return bool(rng.random() < chance)


class Turns:
    """Whose turn it is: the learner furthest behind its share of env steps (module docstring).

    `begin` picks the next turn (or returns the one in progress, after a resume) and
    `finish` ends it; the state is what LEAGUE_STATE keeps.
    """

    def __init__(self, shares: Mapping[str, float], turn_steps: int) -> None:
        if turn_steps < 1:
            raise ValueError(f"turn_steps must be >= 1, got {turn_steps}")
        if not shares or any(s <= 0 for s in shares.values()):
            raise ValueError(f"every learner needs a positive share, got {dict(shares)}")
        self.shares = dict(shares)
        self.turn_steps = turn_steps
        self.current: str | None = None
        self.end = 0
        self.taken = dict.fromkeys(self.shares, 0)

    def begin(self, steps: Mapping[str, int], done: Collection[str] = ()) -> tuple[str, int] | None:
        """The learner to play now and the env step its turn ends at; None when all are done."""
        if self.current is not None and self.current not in done:
            return self.current, self.end
        ready = [name for name in self.shares if name not in done]
        if not ready:
            self.current = None
            return None
        order = {name: i for i, name in enumerate(self.shares)}
        name = min(ready, key=lambda n: (steps[n] / self.shares[n], order[n]))
        self.current, self.end = name, steps[name] + self.turn_steps
        return name, self.end

    def finish(self) -> None:
        """The current turn is over."""
        if self.current is not None:
            self.taken[self.current] += 1
        self.current = None

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current, "end": self.end, "taken": dict(self.taken)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved state; a learner no longer in the league (roles changed) is dropped."""
        current = state.get("current")
        self.current = current if current in self.shares else None
        self.end = int(state.get("end", 0))
        for name, taken in state.get("taken", {}).items():
            if name in self.taken:
                self.taken[name] = int(taken)


@dataclass
class ExploiterCounters:
    """An exploiter's history in the league state: env step of its last snapshot (or its start),
    snapshots taken, resets."""

    since: int = 0
    snapshots: int = 0
    resets: int = 0


def write_state(run_dir: Path, state: Mapping[str, Any]) -> None:
    """Write LEAGUE_STATE atomically (tmp file, fsync, os.replace): a kill never leaves half a file."""
    with atomic_write(Path(run_dir) / LEAGUE_STATE) as f:
        f.write(json.dumps({"format": STATE_FORMAT, **state}, indent=2) + "\n")


def read_state(run_dir: Path) -> dict[str, Any]:
    """LEAGUE_STATE of a league run; a file that is not one is a ValueError naming it."""
    path = Path(run_dir) / LEAGUE_STATE
    try:
        state = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{path} is not a readable league state: {exc}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ValueError(f"{path} is not a league state (no config)")
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} has league state format {state.get('format')!r}; this version reads {STATE_FORMAT}")
    return state
