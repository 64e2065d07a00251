"""Updates/s of `hockey-agent train` run as a user runs it, for one checkout or two side by side.

Starts `python -m agent.cli train --preset P --opponent O ...` in a fresh run directory
with a clean environment (no OMP_* or thread variables: what a user gets), lets it run
the prefill and then `--updates` updates, and reads the rate of the whole loop
(collection, replay, updates, logging) from the update rows of its metrics.jsonl: the
prefill and the process start are outside the measured window. Runs alternate A B A B
when `--compare DIR` names a second checkout (for example the code before a change,
`git worktree add ../base <rev>`), so a noisy machine hits both alike.

    python benchmarks/bench_train_cli.py --updates 200 --repeat 2 --compare ../base

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLEAN = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "MKL_NUM_THREADS", "KMP_BLOCKTIME")


def run_once(repo: Path, preset: str, opponent: str, updates: int, extra: list[str]) -> dict[str, float]:
    """One training run in `repo`; the loop's updates/s and env steps/s after the prefill."""
    from agent.config import make_config

    cfg = make_config(preset)
    per_update = cfg.train.batch_size * cfg.train.seq_len / cfg.train.train_ratio  # env steps per update
    steps = cfg.train.prefill + int(updates * per_update) + cfg.train.envs
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env["PYTHONPATH"] = str(repo)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [
            sys.executable, "-m", "agent.cli", "train", "--preset", preset, "--opponent", opponent,
            "--steps", str(steps), "--run-dir", str(run_dir),
            "--set", "train.eval_every=0", "--set", "train.log_every=10", *extra,
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{repo}: the run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    upd = [r for r in rows if r.get("kind") == "update"]
    first, last = upd[0], upd[-1]
    seconds = last["time"] - first["time"]
    return {
        "updates_s": (last["update"] - first["update"]) / seconds,
        "env_steps_s": (last["step"] - first["step"]) / seconds,
        "updates": last["update"],
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1], help="checkout A")
    parser.add_argument("--compare", type=Path, default=None, help="checkout B, run alternately with A")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--opponent", default="weak")
    parser.add_argument("--updates", type=int, default=200, help="updates after the prefill, per run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra --set for checkout A")
    args = parser.parse_args()
    repos = [("A", args.repo.resolve())] + ([("B", args.compare.resolve())] if args.compare else [])
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in repos}
    for i in range(args.repeat):
        for name, repo in repos:
            extra = [x for s in args.extra for x in ("--set", s)] if name == "A" else []
            r = run_once(repo, args.preset, args.opponent, args.updates, extra)
            results[name].append(r)
            print(
                f"run {i + 1} {name} ({repo.name}): {r['updates_s']:.2f} updates/s, "
                f"{r['env_steps_s']:.2f} env steps/s, "
                f"{r['updates']} updates, {r['wall_s']:.0f} s",
                flush=True,
            )
    for name, repo in repos:
        ups = [r["updates_s"] for r in results[name]]
        runs = ", ".join(f"{u:.2f}" for u in ups)
        print(f"{name} {repo}: median {statistics.median(ups):.2f} updates/s (runs {runs})")
    if args.compare:
        ratio = statistics.median(r["updates_s"] for r in results["A"]) / statistics.median(
            r["updates_s"] for r in results["B"]
        )
        print(f"A / B: {ratio:.2f}x")


if __name__ == "__main__":
    main()
