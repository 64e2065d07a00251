"""`hockey-agent eval AGENT --opponent NAME --games N`: win/draw/loss with 95% Wilson intervals.

Games are tournament games (agent.match.play_game, 4 rounds each); the agent plays
player 1 in even-numbered games and player 2 in odd ones, as the server assigns sides
(player 1 always in the training modes, whose start positions favour player 1).
Both the game results and the round results are tabulated.
"""

from __future__ import annotations

import math
from typing import Any

import click

MODE_CHOICES = ("normal", "shooting", "defense")


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (stays inside [0, 1], sane at 0 and n)."""
    if n <= 0:
        raise ValueError("a Wilson interval needs n >= 1")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _load_agent(spec: str, stochastic: bool) -> Any:
    from pathlib import Path

    from agent.players import load_player

    path = Path(spec)
    if stochastic:
        if path.suffix.lower() == ".onnx" or not path.exists():
            raise click.BadParameter("--stochastic needs a run directory or checkpoint (ONNX graphs and "
                                     "scripted players act deterministically)", param_hint="AGENT")
        from agent.checkpoint import load_agent
        from agent.dreamer.agent import ActingPolicy

        try:
            agent, _, _ = load_agent(path)
        except (ValueError, FileNotFoundError) as exc:
            raise click.BadParameter(str(exc), param_hint="AGENT") from exc
        return ActingPolicy(agent, deterministic=False)
    try:
        return load_player(spec, seed=0)
    except (ValueError, FileNotFoundError) as exc:
        raise click.BadParameter(str(exc), param_hint="AGENT") from exc


@click.command()
@click.argument("agent")
@click.option("--opponent", required=True, help="A scripted player: weak, strong, still, random, shooter, keeper.")
@click.option("--games", type=click.IntRange(min=1), default=100, show_default=True, help="Tournament games (4 rounds).")
@click.option("--mode", default="normal", show_default=True, help="normal | shooting | defense.")
@click.option("--stochastic", is_flag=True, help="Sample actions instead of the deterministic mean.")
@click.option("--seed", type=int, default=0, show_default=True, help="Game i uses seed + i.")
def evaluate(agent: str, opponent: str, games: int, mode: str, stochastic: bool, seed: int) -> None:
    """Evaluate AGENT (run dir, checkpoint, .onnx or scripted name) against a scripted opponent."""
    from rich.console import Console
    from rich.table import Table

    from agent.match import play_game
    from agent.opponents import SCRIPTED, make_scripted

    if opponent not in SCRIPTED:
        raise click.BadParameter(f"unknown opponent {opponent!r}; choices: {', '.join(SCRIPTED)}",
                                 param_hint="--opponent")
    if mode not in MODE_CHOICES:
        raise click.BadParameter(f"unknown mode {mode!r}; choices: {', '.join(MODE_CHOICES)}", param_hint="--mode")
    player = _load_agent(agent, stochastic)
    other = make_scripted(opponent, seed=seed)
    game_counts = {1: 0, 0: 0, -1: 0}
    round_counts = {1: 0, 0: 0, -1: 0}
    for i in range(games):
        agent_first = i % 2 == 0 or mode != "normal"
        p1, p2 = (player, other) if agent_first else (other, player)
        result = play_game(p1, p2, seed=seed + i, mode=mode)
        sign = 1 if agent_first else -1
        game_counts[sign * result.winner] += 1
        for r in result.rounds:
            round_counts[sign * r] += 1

    console = Console()
    table = Table(title=f"{agent} vs {opponent} ({mode}, {'stochastic' if stochastic else 'deterministic'})")
    table.add_column("")
    table.add_column("n", justify="right")
    for col in ("win", "draw", "loss"):
        table.add_column(col, justify="right")
        table.add_column("95% CI", justify="right")
    for label, counts in (("games", game_counts), ("rounds", round_counts)):
        n = sum(counts.values())
        cells = []
        for outcome in (1, 0, -1):
            lo, hi = wilson(counts[outcome], n)
            cells += [f"{counts[outcome]} ({counts[outcome] / n:.0%})", f"{lo:.0%}-{hi:.0%}"]
        table.add_row(label, str(n), *cells)
    console.print(table)
