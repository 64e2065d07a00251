"""`hockey-agent eval AGENT --opponent NAME --games N`: win/draw/loss with 95% Wilson intervals.

Games are tournament games (agent.match.play_game, 4 rounds each); the agent plays
player 1 in even-numbered games and player 2 in odd ones, as the server assigns sides
(player 1 always in the training modes, whose start positions favour player 1).
Both the game results and the round results are tabulated; in normal games the rounds
are also split by the agent's side and by who started (the puck lies in the starting
player's half).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

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


class RoundOutcome(NamedTuple):
    """One round from the evaluated agent's side: its player number, whether it started, its result."""

    side: int
    started: bool
    outcome: int  # +1 won, 0 draw, -1 lost


def outcome_rows(games: list[int], rounds: list[RoundOutcome], by_side: bool) -> list[tuple[str, list[int]]]:
    """The table's rows: games, rounds, and in normal games the rounds split by side and by who started.

    A gap between the sides points at a mirroring bug (player 2 sees `obs_agent_two()`);
    a gap between started and not started shows how much the agent lives on its serve.
    """
    rows = [("games", games), ("rounds", [r.outcome for r in rounds])]
    if by_side:
        rows += [
            ("as p1", [r.outcome for r in rounds if r.side == 1]),
            ("as p2", [r.outcome for r in rounds if r.side == 2]),
            ("starts", [r.outcome for r in rounds if r.started]),
            ("receives", [r.outcome for r in rounds if not r.started]),
        ]
    return [(label, outcomes) for label, outcomes in rows if outcomes]


def _cells(outcomes: list[int]) -> list[str]:
    n = len(outcomes)
    cells = []
    for outcome in (1, 0, -1):
        count = outcomes.count(outcome)
        lo, hi = wilson(count, n)
        cells += [f"{count} ({count / n:.0%})", f"{lo:.0%}-{hi:.0%}"]
    return cells


def _load_agent(spec: str, stochastic: bool) -> Any:
    from pathlib import Path

    from agent.players import load_player

    path = Path(spec)
    if stochastic:
        if path.suffix.lower() == ".onnx" or not path.exists():
            raise click.BadParameter(
                "--stochastic needs a run directory or checkpoint (ONNX graphs and "
                "scripted players act deterministically)",
                param_hint="AGENT",
            )
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

    from agent.match import play_game, player1_starts
    from agent.opponents import SCRIPTED, make_scripted

    if opponent not in SCRIPTED:
        raise click.BadParameter(
            f"unknown opponent {opponent!r}; choices: {', '.join(SCRIPTED)}", param_hint="--opponent"
        )
    if mode not in MODE_CHOICES:
        raise click.BadParameter(f"unknown mode {mode!r}; choices: {', '.join(MODE_CHOICES)}", param_hint="--mode")
    player = _load_agent(agent, stochastic)
    other = make_scripted(opponent, seed=seed)
    game_outcomes: list[int] = []
    rounds: list[RoundOutcome] = []
    for i in range(games):
        agent_first = i % 2 == 0 or mode != "normal"
        p1, p2 = (player, other) if agent_first else (other, player)
        result = play_game(p1, p2, seed=seed + i, mode=mode)
        sign = 1 if agent_first else -1
        game_outcomes.append(sign * result.winner)
        rounds += [
            RoundOutcome(1 if agent_first else 2, player1_starts(index) == agent_first, sign * winner)
            for index, winner in enumerate(result.rounds)
        ]

    console = Console()
    table = Table(
        title=f"{agent} vs {opponent} ({mode}, {'stochastic' if stochastic else 'deterministic'})", show_edge=False
    )
    table.add_column("")
    table.add_column("n", justify="right")
    for col in ("win", "draw", "loss"):
        table.add_column(col, justify="right")
        table.add_column("95% CI", justify="right")
    for label, outcomes in outcome_rows(game_outcomes, rounds, by_side=mode == "normal"):
        table.add_row(label, str(len(outcomes)), *_cells(outcomes))
    if mode == "normal":
        table.caption = (
            "as p1 / as p2: the rounds it played as player 1 / player 2; starts / receives: "
            "the rounds that began with the puck in its half / the opponent's"
        )
    console.print(table)
