"""diagnose: each red flag fires on a crafted series and none fires on a healthy one."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from agent.training import diagnose as diag
from agent.training.metrics import MetricsLogger, read_rows

N = 90


def _healthy(i: int) -> dict[str, float]:
    """A run that learns: rand falls from 0.9 to 0.5, S leaves its floor, losses fall."""
    f = i / (N - 1)
    rand = 0.9 - 0.4 * f
    std = 0.1 + 0.9 * rand
    return {
        "actor/entropy": diag.H_MIN + rand * (diag.H_MAX - diag.H_MIN),
        "actor/rand": rand,
        "actor/std_q05": std * 0.8,
        "actor/std_q50": std,
        "actor/std_q95": min(1.0, std * 1.1),
        "actor/saturation": 0.3,
        "actor/adv_abs": 0.4,
        "ret/scale": 0.5 + 10 * f,
        "ret/at_floor": float(f < 0.2),
        "wm/loss": 5.0 / (1 + 5 * f),
        "wm/rec": 2.0 / (1 + 5 * f),
        "critic/loss": 3.0 + 0.5 * math.sin(i),
        "actor/loss": -0.1 * f,
        "wm/grad_norm": 10.0,
        "actor/entropy_step": [0.5] * 15,
    }


def _rows(change: dict[str, object] | None = None, late_only: bool = False) -> list[dict]:
    rows = []
    for i in range(N):
        row = {"kind": "update", "step": 100 * i, "update": 10 * i, "time": float(i), **_healthy(i)}
        if change and (not late_only or i >= N // 2):
            row.update({k: (v(i) if callable(v) else v) for k, v in change.items()})
        rows.append(row)
    return rows


def _names(rows: list[dict]) -> set[str]:
    return {f.name for f in diag.find_flags(rows)}


def test_healthy_run_has_no_flags() -> None:
    assert _names(_rows()) == set()


@pytest.mark.parametrize(
    "change,late_only,name",
    [
        ({"actor/rand": 0.01, "actor/std_q50": 0.1}, False, "entropy_collapse"),
        ({"actor/rand": 0.99, "actor/adv_abs": 0.001}, True, "entropy_stuck_max"),
        ({"ret/at_floor": 1.0, "ret/scale": 0.2}, False, "s_at_floor"),
        ({"actor/std_q95": 0.1, "actor/std_q50": 0.1, "actor/std_q05": 0.1}, True, "std_at_min"),
        ({"actor/std_q05": 1.0, "actor/std_q50": 1.0, "actor/std_q95": 1.0}, True, "std_at_max"),
        ({"actor/saturation": 0.97}, True, "saturation"),
        ({"wm/loss": lambda i: 1.0 + 0.01 * i**2}, False, "growing_loss"),
        ({"critic/loss": lambda i: float("nan") if i == 70 else 3.0}, False, "nonfinite_loss"),
    ],
)
def test_each_flag_fires_on_its_series(change: dict, late_only: bool, name: str) -> None:
    assert name in _names(_rows(change, late_only))


def test_collapse_needs_early_or_mid_phase() -> None:
    # a policy that becomes sharp only in the last third (after learning) is not a collapse
    late = _rows()
    for r in late[2 * N // 3 :]:
        r["actor/rand"] = 0.01
    assert "entropy_collapse" not in _names(late)


def test_phase_table_splits_in_thirds() -> None:
    table = diag.phase_table(_rows())
    assert [t["phase"] for t in table] == ["early", "mid", "late"]
    assert table[0]["rand"] > table[1]["rand"] > table[2]["rand"]
    assert table[0]["steps"] == "0-2900"


def test_phase_table_reports_lost_drills_when_the_run_had_them(tmp_path: Path) -> None:
    from agent.cli.diagnose import diagnose

    rows = _rows()
    assert all(np.isnan(t["drill_lost"]) for t in diag.phase_table(rows))
    drills = [
        {
            "kind": "drill",
            "step": 100 * i + 50,
            "update": 0,
            "time": 0.0,  # early phase: steps 0-2900
            "train/drill_outcome": -1 if i < 29 else (0 if i % 2 else 1),
        }
        for i in range(89)
    ]
    table = diag.phase_table(rows + drills)
    assert [t["drill_lost"] for t in table] == [1.0, 0.0, 0.0]
    run = _write_run(tmp_path, rows)
    log = MetricsLogger(run, log_every=1, tensorboard=False, resume_step=rows[-1]["step"])
    for r in drills:
        log.log_row("drill", r["step"], 0, 0.0, {"train/drill_outcome": r["train/drill_outcome"]})
    log.close()
    res = CliRunner().invoke(diagnose, [str(run), "--plot", str(tmp_path / "d.png")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "drill_lost" in res.output and "drill_scored" not in res.output
    assert (tmp_path / "d.png").stat().st_size > 0


def test_shooting_drills_are_counted_by_goals_scored_not_rounds_lost() -> None:
    drills = [
        {
            "kind": "drill",
            "step": 100 * i + 50,
            "update": 0,
            "time": 0.0,
            "train/drill_shooting": float(i % 2),
            "train/drill_outcome": 1 if i % 2 else -1,
        }
        for i in range(29)
    ]
    early = diag.phase_table(_rows() + drills)[0]
    assert early["drill_lost"] == 1.0 and early["drill_scored"] == 1.0  # defense all lost, shooting all scored


def test_healthy_ranges_say_negative_entropy_is_normal() -> None:
    text = " ".join(v for _, v in diag.healthy_ranges())
    assert "NEGATIVE ENTROPY IS NORMAL" in text
    assert f"{diag.H_MIN:.2f}" == "-3.53" and f"{diag.H_MAX:.2f}" == "5.68"


def _write_run(tmp_path: Path, rows: list[dict]) -> Path:
    run = tmp_path / "run"
    log = MetricsLogger(run, log_every=1, tensorboard=False)
    for r in rows:
        log.log_update(
            r["step"],
            r["update"],
            r["time"],
            {k: v for k, v in r.items() if k not in ("kind", "step", "update", "time")},
        )
    log.log_row("episode", rows[-1]["step"], rows[-1]["update"], 1.0, {"train/win_rate": 0.25})
    mid = rows[len(rows) // 2]
    log.log_row("eval", mid["step"], mid["update"], 1.0, {"eval/still/win": 0.5, "eval/still/loss": 0.1})
    log.close()
    return run


def test_logger_round_trip_and_nan(tmp_path: Path) -> None:
    rows = _rows({"critic/loss": lambda i: float("nan") if i == 70 else 3.0})
    back = read_rows(_write_run(tmp_path, rows))
    upd = diag.update_rows(back)
    assert len(upd) == N and math.isnan(upd[70]["critic/loss"])
    assert upd[3]["actor/entropy_step"] == [0.5] * 15
    assert back[-2]["kind"] == "episode" and back[-1]["kind"] == "eval"


def test_logger_means_over_log_every(tmp_path: Path) -> None:
    log = MetricsLogger(tmp_path, log_every=4, tensorboard=False)
    for u in range(10):
        log.log_update(u, u, 0.0, {"a": float(u), "l": [u, 2 * u]})
    log.flush_updates(10, 10, 0.0)
    log.close()
    rows = read_rows(tmp_path)
    assert [r["a"] for r in rows] == [1.5, 5.5, 8.5]
    assert [r["n_updates"] for r in rows] == [4, 4, 2]
    assert rows[0]["l"] == [1.5, 3.0]


def test_logger_resume_drops_rows_after_checkpoint(tmp_path: Path) -> None:
    log = MetricsLogger(tmp_path, tensorboard=False)
    for u in range(6):
        log.log_update(10 * u, u, 0.0, {"a": 1.0})
    log.close()
    MetricsLogger(tmp_path, resume_step=20, tensorboard=False).close()
    assert [r["step"] for r in read_rows(tmp_path)] == [0, 10, 20]


def test_cli_report_and_plot(tmp_path: Path) -> None:
    from agent.cli.diagnose import diagnose

    run = _write_run(tmp_path, _rows({"ret/at_floor": 1.0}))
    out = tmp_path / "d.png"
    res = CliRunner().invoke(
        diagnose, [str(run), "--plot", str(out), "--csv", str(tmp_path / "c.csv")], terminal_width=200
    )
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert len(lines) == N + 1 and lines[0].startswith("step,update,time,n_updates,")
    header = lines[0].split(",")
    assert header[-3:] == ["train/win_rate", "eval/still/loss", "eval/still/win"]
    assert lines[-1].endswith(",0.25,0.1,0.5") and lines[1].endswith(",nan,nan,nan")
    half = [line.split(",")[-1] for line in lines[1:]]
    assert half.index("0.5") == N // 2  # the eval value appears at its own step, not before
    assert "pinned at its floor" in res.output and "NEGATIVE ENTROPY IS NORMAL" in res.output
    assert out.stat().st_size > 10_000
    res = CliRunner().invoke(diagnose, [str(tmp_path)])
    assert res.exit_code != 0 and "no metrics.jsonl" in res.output


def test_step_table_averages_the_per_step_lists() -> None:
    rows = _rows({"actor/weight_step": [1.0, 0.5, 0.25], "actor/entropy_step": [2.0, 1.0, 0.0]})
    rows[0]["actor/weight_step"] = [0.0, 0.5, 0.25 + N]  # one row off: the mean moves by 1/N
    table = diag.step_table(rows)
    assert [t["k"] for t in table] == [0, 1, 2]
    assert table[0]["weight"] == pytest.approx(1 - 1 / N) and table[2]["weight"] == pytest.approx(1.25)
    assert table[1]["entropy"] == pytest.approx(1.0)


def test_a_growing_reconstruction_loss_is_flagged() -> None:
    flags = diag.find_flags(_rows({"wm/rec": lambda i: 0.5 + 0.1 * i}))
    assert [f.title for f in flags if f.name == "growing_loss"] == ["Growing wm/rec"]


def test_bounds_come_from_the_run_config(tmp_path: Path) -> None:
    """A run whose std floor is 0.3 collapses at std 0.3, which the official bounds call healthy."""
    from agent.config import make_config, save_config

    pinned = {"actor/std_q50": 0.3, "actor/std_q95": 0.31, "actor/rand": 0.3}
    assert _names(_rows(pinned)) == set()
    save_config(make_config("tiny", ["actor.min_std=0.3"]), tmp_path / "config.json")
    bounds = diag.Bounds.of_run(tmp_path)
    assert bounds.min_std == 0.3 and bounds.h_min > diag.H_MIN
    assert {f.name for f in diag.find_flags(_rows(pinned), bounds)} >= {"entropy_collapse", "std_at_min"}
    assert "inside [0.3, 1]" in " ".join(v for _, v in diag.healthy_ranges(bounds))
    assert diag.Bounds.of_run(tmp_path / "no-config") == diag.OFFICIAL


def test_a_discrete_run_has_categorical_entropy_bounds_and_no_std_flags(tmp_path: Path) -> None:
    from agent.config import make_config, save_config

    rows = _rows()
    for row in rows:  # a discrete run logs no std quantiles or saturation
        for key in ("actor/std_q05", "actor/std_q50", "actor/std_q95", "actor/saturation"):
            del row[key]
        row["actor/entropy"] = row["actor/rand"] * math.log(25)
    run = _write_run(tmp_path, rows)
    save_config(make_config("tiny", ["actor.dist=discrete", "actor.action_set=joint25"]), run / "config.json")
    bounds = diag.Bounds.of_run(run)
    assert bounds.discrete and (bounds.h_min, bounds.h_max) == (0.0, pytest.approx(math.log(25)))
    ranges = dict(diag.healthy_ranges(bounds))
    assert "actor/std_q05..q95" not in ranges and "actor/saturation" not in ranges
    assert f"[0.00, {math.log(25):.2f}] nats" in ranges["actor/entropy"]
    # no flag reads the missing keys; collapse reads rand
    assert {f.name for f in diag.find_flags(rows, bounds)} == set()
    collapsed = [{**row, "actor/rand": 0.01} for row in rows]
    (flag,) = diag.find_flags(collapsed, bounds)
    assert flag.name == "entropy_collapse" and "std" not in flag.evidence
    from agent.cli.diagnose import diagnose

    res = CliRunner().invoke(diagnose, [str(run)], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "this run's actor: discrete joint25" in res.output and "No red flags" in res.output
