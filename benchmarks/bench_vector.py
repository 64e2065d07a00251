"""Steps per second of VectorHockey: n games, weak scripted opponents, random learner actions.

Run by hand: `python benchmarks/bench_vector.py [--steps 4000] [--sizes 1 8 32]`.
Prints env steps per second (summed over the n games) by wall clock and by this
process's CPU time (the second is steadier on a shared machine), and the wall time of
one batched step. Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from agent.training.envs import RewardConfig, VectorHockey


def measure(n: int, steps: int, seed: int = 0) -> tuple[float, float, float]:
    """(env steps/s by wall clock, by CPU time, wall seconds per batched step) over `steps` batched steps."""
    vec = VectorHockey(n, "weak", mode="normal", reward=RewardConfig("shaped"), seed=seed)
    vec.reset()
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.0, 1.0, (steps, n, 4))
    for t in range(min(50, steps)):  # warm up
        vec.step(actions[t])
    start, cpu_start = time.perf_counter(), time.process_time()
    for t in range(steps):
        vec.step(actions[t])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return n * steps / elapsed, n * steps / cpu, elapsed / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="env steps per size, split over the games")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32], help="numbers of games")
    args = parser.parse_args()
    print(f"{'games':>6} {'steps/s wall':>13} {'steps/s cpu':>12} {'ms / batch step':>16}")
    for n in args.sizes:
        rate, cpu_rate, per_step = measure(n, max(1, args.steps // n))
        print(f"{n:>6} {rate:>13.0f} {cpu_rate:>12.0f} {per_step * 1e3:>16.3f}")


if __name__ == "__main__":
    main()
