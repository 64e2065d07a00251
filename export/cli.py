"""`hockey-agent export`: a run directory or checkpoint -> one ONNX graph (optionally checked).

torch and onnx are imported inside the command, so `hockey-agent --help` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from agent.players.scripted import SCRIPTED
from export.onnx_export import DEFAULT_OPSET, EXPORTERS, POLICIES


def _check_output(output: Path) -> None:
    """One line naming `output` unless it can be written (missing folders are made on export)."""
    existing = output.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise click.ClickException(f"cannot write {output}: {existing} is not a directory")
    if not os.access(existing, os.W_OK):
        raise click.ClickException(f"cannot write {output}: the directory {existing} is read-only")


@click.command("export")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the .onnx file (written atomically; replaced if present).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Play whole games with the ONNX graph and the PyTorch agent side by side; "
    "exit 1 unless actions and states agree within 1e-4 and every game has the same winner.",
)
@click.option(
    "--opset",
    type=int,
    default=None,
    help="ONNX opset (default: " + ", ".join(f"{v} for {k}" for k, v in DEFAULT_OPSET.items()) + ").",
)
@click.option(
    "--exporter",
    type=click.Choice(EXPORTERS),
    default="torchscript",
    show_default=True,
    help="torch.onnx exporter; 'dynamo' needs the onnxscript package.",
)
@click.option(
    "--games", type=click.IntRange(min=1), default=1, show_default=True, help="Games (4 rounds each) played by --check."
)
@click.option(
    "--opponent",
    type=click.Choice(SCRIPTED),
    default="weak",
    show_default=True,
    help="Scripted opponent of the --check games.",
)
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default="mean",
    show_default=True,
    help="How the graph acts: 'mean', the deterministic step (posterior mode, actor mean or most likely "
    "action); 'sample', sampled latents and actions from noise the runtime draws. "
    "`hockey-agent eval RUN` shows which wins more.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --check games (and their noise).")
def export_cmd(
    source: Path,
    output: Path,
    check: bool,
    opset: int | None,
    exporter: str,
    games: int,
    opponent: str,
    policy: str,
    seed: int,
) -> None:
    """Export the trained agent in SOURCE (a run directory or a checkpoint file) to ONNX.

    The graph is one acting step, deterministic or sampled (--policy; see
    docs/ARCHITECTURE.md, "The exported agent"); it runs with the torch-free runtime
    (export/runtime.py, OnnxAgent).
    """
    _check_output(output)
    import torch

    from export.onnx_export import check_export, export_agent, load_checkpoint_agent
    from export.runtime import OnnxAgent, describe

    torch.set_num_threads(1)
    try:
        loaded = load_checkpoint_agent(source)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        export_agent(
            loaded.agent,
            output,
            preset=loaded.preset,
            train_step=loaded.train_step,
            opset=opset,
            exporter=exporter,
            policy=policy,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--opset / --exporter") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"exported {loaded.source} -> {output}")
    click.echo(describe(OnnxAgent(output)))
    if not check:
        return
    report = check_export(loaded.agent, output, games=games, seed=seed, opponent=opponent)
    verdict = "PASS" if report.ok else "FAIL"
    click.echo(f"check against '{opponent}', {report.games} game(s), {report.steps} steps:")
    click.echo(
        f"  max |action diff| {report.max_action_diff:.3g}  max |state diff| "
        f"{report.max_state_diff:.3g}  (tolerance {report.tolerance:g})"
    )
    click.echo(f"  rounds PyTorch {list(report.torch_rounds)}  ONNX {list(report.onnx_rounds)}")
    click.echo(
        f"  game winners PyTorch {list(report.torch_winners)}  ONNX {list(report.onnx_winners)}  "
        f"same outcome: {report.same_outcome}"
    )
    click.echo(verdict)
    if not report.ok:
        raise SystemExit(1)
