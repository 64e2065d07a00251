"""Throughput of the whole training loop per preset: env steps/s and updates/s.

Runs the real Trainer (collection with the stochastic policy, replay, updates,
metrics) for a fixed number of env steps after a short prefill and prints one table
row per preset. Usage:

    python benchmarks/bench_train.py --presets tiny,small --steps 400 --threads 2

Figures depend heavily on the machine and its load; run on an idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch


def bench(preset: str, steps: int, device: str, extra: list[str] = ()) -> dict[str, float]:
    from agent.config import make_config
    from agent.training.trainer import Trainer

    base = make_config(preset)
    warm = base.train.seq_len * base.train.envs  # prefill: just enough rows for the first batch
    cfg = make_config(
        preset,
        [
            f"train.steps={steps + warm}",
            "train.opponent=weak",
            "train.mode=normal",
            f"train.prefill={warm}",
            "train.eval_every=0",
            "train.checkpoint_every=0",
            "train.replay_capacity=100000",
            f"train.device={device}",
            *extra,
        ],
    )
    with tempfile.TemporaryDirectory() as run:
        tr = Trainer(cfg, run, progress=False, tensorboard=False)
        while tr.env_steps < warm:
            tr.collect()
        t0 = time.perf_counter()
        collect_time = 0.0
        steps0, updates0 = tr.env_steps, tr.updates
        while tr.env_steps < steps0 + steps:
            c0 = time.perf_counter()
            tr.collect()
            collect_time += time.perf_counter() - c0
            for _ in range(tr.updates_due()):
                tr._update()  # as the loop does: metrics stay on the device until a row is written
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        total = time.perf_counter() - t0
        tr.close()
    env_steps = tr.env_steps - steps0
    updates = tr.updates - updates0
    return {
        "env_steps_s": env_steps / total,
        "updates_s": updates / total,  # the whole loop (on a GPU, collection waits for the queued updates)
        "collect_env_steps_s": env_steps / collect_time,
        "updates": updates,
        "seconds": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--steps", type=int, default=400, help="measured env steps per preset")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}, {args.steps} env steps each")
    print(f"extra settings: {' '.join(args.extra) or 'none'}")
    print(f"{'preset':8} {'env steps/s':>12} {'updates/s':>10} {'collect only':>13} {'updates':>8} {'seconds':>8}")
    print("(updates/s: of the whole loop; collect only: env steps/s of the collection alone)")
    for preset in args.presets.split(","):
        r = bench(preset.strip(), args.steps, args.device, args.extra)
        print(
            f"{preset:8} {r['env_steps_s']:12.1f} {r['updates_s']:10.2f} {r['collect_env_steps_s']:13.1f} "
            f"{r['updates']:8d} {r['seconds']:8.1f}"
        )


if __name__ == "__main__":
    main()
