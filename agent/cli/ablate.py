"""`hockey-agent ablate`: ablations over eta values x schedules x other fields x seeds,
or over named variants (one change each) x seeds.

The entropy scale and its schedule are the default axes; `--vary SECTION.FIELD=V1,V2`
adds any other config field (for example the intrinsic bonus, explore.scale=0,0.1,1).
Runs every combination one after the other in
OUT/eta<eta>-<schedule>[-<field><value>...]-s<seed> (a finished run is skipped and an
interrupted one resumed, so the command can be re-run), then writes OUT/summary.csv (per
run: entropy and rand per phase, floor share, |advantage|, final win rates) and
OUT/ablation.png (entropy, rand and win rate curves side by side, one colour per
eta/schedule, one line per seed). Non-constant schedules decay over the run's expected
number of updates unless --set actor.eta_decay_steps=... says otherwise.

Variants (`--variant "NAME: SECTION.FIELD=VALUE ..."`, repeatable) replace the grid: each
variant is one run per seed in OUT/NAME-s<seed> with its overrides on top of --set, the
way an A/B table compares one change at a time. `--updates N` makes the budget N
updates (train.updates) instead of env steps alone. `--final-games G` plays G tournament
games (4 rounds each, sides alternating, the deterministic policy) of every finished run
against each of `--final-opponents` on seeds the trainer never evaluates on, and adds
the rounds won, drawn and lost with 95% Wilson intervals to summary.csv.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any

import click
import numpy as np


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise click.BadParameter(f"{what} is empty")
    return values


def run_name(eta: float, schedule: str, seed: int, varied: tuple[tuple[str, str], ...] = ()) -> str:
    extra = "".join(f"-{key.rpartition('.')[2]}{value}" for key, value in varied)
    return f"eta{eta:g}-{schedule}{extra}-s{seed}"


def _varied(items: tuple[str, ...]) -> list[tuple[tuple[str, str], ...]]:
    """--vary SECTION.FIELD=V1,V2 options -> every combination of (key, value) pairs."""
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or "." not in key or not choices:
            raise click.BadParameter(f"{item!r} is not SECTION.FIELD=V1,V2,...", param_hint="--vary")
        axes.append([(key.strip(), v) for v in choices])
    return list(itertools.product(*axes))


FINAL_SEED = 100_000  # the final evaluation's games: seeds the trainer never evaluates on


def parse_variant(text: str) -> tuple[str, tuple[str, ...]]:
    """'NAME: a.b=1 c.d=2' -> ('NAME', ('a.b=1', 'c.d=2')); a bare 'NAME:' has no overrides."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    items = tuple(rest.split())
    if not sep or not name or any(c in name for c in "/ ") or any("=" not in i or "." not in i for i in items):
        raise click.BadParameter(f"{text!r} is not 'NAME: SECTION.FIELD=VALUE ...'", param_hint="--variant")
    return name, items


def final_evaluation(run_dir: Path, opponents: list[str], games: int) -> dict[str, Any]:
    """Rounds won / drawn / lost (with 95% Wilson intervals) of the run's agent against each opponent."""
    from agent.players.match import play_games, wilson
    from agent.players.scripted import scripted_batch
    from league.members import load_batch_player

    out: dict[str, Any] = {}
    for opp in opponents:
        agent = load_batch_player(str(run_dir), games)
        tally = play_games(agent, scripted_batch(opp, games, seed=FINAL_SEED + 1), games, seed=FINAL_SEED)
        rounds = tally.round_outcomes()
        for key, value in (("won", 1), ("drawn", 0), ("lost", -1)):
            count = rounds.count(value)
            lo, hi = wilson(count, len(rounds))
            out[f"{opp}_{key}"] = round(count / len(rounds), 4)
            out[f"{opp}_{key}_ci"] = f"{lo:.3f}-{hi:.3f}"
        out[f"{opp}_rounds"] = len(rounds)
    return out


def summarise(run_dir: Path) -> dict[str, Any]:
    """One CSV row: phase means of entropy/rand, floor share, |adv|, final win rates."""
    from agent.training.diagnose import phase_table, update_rows
    from agent.training.metrics import read_rows

    rows = read_rows(run_dir)
    upd = update_rows(rows)
    out: dict[str, Any] = {"steps": upd[-1]["step"] if upd else 0, "updates": upd[-1]["update"] if upd else 0}
    out["hours"] = round(upd[-1]["time"] / 3600, 3) if upd else 0
    for phase in phase_table(rows):
        for key in ("entropy", "rand", "at_floor", "adv_abs", "std_q50"):
            out[f"{key}_{phase['phase']}"] = round(phase[key], 4)
    bonus = [r["explore/bonus"] for r in upd if "explore/bonus" in r]
    if bonus:
        tenth = max(1, len(bonus) // 10)
        out["explore_bonus_first_tenth"] = round(float(np.mean(bonus[:tenth])), 4)
        out["explore_bonus_last_tenth"] = round(float(np.mean(bonus[-tenth:])), 4)
    episodes = [r for r in rows if r.get("kind") == "episode"]
    tail = episodes[-max(1, len(episodes) // 5) :] if episodes else []
    out["train_win_last_fifth"] = round(sum(r["train/outcome"] == 1 for r in tail) / len(tail), 4) if tail else ""
    evals = [r for r in rows if r.get("kind") == "eval"]
    if evals:
        for key, value in evals[-1].items():
            if key.startswith("eval/"):
                out[key.replace("/", "_")] = value
    return out


def plot_runs(runs: dict[str, Path], out: Path) -> Path:
    """Entropy, rand and win-rate curves of several runs side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agent.training.diagnose import H_MAX, H_MIN, update_rows
    from agent.training.metrics import read_rows

    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    groups = sorted({name.rsplit("-s", 1)[0] for name in runs})
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    labelled: set[str] = set()
    for name, run_dir in sorted(runs.items()):
        group = name.rsplit("-s", 1)[0]
        rows = read_rows(run_dir)
        upd = update_rows(rows)
        x = [r["step"] for r in upd]
        label = None if group in labelled else group  # one legend entry per eta/schedule
        labelled.add(group)
        axes[0].plot(x, [r.get("actor/entropy", float("nan")) for r in upd], color=colours[group], lw=1, label=label)
        axes[1].plot(x, [r.get("actor/rand", float("nan")) for r in upd], color=colours[group], lw=1, label=label)
        episodes = [r for r in rows if r.get("kind") == "episode"]
        axes[2].plot(
            [r["step"] for r in episodes],
            [r["train/win_rate"] for r in episodes],
            color=colours[group],
            lw=1,
            label=label,
        )
    axes[0].axhline(H_MIN, color="grey", ls="--", lw=0.8)
    axes[0].axhline(H_MAX, color="grey", ls="--", lw=0.8)
    axes[0].axhline(0, color="black", lw=0.5)
    titles = ("entropy (nats, negative is normal)", "rand (normalised entropy)", "train win rate (last 100 rounds)")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("env steps")
        ax.legend(fontsize=8)
    axes[1].set_ylim(-0.02, 1.02)
    axes[2].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


@click.command()
@click.option(
    "--etas", default=None, help="Comma-separated entropy scales (default 3e-4,1e-3,3e-3; with --variant the preset's)."
)
@click.option("--schedules", default=None, help="Comma-separated: constant, linear, exp (default constant).")
@click.option("--seeds", default="0,1", show_default=True, help="Comma-separated seeds (the same for every eta).")
@click.option("--steps", type=click.IntRange(min=1), required=True, help="Env steps per run.")
@click.option("--preset", default="tiny", show_default=True, help="tiny | small | medium.")
@click.option("--opponent", default="still", show_default=True, help="Scripted opponent (or mix).")
@click.option("--mode", default="shooting", show_default=True, help="normal | shooting | defense | curriculum.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option(
    "--vary",
    multiple=True,
    metavar="SECTION.FIELD=V1,V2",
    help="Another axis of the grid, e.g. explore.scale=0,0.1,1 (repeatable).",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="'NAME: SECTION.FIELD=VALUE ...'",
    help="A named set of overrides, one run per seed (repeatable; replaces the eta/schedule/--vary grid).",
)
@click.option("--updates", type=click.IntRange(min=1), default=None, help="Budget in updates per run (train.updates).")
@click.option("--final-games", type=click.IntRange(min=0), default=0, show_default=True,
              help="Tournament games per final opponent for every finished run (0: none).")  # fmt: skip
@click.option("--final-opponents", default="weak,strong", show_default=True, help="Comma-separated scripted players.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.FIELD=VALUE", help="Extra overrides for every run.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda.")
def ablate(
    etas: str | None,
    schedules: str | None,
    seeds: str,
    steps: int,
    preset: str,
    opponent: str,
    mode: str,
    out: Path,
    vary: tuple[str, ...],
    variants: tuple[str, ...],
    updates: int | None,
    final_games: int,
    final_opponents: str,
    overrides: tuple[str, ...],
    device: str,
) -> None:
    """Run the eta x schedule x --vary x seed grid sequentially, then plot and summarise it."""
    from rich.console import Console

    from agent.cli.train import build_config
    from agent.config import CHOICES
    from agent.training import cpu

    cpu.configure(share_cpu=False, threads=0)  # one run at a time, each with the machine to itself

    if variants and (etas is not None or schedules is not None or vary):
        raise click.BadParameter("--variant replaces --etas, --schedules and --vary: use one or the other")
    opponents = [o.strip() for o in final_opponents.split(",") if o.strip()]
    from agent.players.scripted import SCRIPTED

    for name in opponents:
        if name not in SCRIPTED:
            raise click.BadParameter(f"unknown opponent {name!r}; choices: {', '.join(SCRIPTED)}",
                                     param_hint="--final-opponents")  # fmt: skip
    seed_values = [int(s) for s in _floats(seeds, "--seeds")]
    if variants:
        _run_variants(variants, seed_values, steps, preset, opponent, mode, out, updates, overrides, device)
        names = [f"{name}-s{seed}" for name, _ in map(parse_variant, variants) for seed in seed_values]
        _summary({name: out / name for name in names}, out, opponents, final_games)
        return
    eta_values = _floats(etas or "3e-4,1e-3,3e-3", "--etas")
    schedule_values = [s.strip() for s in (schedules or "constant").split(",") if s.strip()]
    allowed = CHOICES[("actor", "eta_schedule")]
    for s in schedule_values:
        if s not in allowed:
            raise click.BadParameter(f"unknown schedule {s!r}; choices: {', '.join(allowed)}", param_hint="--schedules")
    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Path] = {}
    grid = itertools.product(eta_values, schedule_values, _varied(vary), seed_values)
    for eta, schedule, varied, seed in grid:
        name = run_name(eta, schedule, seed, varied)
        run_dir = out / name
        runs[name] = run_dir
        items = (
            f"actor.eta={eta}",
            f"actor.eta_schedule={schedule}",
            *overrides,
            *(f"{key}={value}" for key, value in varied),
        )
        options = {"opponent": opponent, "mode": mode, "steps": steps, "seed": seed, "device": device,
                   "updates": updates}  # fmt: skip
        cfg = build_config(preset, options, items, None)
        if schedule != "constant" and not any(o.startswith("actor.eta_decay_steps=") for o in overrides):
            t = cfg.train
            cfg.actor.eta_decay_steps = max(1, int((t.steps - t.prefill) * t.train_ratio / (t.batch_size * t.seq_len)))
        if not _train_one(cfg, run_dir, name, preset, console):
            return
    _summary(runs, out, opponents, final_games)


def _train_one(cfg: Any, run_dir: Path, name: str, preset: str, console: Any) -> bool:
    """Train (or resume, or skip when done) one run; False when it was interrupted."""
    from agent.training.trainer import Trainer

    resume = (run_dir / "checkpoint.pt").exists()
    trainer = Trainer(cfg, run_dir, resume=resume, preset=preset, progress=True)
    if trainer.env_steps >= cfg.train.steps or trainer.budget_spent():
        console.print(f"{name}: already done ({trainer.env_steps} env steps, {trainer.updates} updates), skipped")
        trainer.close()
        return True
    console.print(f"[bold]{name}[/] ({'resumed' if resume else 'new'})")
    try:
        result = trainer.train()
    finally:
        trainer.close()
    if result["interrupted"]:
        console.print(f"interrupted in {name}; re-run the same command to continue")
        return False
    return True


def _run_variants(
    variants: tuple[str, ...], seeds: list[int], steps: int, preset: str, opponent: str, mode: str, out: Path,
    updates: int | None, overrides: tuple[str, ...], device: str,
) -> None:  # fmt: skip
    from rich.console import Console

    from agent.cli.train import build_config

    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    parsed = [parse_variant(v) for v in variants]
    names = [name for name, _ in parsed]
    if len(set(names)) != len(names):
        raise click.BadParameter(f"variant names repeat: {names}", param_hint="--variant")
    for name, items in parsed:
        for seed in seeds:
            options = {"opponent": opponent, "mode": mode, "steps": steps, "seed": seed, "device": device,
                       "updates": updates}  # fmt: skip
            cfg = build_config(preset, options, (*overrides, *items), None)
            if not _train_one(cfg, out / f"{name}-s{seed}", f"{name}-s{seed}", preset, console):
                raise SystemExit(1)


def _summary(runs: dict[str, Path], out: Path, opponents: list[str], final_games: int) -> None:
    from rich.console import Console

    rows = []
    for name, path in runs.items():
        row = {"run": name, **summarise(path)}
        if final_games:
            row.update(final_evaluation(path, opponents, final_games))
        rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    png = plot_runs(runs, out / "ablation.png")
    Console().print(f"summary: {out / 'summary.csv'}\nplot: {png}")
