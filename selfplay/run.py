"""`hockey-agent train --selfplay`: one main agent against its league, or a league of roles.

Which of the two a config trains is read from it (agent.config.league_roles): with
lineages or exploiters configured, the learners take turns (selfplay/league_loop.py);
otherwise one main agent trains against its snapshots and the scripted players
(selfplay/loop.py). Each continues a run directory that holds its own kind of run and
refuses the other kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import Config, league_roles


def run_selfplay(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    *,
    preset: str = "",
    progress: bool = True,
    init: str | Path | None = None,
) -> dict[str, Any]:
    """Train with self-play until cfg.train.steps; returns the trainer's (or the league's) result plus paths."""
    if league_roles(cfg):
        from selfplay.league_loop import run_league

        return run_league(cfg, run_dir, resume, preset=preset, progress=progress, init=init)
    from selfplay.loop import run_learner

    return run_learner(cfg, run_dir, resume, preset=preset, progress=progress, init=init)
