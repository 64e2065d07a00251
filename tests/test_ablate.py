"""`hockey-agent ablate`: a grid with a --vary axis runs, summarises, plots and skips done runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner
from helpers import FAST

from agent.cli.ablate import ablate


def test_vary_axis_makes_one_run_per_value_and_rerun_skips(tmp_path: Path) -> None:
    out = tmp_path / "abl"
    args = [
        "--etas",
        "3e-4",
        "--seeds",
        "0",
        "--steps",
        "100",
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--vary",
        "explore.scale=0,0.1",
        "--device",
        "cpu",
        *[a for o in FAST for a in ("--set", o)],
    ]
    res = CliRunner().invoke(ablate, args)
    assert res.exit_code == 0, res.output
    names = ["eta0.0003-constant-scale0-s0", "eta0.0003-constant-scale0.1-s0"]
    for name, scale in zip(names, (0.0, 0.1)):
        assert json.loads((out / name / "config.json").read_text())["explore"]["scale"] == scale
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == names and all(int(r["steps"]) >= 64 for r in rows)
    assert rows[0]["explore_bonus_last_tenth"] == "" and float(rows[1]["explore_bonus_last_tenth"]) > 0
    assert (out / "ablation.png").stat().st_size > 0
    again = CliRunner().invoke(ablate, args)
    assert again.exit_code == 0 and again.output.count("already done") == 2


def test_vary_needs_values() -> None:
    res = CliRunner().invoke(ablate, ["--steps", "10", "--out", "x", "--vary", "explore.scale="])
    assert res.exit_code != 0 and "SECTION.FIELD=V1,V2" in res.output


def test_variants_run_one_change_each_to_an_update_budget_with_a_final_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "ab"
    args = [
        "--seeds", "0", "--steps", "100000", "--updates", "6", "--preset", "tiny", "--opponent", "weak",
        "--mode", "normal", "--out", str(out), "--device", "cpu", "--final-games", "2",
        "--variant", "base:", "--variant", "repval: critic.repval_scale=0.3 optim.name=laprop",
        *[a for o in FAST for a in ("--set", o)],
    ]  # fmt: skip
    res = CliRunner().invoke(ablate, args)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "repval-s0" / "config.json").read_text())["critic"]["repval_scale"] == 0.3
    with open(out / "summary.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"base-s0", "repval-s0"}
    for row in rows.values():
        assert int(row["updates"]) == 6 and int(row["steps"]) < 100000  # the update budget ended the run
        assert int(row["weak_rounds"]) == 8 and int(row["strong_rounds"]) == 8
        assert abs(sum(float(row[f"weak_{k}"]) for k in ("won", "drawn", "lost")) - 1.0) < 1e-9
        lo, hi = (float(x) for x in row["strong_won_ci"].split("-"))
        assert 0.0 <= lo <= float(row["strong_won"]) <= hi <= 1.0
    again = CliRunner().invoke(ablate, args)
    assert again.exit_code == 0 and again.output.count("already done") == 2


def test_bad_variants_are_clear_errors() -> None:
    res = CliRunner().invoke(ablate, ["--steps", "10", "--out", "x", "--variant", "no colon"])
    assert res.exit_code == 2 and "NAME: SECTION.FIELD=VALUE" in res.output
    res = CliRunner().invoke(ablate, ["--steps", "10", "--out", "x", "--variant", "a:", "--etas", "1e-3"])
    assert res.exit_code == 2 and "replaces --etas" in res.output
