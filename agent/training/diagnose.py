"""Read a run's metrics and name its entropy / exploration red flags, with evidence.

The numbers refer to the bounded_normal actor of DreamerV3 with the std bounds of the
run's own config (official: std in [0.1, 1]); with 4 action dimensions the
per-dimension Gaussian entropy 0.5 ln(2 pi e std^2) then lies in [-0.884, +1.419] nats,
the 4-dimensional sum in [-3.53, +5.68]. Negative values are normal. `actor/rand` maps
that range onto [0, 1] and is the number to watch. A discrete actor (actor.dist=discrete)
has the exact categorical entropy in [0, sum ln classes] and no std: its runs log no
std quantiles or saturation, so the flags built on them stay silent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import ActorConfig, load_config
from agent.dreamer.behavior import policy_entropy_bounds
from agent.game.rules import ACTION_SIZE
from agent.training.checkpoint import CONFIG_FILE
from agent.training.metrics import read_rows

ACT_DIM = ACTION_SIZE


@dataclass(frozen=True)
class Bounds:
    """The actor's distribution and std bounds, and the entropy range they give: the
    run's own, or the official (bounded_normal, std in [0.1, 1])."""

    min_std: float = ActorConfig.min_std
    max_std: float = ActorConfig.max_std
    dist: str = ActorConfig.dist
    action_set: str = ActorConfig.action_set

    @property
    def discrete(self) -> bool:
        return self.dist == "discrete"

    def _entropy_bounds(self) -> tuple[float, float]:
        actor = ActorConfig(dist=self.dist, action_set=self.action_set, min_std=self.min_std, max_std=self.max_std)
        return policy_entropy_bounds(actor, ACT_DIM)

    @property
    def h_min(self) -> float:
        return self._entropy_bounds()[0]

    @property
    def h_max(self) -> float:
        return self._entropy_bounds()[1]

    @property
    def collapse_std(self) -> float:
        """A median std at most this (10% above the floor) counts as collapsed."""
        return 1.1 * self.min_std

    @classmethod
    def of_run(cls, run_dir: str | Path) -> Bounds:
        """The bounds in the run's config.json (the official ones when it has none)."""
        path = Path(run_dir) / CONFIG_FILE
        if not path.is_file():
            return cls()
        actor = load_config(path).actor
        return cls(actor.min_std, actor.max_std, actor.dist, actor.action_set)

    def describe(self) -> str:
        """The actor these bounds are for, for the report's titles."""
        if self.discrete:
            return f"discrete {self.action_set}"
        return f"{self.dist}, {ACT_DIM} action dims, std in [{self.min_std:g}, {self.max_std:g}]"


OFFICIAL = Bounds()
H_MIN, H_MAX = OFFICIAL.h_min, OFFICIAL.h_max  # for 4 dimensions and std in [0.1, 1]


def centred_saturation(std: float) -> float:
    """Share of actions with |a| > 0.99 in any of 4 dims for a zero-mean Normal(0, std)."""
    return 1 - math.erf(0.99 / (std * math.sqrt(2))) ** ACT_DIM


# Thresholds of the red flags (documented in the report's evidence lines).
COLLAPSE_RAND = 0.05
STUCK_RAND = 0.9  # bounded_normal starts at std 0.89, rand 0.95
TINY_ADV = 0.05
FLOOR_SHARE = 0.9
PINNED_SHARE = 0.8
DRILL_WINDOW = 50  # drill rounds in the plot's rolling share lost
SATURATION_EXCESS = 0.2  # saturation above what the std alone explains
SATURATION_MIN = 0.5
GROWTH = 3.0
GROWING = ("wm/loss", "wm/rec", "critic/loss")  # losses that should fall: flagged when they grow
PHASES = ("early", "mid", "late")


@dataclass
class Flag:
    name: str
    title: str
    evidence: str
    advice: str


def update_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("kind", "update") == "update"]


def series(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """Scalar values of `key` over the rows that have it (NaN kept)."""
    return np.array([float(r[key]) for r in rows if key in r and not isinstance(r[key], list)], np.float64)


def phases(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Split update rows into thirds by order: early, mid, late."""
    n = len(rows)
    cuts = [0, n // 3, 2 * n // 3, n]
    return {p: rows[cuts[i] : cuts[i + 1]] for i, p in enumerate(PHASES)}


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    v = series(rows, key)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _fmt(x: float, digits: int = 3) -> str:
    return "-" if not math.isfinite(x) else f"{x:.{digits}g}"


def _shooting(row: dict[str, Any]) -> bool:
    """Whether a drill row is a shooting drill (rows from before the flag are defense drills)."""
    return bool(row.get("train/drill_shooting", 0.0))


def phase_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per phase: env-step range and means of the exploration metrics (and win rate when logged)."""
    upd = update_rows(rows)
    table = []
    for name, part in phases(upd).items():
        if not part:
            continue
        lo, hi = part[0]["step"], part[-1]["step"]
        episodes = [r for r in rows if r.get("kind") == "episode" and lo <= r["step"] <= hi]
        drills = [r for r in rows if r.get("kind") == "drill" and lo <= r["step"] <= hi]
        lost = [float(r["train/drill_outcome"] == -1) for r in drills if not _shooting(r)]
        scored = [float(r["train/drill_outcome"] == 1) for r in drills if _shooting(r)]
        table.append(
            {
                "phase": name,
                "steps": f"{lo}-{hi}",
                "entropy": _mean(part, "actor/entropy"),
                "rand": _mean(part, "actor/rand"),
                "std_q50": _mean(part, "actor/std_q50"),
                "at_floor": _mean(part, "ret/at_floor"),
                "adv_abs": _mean(part, "actor/adv_abs"),
                "saturation": _mean(part, "actor/saturation"),
                "pg_term": _mean(part, "actor/pg_term"),
                "ent_term": _mean(part, "actor/ent_term"),
                "win_rate": _mean(episodes, "train/win_rate"),
                "drill_lost": float(np.mean(lost)) if lost else float("nan"),
                "drill_scored": float(np.mean(scored)) if scored else float("nan"),
            }
        )
    return table


def step_table(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per imagined step k: mean weight (continue-discount product) and entropy, over all update rows."""
    upd = [r for r in update_rows(rows) if isinstance(r.get("actor/weight_step"), list)]
    if not upd:
        return []
    weights = np.array([r["actor/weight_step"] for r in upd], np.float64)
    entropy = np.array([r["actor/entropy_step"] for r in upd], np.float64)
    return [
        {"k": k, "weight": float(weights[:, k].mean()), "entropy": float(entropy[:, k].mean())}
        for k in range(weights.shape[1])
    ]


def _growing(values: np.ndarray) -> tuple[bool, str]:
    """True when the last tenth's median exceeds GROWTH x the smallest earlier tenth's median."""
    values = values[np.isfinite(values)]
    if values.size < 20 or values.min() <= 0:
        return False, ""
    medians = [float(np.median(w)) for w in np.array_split(values, 10)]
    best = min(medians[:-1])
    if medians[-1] > GROWTH * best and medians[-1] > medians[-2]:
        return True, f"median of the last tenth {medians[-1]:.4g} vs {best:.4g} earlier (x{medians[-1] / best:.1f})"
    return False, ""


def find_flags(rows: list[dict[str, Any]], bounds: Bounds = OFFICIAL) -> list[Flag]:
    """Every red flag the update rows show (an empty list for a healthy run), for a run
    whose actor std lies within `bounds`."""
    upd = update_rows(rows)
    if not upd:
        return []
    flags: list[Flag] = []
    parts = phases(upd)
    late_half = upd[len(upd) // 2 :]

    for phase in ("early", "mid"):
        part = parts[phase]
        rand, std50 = _mean(part, "actor/rand"), _mean(part, "actor/std_q50")
        if part and (rand < COLLAPSE_RAND or std50 <= bounds.collapse_std):
            flags.append(
                Flag(
                    "entropy_collapse",
                    "Entropy collapse",
                    f"{phase} phase (steps {part[0]['step']}-{part[-1]['step']}): mean rand {_fmt(rand)} "
                    f"(flag below {COLLAPSE_RAND}), "
                    + ("" if bounds.discrete else f"median std {_fmt(std50)} (floor {bounds.min_std:g}), ")
                    + f"entropy {_fmt(_mean(part, 'actor/entropy'))} nats (min {bounds.h_min:.2f})",
                    "The policy became near-deterministic before it learned to win. Raise eta (try 1e-3, "
                    "3e-3 with `hockey-agent ablate`), check that S is not tiny (floor must be max(1, S)), "
                    "and check the advantages are not huge (actor/adv_abs).",
                )
            )
            break

    late = parts["late"]
    rand, adv = _mean(late, "actor/rand"), _mean(late, "actor/adv_abs")
    if late and rand > STUCK_RAND and adv < TINY_ADV:
        flags.append(
            Flag(
                "entropy_stuck_max",
                "Entropy stuck near its maximum with no learning signal",
                f"late phase: mean rand {_fmt(rand)} (flag above {STUCK_RAND}) while mean |advantage| is "
                f"{_fmt(adv)} (flag below {TINY_ADV})",
                "The actor sees no advantage, so only the entropy bonus moves it. The reward is too "
                "sparse for the horizon: use a shaped reward or an easier mode (shooting, curriculum), "
                "check the reward head learns (wm/rew falling), or lower eta.",
            )
        )

    floor = series(late_half, "ret/at_floor")
    floor = floor[np.isfinite(floor)]
    if floor.size and floor.mean() >= FLOOR_SHARE:
        flags.append(
            Flag(
                "s_at_floor",
                "Return scale S pinned at its floor",
                f"S < 1 in {floor.mean():.0%} of the second half's updates (flag at {FLOOR_SHARE:.0%}); "
                f"median S {_fmt(float(np.nanmedian(series(late_half, 'ret/scale'))))}",
                "Returns span less than 1, so advantages are not rescaled and stay small next to the "
                "entropy term. Normal before the first goals; if it lasts, the agent rarely scores: use "
                "an easier mode or opponent. Do not lower the floor (1 is the official value).",
            )
        )

    q05, q95 = series(late_half, "actor/std_q05"), series(late_half, "actor/std_q95")
    if q95.size and np.mean(q95 <= bounds.collapse_std) >= PINNED_SHARE:
        flags.append(
            Flag(
                "std_at_min",
                "Action std pinned at its lower bound",
                f"std_q95 <= {bounds.collapse_std:.3g} in {np.mean(q95 <= bounds.collapse_std):.0%} "
                "of the second half's updates",
                f"All dimensions sit at std {bounds.min_std:g}: exploration in the real game is gone. Raise eta or "
                "check the advantage scale.",
            )
        )
    if q05.size and np.mean(q05 >= 0.99 * bounds.max_std) >= PINNED_SHARE:
        flags.append(
            Flag(
                "std_at_max",
                "Action std pinned at its upper bound",
                f"std_q05 >= {0.99 * bounds.max_std:.2f} in {np.mean(q05 >= 0.99 * bounds.max_std):.0%} "
                "of the second half's updates",
                "Every dimension is as random as it can be: the actor ignores the advantages. Look at "
                "actor/adv_abs and ret/at_floor; lower eta if the advantage is healthy.",
            )
        )

    sat, std50 = _mean(late_half, "actor/saturation"), _mean(late_half, "actor/std_q50")
    limit = max(SATURATION_MIN, centred_saturation(std50) + SATURATION_EXCESS) if math.isfinite(std50) else 1.0
    if sat > limit:
        flags.append(
            Flag(
                "saturation",
                "Actions saturated",
                f"{sat:.0%} of imagined actions have |a| > 0.99 in some dimension in the second half; "
                f"a centred policy at its median std {std50:.2f} gives {centred_saturation(std50):.0%} "
                f"(flag above {limit:.0%})",
                "Bang-bang control: the means sit at +-1 (the environment clips). It can be the task's "
                "optimum (full force ahead), but it also hides exploration in the clipped dimensions: "
                "watch a game (`hockey-agent play RUN_DIR still -n 1 --render game.gif`). A TanhNormal "
                "with a wide pre-tanh std gives the same picture; prefer bounded_normal.",
            )
        )

    watched = {k for r in upd for k in r if k.endswith("loss") or k.endswith("grad_norm")} | set(GROWING)
    for key in sorted(k for k in watched if any(k in r for r in upd)):
        values = series(upd, key)
        bad = int(np.sum(~np.isfinite(values)))
        if bad:
            first = next(r["update"] for r in upd if key in r and not math.isfinite(float(r[key])))
            flags.append(
                Flag(
                    "nonfinite_loss",
                    f"Non-finite {key}",
                    f"{bad} rows with NaN/inf, first at update {first}",
                    "Lower the learning rate, check gradient clipping and the inputs (symlog), and "
                    "resume from the last finite checkpoint.",
                )
            )
        elif key in GROWING:
            grew, evidence = _growing(values)
            if grew:
                flags.append(
                    Flag(
                        "growing_loss",
                        f"Growing {key}",
                        evidence,
                        "A loss that should fall is rising: lower the learning rate, check the replay "
                        "(train ratio too high overfits), and look at the grad norms.",
                    )
                )
    return flags


def healthy_ranges(bounds: Bounds = OFFICIAL) -> list[tuple[str, str]]:
    lo, hi = bounds.min_std, bounds.max_std
    common = [
        ("ret/at_floor", "share of updates with S < 1: high before the first goals, falling after"),
        ("actor/adv_abs", "mean |normalised advantage|; tiny (< 0.05) with rand ~1 means no signal"),
        (
            "explore/bonus",
            "only with explore.scale > 0: ensemble disagreement per imagined step, "
            "falling as the world model learns the states it visits; scale x bonus is added to the reward",
        ),
    ]
    if bounds.discrete:
        return [
            (
                "actor/entropy",
                f"[{bounds.h_min:.2f}, {bounds.h_max:.2f}] nats, the categoricals' entropies summed "
                f"({bounds.action_set}; the upper end is the uniform policy, unimix keeps it above 0)",
            ),
            ("actor/rand", "[0, 1], entropy / the uniform policy's; starts near 1; near 0 before it wins is collapse"),
            *common,
        ]
    return [
        (
            "actor/entropy",
            f"[{bounds.h_min:.2f}, {bounds.h_max:.2f}] nats for 4 dims, std in [{lo:g}, {hi:g}] "
            f"(per dim [{bounds.h_min / ACT_DIM:.3f}, {bounds.h_max / ACT_DIM:.3f}]). "
            "NEGATIVE ENTROPY IS NORMAL: differential entropy has no floor at 0; it is negative for "
            "std < 0.242 and the bonus still pushes std up.",
        ),
        (
            "actor/rand",
            "[0, 1]; starts at 0.95 (initial std 0.89), falls as the agent learns; near 0 before it wins is collapse",
        ),
        ("actor/std_q05..q95", f"inside [{lo:g}, {hi:g}]; all at {lo:g} or all at {hi:g} is pinned"),
        common[0],
        common[1],
        (
            "actor/saturation",
            f"{centred_saturation(hi):.0%} at std {hi:g} with centred means (from the std alone); "
            f"more than {SATURATION_EXCESS:.0%} above what the std explains "
            f"(at least {SATURATION_MIN:.0%}) is bang-bang",
        ),
        common[2],
    ]


def report(run_dir: str | Path) -> list[Flag]:
    """Print the rich report for a run and return its flags."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    rows = read_rows(run_dir)
    upd = update_rows(rows)
    console = Console()
    if not upd:
        raise ValueError(f"{run_dir} has no update rows in its metrics yet")
    console.print(
        f"[bold]{run_dir}[/]: {len(upd)} update rows, up to env step {upd[-1]['step']}, update {upd[-1]['update']}"
    )
    bounds = Bounds.of_run(run_dir)
    ranges = Table(title=f"Healthy ranges (this run's actor: {bounds.describe()})", show_lines=False)
    ranges.add_column("metric")
    ranges.add_column("healthy")
    for k, v in healthy_ranges(bounds):
        ranges.add_row(k, v)
    console.print(ranges)

    table = Table(title="Per phase (thirds of the logged updates)")
    cols = [
        "phase",
        "steps",
        "entropy",
        "rand",
        "std_q50",
        "at_floor",
        "adv_abs",
        "saturation",
        "pg_term",
        "ent_term",
        "win_rate",
    ]
    per_phase = phase_table(rows)
    # shares of the defense drill rounds lost and of the shooting drill rounds won (train --drills), when played
    cols += [c for c in ("drill_lost", "drill_scored") if any(math.isfinite(row[c]) for row in per_phase)]
    for c in cols:
        table.add_column(c, justify="right")
    for row in per_phase:
        table.add_row(*[row[c] if isinstance(row[c], str) else _fmt(row[c]) for c in cols])
    console.print(table)

    steps = step_table(rows)
    if steps:
        per_step = Table(
            title="Per imagined step (mean over updates): the entropy bonus of step k is "
            "weighted by weight[k]; their sum is the bonus's total weight"
        )
        per_step.add_column("k", justify="right")
        for s in steps:
            per_step.add_column(str(s["k"]), justify="right")
        per_step.add_row("weight", *[f"{s['weight']:.3f}" for s in steps])
        per_step.add_row("entropy", *[f"{s['entropy']:.2f}" for s in steps])
        console.print(per_step)
        console.print(f"sum of weights {sum(s['weight'] for s in steps):.2f} over {len(steps)} steps")

    flags = find_flags(rows, bounds)
    if not flags:
        console.print("[green]No red flags found.[/]")
    for f in flags:
        console.print(
            Panel(
                f"[bold]Evidence:[/] {f.evidence}\n[bold]Try:[/] {f.advice}",
                title=f"[red]{f.title}[/]",
                title_align="left",
            )
        )
    return flags


def write_csv(run_dir: str | Path, out: str | Path) -> Path:
    """The update rows' scalar metrics as CSV (one row per logged update row), plus
    train/win_rate and every eval/<opponent>/<result> the run logged.

    Those extra columns hold the last episode or eval row at or before the row's step
    (nan before the first), so the learning curve sits beside the entropy curves.
    """
    import csv

    rows = read_rows(run_dir)
    upd = update_rows(rows)
    if not upd:
        raise ValueError(f"{run_dir} has no update rows in its metrics yet")
    keys = list(dict.fromkeys(k for r in upd for k, v in r.items() if k != "kind" and not isinstance(v, list)))
    evals = [r for r in rows if r.get("kind") == "eval"]
    extra = ["train/win_rate", *sorted({k for r in evals for k in r if k.startswith("eval/")})]
    # (step, values) of the rows that feed the extra columns, in step order
    feeds = [(r["step"], {"train/win_rate": r["train/win_rate"]}) for r in rows if r.get("kind") == "episode"]
    feeds += [(r["step"], {k: v for k, v in r.items() if k.startswith("eval/")}) for r in evals]
    feeds.sort(key=lambda f: f[0])
    out = Path(out)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*keys, *extra])
        j, latest = 0, dict.fromkeys(extra, float("nan"))
        for r in upd:
            while j < len(feeds) and feeds[j][0] <= r["step"]:
                latest.update(feeds[j][1])
                j += 1
            writer.writerow([r.get(k, "") for k in keys] + [latest[k] for k in extra])
    return out


def _episode_x_y(rows: list[dict[str, Any]], kind: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    picked = [r for r in rows if r.get("kind") == kind and key in r]
    return np.array([r["step"] for r in picked]), np.array([float(r[key]) for r in picked])


def plot(run_dir: str | Path, out: str | Path) -> Path:
    """Draw the key curves of a run into one PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(run_dir)
    upd = update_rows(rows)
    if not upd:
        raise ValueError(f"{run_dir} has no update rows in its metrics yet")
    x = np.array([r["step"] for r in upd])
    fig, axes = plt.subplots(3, 3, figsize=(15, 11))
    ax = axes.ravel()

    def line(a: Any, key: str, label: str | None = None) -> None:
        a.plot(x, [float(r.get(key, np.nan)) for r in upd], label=label or key, lw=1)

    line(ax[0], "actor/entropy")
    bounds = Bounds.of_run(run_dir)
    ax[0].axhline(bounds.h_min, color="grey", ls="--", lw=0.8)
    ax[0].axhline(bounds.h_max, color="grey", ls="--", lw=0.8)
    ax[0].axhline(0, color="black", lw=0.5)
    ax[0].set_title("entropy (nats; dashed = bounds, negative is normal)")
    line(ax[1], "actor/rand")
    ax[1].set_ylim(-0.02, 1.02)
    ax[1].set_title("rand (normalised entropy)")
    for q in ("q05", "q50", "q95"):
        line(ax[2], f"actor/std_{q}", q)
    ax[2].set_ylim(0, 1.05)
    ax[2].set_title("action std quantiles")
    line(ax[3], "ret/scale", "S")
    ax[3].set_yscale("symlog", linthresh=1)
    ax[3].axhline(1, color="grey", ls="--", lw=0.8)
    twin = ax[3].twinx()
    twin.plot(x, [float(r.get("ret/at_floor", np.nan)) for r in upd], color="tab:red", lw=0.8, alpha=0.6)
    twin.set_ylim(-0.02, 1.02)
    ax[3].set_title("S (blue) and floor share (red)")
    line(ax[4], "actor/adv_abs")
    ax[4].set_title("mean |normalised advantage|")
    for k in ("wm/loss", "wm/rec", "wm/rew", "wm/kl"):
        line(ax[5], k)
    ax[5].set_yscale("log")
    ax[5].set_title("world model losses")
    for k in ("actor/loss", "critic/loss"):
        line(ax[6], k)
    ax[6].set_title("actor and critic losses")
    line(ax[7], "actor/saturation")
    ax[7].set_ylim(-0.02, 1.02)
    ax[7].set_title("saturated action share")
    sx, sy = _episode_x_y(rows, "episode", "train/win_rate")
    if sx.size:
        ax[8].plot(sx, sy, label="train (recent)", lw=1)
    for shooting, counted, label in ((False, -1, "defense drills lost"), (True, 1, "shooting drills scored")):
        drills = [r for r in rows if r.get("kind") == "drill" and _shooting(r) == shooting]
        if len(drills) >= DRILL_WINDOW:
            share = (
                np.convolve([r["train/drill_outcome"] == counted for r in drills], np.ones(DRILL_WINDOW), "valid")
                / DRILL_WINDOW
            )
            ax[8].plot(
                [r["step"] for r in drills[DRILL_WINDOW - 1 :]], share, label=f"{label} (last {DRILL_WINDOW})", lw=1
            )
    for key in sorted({k for r in rows if r.get("kind") == "eval" for k in r if k.endswith("/win")}):
        ex, ey = _episode_x_y(rows, "eval", key)
        ax[8].plot(ex, ey, marker="o", label=key)
    ax[8].set_ylim(-0.02, 1.02)
    ax[8].set_title("win rate")
    for a in ax:
        a.set_xlabel("env steps")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
