"""`hockey-agent eval AGENT --opponent NAME --games N`: win/draw/loss with 95% Wilson intervals.

Games are tournament games of 4 rounds, all played at once (`agent.players.match.play_games`,
so a learned agent acts for every game in one batched step); the agent plays player 1
in even-numbered games and player 2 in odd ones, as the server assigns sides (player 1
always in the training modes, whose start positions favour player 1). Both the game
results and the round results are tabulated; in normal games the rounds are also split
by the agent's side and by who started (the puck lies in the starting player's half).

A trained agent has two policies: 'mean', the deterministic step the project exported
first (posterior mode, the actor's clipped mean or most likely action), and 'sample',
the samples it acts with while training (as the official agent always acts). With a
bounded normal that relies on clipping the two can play quite differently, so a run
directory or checkpoint is evaluated with both by default, one table each, on the same
game seeds, followed by the one that won more games (`hockey-agent export --policy`).
The sampled policy draws from a generator of its own seeded `--seed` +
SEED_POLICY_SAMPLES, so an evaluation repeats for a seed and the agent's own random
stream (train.seed) is left alone. An ONNX file acts the policy it was exported with
(old files: mean), scripted players their own rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agent.game.rules import MODE_NAMES
from agent.players.match import wilson

POLICY_CHOICES = ("mean", "sample", "both")


def _cells(outcomes: list[int]) -> list[str]:
    n = len(outcomes)
    cells = []
    for outcome in (1, 0, -1):
        count = outcomes.count(outcome)
        lo, hi = wilson(count, n)
        cells += [f"{count} ({count / n:.0%})", f"{lo:.0%}-{hi:.0%}"]
    return cells


def _players(spec: str, policy: str | None, games: int, seed: int) -> dict[str, Any]:
    """AGENT's batch players by policy label ('mean', 'sample'; '' for a scripted player)."""
    from agent.config import SEED_POLICY_SAMPLES
    from agent.players.scripted import SCRIPTED
    from league.members import describe_choices, load_batch_player

    path = Path(spec)
    if spec in SCRIPTED:
        if policy not in (None, "mean"):
            raise click.BadParameter(
                f"--policy {policy} needs a run directory, checkpoint or sampled ONNX file "
                "(scripted players act by their own rules)",
                param_hint="--policy",
            )
        return {"": load_batch_player(spec, games, seed=seed)}
    if path.suffix.lower() == ".onnx":
        from export.runtime import OnnxAgent

        if not path.is_file():
            raise click.BadParameter(f"ONNX file {spec!r} does not exist", param_hint="AGENT")
        try:
            onnx_agent = OnnxAgent(path, seed=seed + SEED_POLICY_SAMPLES)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="AGENT") from exc
        if policy not in (None, onnx_agent.policy):
            raise click.BadParameter(
                f"{spec} acts the policy it was exported with, '{onnx_agent.policy}'; --policy {policy} "
                "needs a run directory or checkpoint",
                param_hint="--policy",
            )
        onnx_agent.reset_batch(games)
        return {onnx_agent.policy: onnx_agent}
    if not path.exists():
        raise click.BadParameter(f"unknown player {spec!r}; expected {describe_choices()}", param_hint="AGENT")
    import torch

    from agent.dreamer.agent import BatchActingPolicy
    from agent.training.checkpoint import load_agent

    try:
        dreamer, cfg, _ = load_agent(path, device="cpu")
    except (ValueError, FileNotFoundError) as exc:
        raise click.BadParameter(str(exc), param_hint="AGENT") from exc
    players: dict[str, Any] = {}
    if policy in (None, "both", "mean"):
        players["mean"] = BatchActingPolicy(dreamer, games, deterministic=True, action_repeat=cfg.train.action_repeat)
    if policy in (None, "both", "sample"):
        generator = torch.Generator(dreamer.device).manual_seed(seed + SEED_POLICY_SAMPLES)
        players["sample"] = BatchActingPolicy(
            dreamer, games, deterministic=False, generator=generator, action_repeat=cfg.train.action_repeat
        )
    return players


@click.command()
@click.argument("agent")
@click.option("--opponent", required=True, help="A scripted player: weak, strong, still, random, shooter, keeper.")
@click.option(
    "--games", type=click.IntRange(min=1), default=100, show_default=True, help="Tournament games (4 rounds)."
)
@click.option("--mode", default="normal", show_default=True, help="normal | shooting | defense.")
@click.option(
    "--policy",
    type=click.Choice(POLICY_CHOICES),
    default=None,
    help="mean (deterministic), sample (as in training) or both [default: both for a run directory or "
    "checkpoint; an ONNX file acts the policy it was exported with].",
)
@click.option("--stochastic", is_flag=True, hidden=True, help="Old spelling of --policy sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Game i uses seed + i; seeds the samples too.")
def evaluate(agent: str, opponent: str, games: int, mode: str, policy: str | None, stochastic: bool, seed: int) -> None:
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
    if stochastic:
        if policy not in (None, "sample"):
            raise click.BadParameter(f"--stochastic means --policy sample, not {policy}", param_hint="--stochastic")
        policy = "sample"
    players = _players(agent, policy, games, seed)

    console = Console()
    won: dict[str, int] = {}
    for label, player in players.items():
        # every policy meets the same opponents on the same seeds: a paired comparison
        other = load_batch_player(opponent, games, seed=seed + 1)
        tally = play_games(player, other, games, a_side="alternate" if mode == "normal" else "p1", seed=seed, mode=mode)
        won[label] = tally.game_outcomes().count(1)
        # the title on a line of its own: a table's title wraps at the table's width
        console.print(
            f"{agent} vs {opponent} ({mode}" + (f", {label} policy)" if label else ")"), style="bold", markup=False
        )
        table = Table(show_edge=False)
        table.add_column("")
        table.add_column("n", justify="right")
        for col in ("win", "draw", "loss"):
            table.add_column(col, justify="right")
            table.add_column("95% CI", justify="right")
        for row_label, outcomes in tally.rows(by_side=mode == "normal"):
            table.add_row(row_label, str(len(outcomes)), *_cells(outcomes))
        if mode == "normal":
            table.caption = (
                "as p1 / as p2: the rounds it played as player 1 / player 2; starts / receives: "
                "the rounds that began with the puck in its half / the opponent's"
            )
        console.print(table)
    if len(won) == 2:
        mean, sample = won["mean"], won["sample"]
        if mean == sample:
            console.print(f"mean and sample won as many games ({mean} of {games})", markup=False)
        else:
            best = "mean" if mean > sample else "sample"
            console.print(
                f"{best} won more games ({max(mean, sample)} vs {min(mean, sample)} of {games}): "
                f"hockey-agent export {agent} -o AGENT.onnx --policy {best}",
                markup=False,
            )
