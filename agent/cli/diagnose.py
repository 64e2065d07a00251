"""`hockey-agent diagnose RUN_DIR [--plot out.png]`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw entropy, rand, std, S, advantage, losses and win rate into this PNG.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the logged update metrics (and the train win rate) as CSV.",
)
def diagnose(run_dir: Path, plot_path: Path | None, csv_path: Path | None) -> None:
    """Read RUN_DIR/metrics.jsonl and report entropy / exploration red flags with evidence."""
    from agent.training import diagnose as diag

    if not (run_dir / "metrics.jsonl").is_file():
        raise click.BadParameter(f"{run_dir} has no metrics.jsonl (is it a run directory?)", param_hint="RUN_DIR")
    try:
        diag.report(run_dir)
        if plot_path is not None:
            click.echo(f"plot written to {diag.plot(run_dir, plot_path)}")
        if csv_path is not None:
            click.echo(f"CSV written to {diag.write_csv(run_dir, csv_path)}")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
