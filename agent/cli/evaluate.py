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

Several agents and several opponents are one call (`hockey-agent eval runs/x/ckpts/*.pt
--opponent weak,strong,keeper,shooter --policy mean --brief`): every agent meets every
opponent on the same seeds, and a closing table gives each agent's score against each
opponent (rounds won plus half the rounds drawn, the tournament's points per round
divided by two) and its worst case over them, best worst case first. That is how a
champion is picked among checkpoints: results swing by tens of points between
checkpoints a thousand updates apart, so every candidate is measured on the same games.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _players(spec: str, policy: str | None, games: int, seed: int) -> dict[str, Callable[[], Any]]:
    """AGENT's batch players by policy label ('mean', 'sample'; '' for a scripted player), as factories.

    The agent is loaded (and refused, for bad input) once; each factory call makes a fresh
    player whose sampled policy draws from a generator seeded anew, so the games against
    one opponent do not depend on which opponents came before.
    """
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
        return {"": lambda: load_batch_player(spec, games, seed=seed)}
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

        def onnx_player() -> Any:
            fresh = OnnxAgent(path, seed=seed + SEED_POLICY_SAMPLES)
            fresh.reset_batch(games)
            return fresh

        return {onnx_agent.policy: onnx_player}
    if not path.exists():
        raise click.BadParameter(f"unknown player {spec!r}; expected {describe_choices()}", param_hint="AGENT")
    import torch

    from agent.dreamer.agent import BatchActingPolicy
    from agent.training.checkpoint import load_agent

    try:
        dreamer, cfg, _ = load_agent(path, device="cpu")
    except (ValueError, FileNotFoundError) as exc:
        raise click.BadParameter(str(exc), param_hint="AGENT") from exc
    repeat = cfg.train.action_repeat

    def mean_player() -> Any:
        return BatchActingPolicy(dreamer, games, deterministic=True, action_repeat=repeat)

    def sampled_player() -> Any:
        generator = torch.Generator(dreamer.device).manual_seed(seed + SEED_POLICY_SAMPLES)
        return BatchActingPolicy(dreamer, games, deterministic=False, generator=generator, action_repeat=repeat)

    players: dict[str, Callable[[], Any]] = {}
    if policy in (None, "both", "mean"):
        players["mean"] = mean_player
    if policy in (None, "both", "sample"):
        players["sample"] = sampled_player
    return players


def _opponents(spec: str) -> list[str]:
    from agent.players.scripted import SCRIPTED

    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("name at least one opponent", param_hint="--opponent")
    for name in names:
        if name not in SCRIPTED:
            raise click.BadParameter(
                f"unknown opponent {name!r}; choices: {', '.join(SCRIPTED)}", param_hint="--opponent"
            )
    if len(set(names)) != len(names):
        raise click.BadParameter(f"an opponent is named twice in {spec!r}", param_hint="--opponent")
    return names


def score(outcomes: list[int]) -> float:
    """Rounds won plus half the rounds drawn, over all rounds: 1 wins everything, 0.5 is level."""
    return (outcomes.count(1) + 0.5 * outcomes.count(0)) / len(outcomes)


@click.command()
@click.argument("agents", nargs=-1, required=True, metavar="AGENT...")
@click.option(
    "--opponent",
    required=True,
    help="Scripted players, comma-separated: weak, strong, still, random, shooter, keeper.",
)
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
@click.option("--brief", is_flag=True, help="Print only the closing table of scores (one row per agent and policy).")
def evaluate(
    agents: tuple[str, ...],
    opponent: str,
    games: int,
    mode: str,
    policy: str | None,
    stochastic: bool,
    seed: int,
    brief: bool,
) -> None:
    """Evaluate each AGENT (run dir, checkpoint, .onnx or scripted name) against scripted opponents.

    One opponent and one agent print the detailed tables; several of either add a closing
    table of scores and worst cases, best worst case first.
    """
    from rich.console import Console
    from rich.progress import Progress

    from agent.players.match import play_games
    from league.members import load_batch_player

    opponents = _opponents(opponent)
    if mode not in MODE_NAMES:
        raise click.BadParameter(f"unknown mode {mode!r}; choices: {', '.join(MODE_NAMES)}", param_hint="--mode")
    if stochastic:
        if policy not in (None, "sample"):
            raise click.BadParameter(f"--stochastic means --policy sample, not {policy}", param_hint="--stochastic")
        policy = "sample"
    # every agent is loaded (and bad input refused) before the first game is played
    loaded = {spec: _players(spec, policy, games, seed) for spec in dict.fromkeys(agents)}

    console = Console()
    scores: dict[tuple[str, str], dict[str, float]] = {}
    total = sum(len(players) for players in loaded.values()) * len(opponents)
    with Progress(console=console, transient=True, disable=not brief) as progress:
        task = progress.add_task("evaluating", total=total)
        for spec, players in loaded.items():
            won: dict[str, int] = {}
            for opp in opponents:
                for label, make_player in players.items():
                    # every policy and agent meets the same opponents on the same seeds: a paired comparison
                    other = load_batch_player(opp, games, seed=seed + 1)
                    tally = play_games(
                        make_player(),
                        other,
                        games,
                        a_side="alternate" if mode == "normal" else "p1",
                        seed=seed,
                        mode=mode,
                    )
                    won[label] = won.get(label, 0) + tally.game_outcomes().count(1)
                    scores.setdefault((spec, label), {})[opp] = score(tally.round_outcomes())
                    progress.advance(task)
                    if not brief:
                        _print_table(console, tally, f"{spec} vs {opp}", label, mode)
            if len(won) == 2 and not brief:
                _print_policy_choice(console, spec, won, games * len(opponents))
    if brief or len(scores) > 1 or len(opponents) > 1:
        _print_scores(console, scores, opponents, games)


def _print_table(console: Any, tally: Any, title: str, label: str, mode: str) -> None:
    from rich.table import Table

    # the title on a line of its own: a table's title wraps at the table's width
    console.print(f"{title} ({mode}" + (f", {label} policy)" if label else ")"), style="bold", markup=False)
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


def _print_policy_choice(console: Any, spec: str, won: dict[str, int], games: int) -> None:
    mean, sample = won["mean"], won["sample"]
    if mean == sample:
        console.print(f"mean and sample won as many games ({mean} of {games})", markup=False)
    else:
        best = "mean" if mean > sample else "sample"
        console.print(
            f"{best} won more games ({max(mean, sample)} vs {min(mean, sample)} of {games}): "
            f"hockey-agent export {spec} -o AGENT.onnx --policy {best}",
            markup=False,
        )


def _print_scores(
    console: Any, scores: dict[tuple[str, str], dict[str, float]], opponents: list[str], games: int
) -> None:
    from rich.table import Table

    console.print(
        f"score = (rounds won + rounds drawn / 2) / rounds, {4 * games} rounds per opponent; best worst case first",
        style="bold",
        markup=False,
    )
    specs = list(dict.fromkeys(spec for spec, _ in scores))
    folder = _common_folder(specs)
    if folder:
        console.print(f"agents in {folder}/", markup=False, soft_wrap=True)  # a path copies whole
    table = Table(show_edge=False)
    table.add_column("agent", overflow="fold")  # a name is never cut short: it is what the table picks
    table.add_column("policy")
    for opp in opponents:
        table.add_column(opp, justify="right")
    table.add_column("worst", justify="right")
    table.add_column("mean", justify="right")
    ranked = sorted(scores.items(), key=lambda item: -min(item[1].values()))
    for (spec, label), by_opp in ranked:
        values = [by_opp[opp] for opp in opponents]
        table.add_row(
            spec[len(folder) + 1 :] if folder else spec,
            label or "-",
            *(f"{v:.3f}" for v in values),
            f"{min(values):.3f}",
            f"{sum(values) / len(values):.3f}",
        )
    console.print(table)


def _common_folder(specs: list[str]) -> str:
    """The folder that every agent path lies in (said once above the table), or '' when none is shared."""
    import os

    if len(specs) < 2 or not all("/" in spec for spec in specs):
        return ""
    folder = os.path.commonpath(specs)
    return "" if folder in specs else folder
