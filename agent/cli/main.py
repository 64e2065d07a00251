"""The `hockey-agent` command line.

Sub-commands live in the package that owns them and are imported only when run, so
`hockey-agent --help` stays fast and the tournament client works without torch.
"""

from __future__ import annotations

import importlib
import os

import click

# OpenMP threads that spin while waiting cost a shared or oversubscribed CPU dearly
# (measured: a tiny-preset update went from ~0.1 s to 11 s with two spinning runs on two
# cores), so every command but training lets them sleep; training decides for itself
# (agent/training/cpu.py). Set before torch is imported; a user's own setting wins.
SETS_OWN_THREADS = ("train", "ablate")

# name -> ("module:attribute", one-line help shown by --help without importing it)
COMMANDS: dict[str, tuple[str, str]] = {
    "play": ("agent.cli.play:play", "Play matches between two players and tabulate the results."),
    "train": (
        "agent.cli.train:train",
        "Train a DreamerV3 agent (against scripted players or, with --selfplay, a league).",
    ),
    "eval": (
        "agent.cli.evaluate:evaluate",
        "Evaluate an agent against a scripted opponent, with confidence intervals.",
    ),
    "diagnose": (
        "agent.cli.diagnose:diagnose",
        "Read a run's metrics and report entropy / exploration red flags.",
    ),
    "ablate": (
        "agent.cli.ablate:ablate",
        "Run an ablation: eta values, schedules or any config field (--vary), same seeds.",
    ),
    "export": ("export.cli:export_cmd", "Export a trained agent to one ONNX graph for the torch-free runtime."),
    "league": ("league.cli:league", "Manage the league: add members, evaluate, show ratings."),
    "client": ("export.client_cli:client", "Play on a comprl tournament server with an exported ONNX agent."),
    "serve": ("export.client_cli:serve", "Run a small local tournament server speaking the comprl protocol."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        if name not in SETS_OWN_THREADS:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or "a dependency"
            raise click.ClickException(
                f"'{name}' needs {missing}, which is not installed. "
                "Install the training extra: pip install 'hockey-agent[train]'"
            ) from exc
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hockey-agent")
def main() -> None:
    """hockey-agent: a DreamerV3 agent for the RL-course hockey game.

    Train against scripted players or a self-play league, rate everyone, export the
    acting agent to ONNX and play on the comprl tournament server.
    """


if __name__ == "__main__":
    main()
