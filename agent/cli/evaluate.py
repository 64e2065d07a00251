"""`hockey-agent eval AGENT --opponent NAME --games N`: win/draw/loss with 95% Wilson intervals.

Games are tournament games of 4 rounds, all played at once (`agent.players.match.play_games`,
so a learned agent acts for every game in one batched step); the agent plays player 1
in even-numbered games and player 2 in odd ones, as the server assigns sides (player 1
always in the training modes, whose start positions favour player 1). Both the game
results and the round results are tabulated; in normal games the rounds are also split
by the agent's side and by who started (the puck lies in the starting player's half).
"""

from __future__ import annotations

from typing import Any

import click

from agent.game.rules import MODE_NAMES
from agent.players.match import wilson


def _cells(outcomes: list[int]) -> list[str]:
    n = len(outcomes)
    cells = []
    for outcome in (1, 0, -1):
        count = outcomes.count(outcome)
        lo, hi = wilson(count, n)
        cells += [f"{count} ({count / n:.0%})", f"{lo:.0%}-{hi:.0%}"]
    return cells


def _load_agent(spec: str, games: int, seed: int, stochastic: bool) -> Any:
    from pathlib import Path

    from league.members import load_batch_player

    if stochastic and (Path(spec).suffix.lower() == ".onnx" or not Path(spec).exists()):
        raise click.BadParameter(
            "--stochastic needs a run directory or checkpoint (ONNX graphs and scripted players act deterministically)",
            param_hint="AGENT",
        )
    try:
        return load_batch_player(spec, games, seed=seed, stochastic=stochastic)
    except (ValueError, FileNotFoundError) as exc:
        raise click.BadParameter(str(exc), param_hint="AGENT") from exc


@click.command()
@click.argument("agent")
@click.option("--opponent", required=True, help="A scripted player: weak, strong, still, random, shooter, keeper.")
@click.option(
    "--games", type=click.IntRange(min=1), default=100, show_default=True, help="Tournament games (4 rounds)."
)
@click.option("--mode", default="normal", show_default=True, help="normal | shooting | defense.")
@click.option("--stochastic", is_flag=True, help="Sample actions instead of the deterministic mean.")
@click.option("--seed", type=int, default=0, show_default=True, help="Game i uses seed + i.")
def evaluate(agent: str, opponent: str, games: int, mode: str, stochastic: bool, seed: int) -> None:
    """Evaluate AGENT (run dir, checkpoint, .onnx or scripted name) against a scripted opponent."""
    from rich.console import Console
    from rich.table import Table

    from agent.players.match import play_games
    from agent.players.scripted import SCRIPTED
    from league.members import load_batch_player

    if opponent not in SCRIPTED:
        raise click.BadParameter(
            f"unknown opponent {opponent!r}; choices: {', '.join(SCRIPTED)}", param_hint="--opponent"
        )
    if mode not in MODE_NAMES:
        raise click.BadParameter(f"unknown mode {mode!r}; choices: {', '.join(MODE_NAMES)}", param_hint="--mode")
    player = _load_agent(agent, games, seed, stochastic)
    other = load_batch_player(opponent, games, seed=seed + 1)
    tally = play_games(player, other, games, a_side="alternate" if mode == "normal" else "p1", seed=seed, mode=mode)

    console = Console()
    table = Table(
        title=f"{agent} vs {opponent} ({mode}, {'stochastic' if stochastic else 'deterministic'})", show_edge=False
    )
    table.add_column("")
    table.add_column("n", justify="right")
    for col in ("win", "draw", "loss"):
        table.add_column(col, justify="right")
        table.add_column("95% CI", justify="right")
    for label, outcomes in tally.rows(by_side=mode == "normal"):
        table.add_row(label, str(len(outcomes)), *_cells(outcomes))
    if mode == "normal":
        table.caption = (
            "as p1 / as p2: the rounds it played as player 1 / player 2; starts / receives: "
            "the rounds that began with the puck in its half / the opponent's"
        )
    console.print(table)
