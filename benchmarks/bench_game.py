"""Game speed: steps per second with two strong scripted players (target >= 10,000).

Run by hand: `python benchmarks/bench_game.py [--steps N] [--repeats R] [--profile]`.
Prints the best of R runs (the least disturbed by other processes), for the full
loop (both players act, then the game steps) and for the game alone (fixed actions),
per wall-clock second and per second of this process's CPU time (the second figure
is the steadier one on a shared machine).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np

from agent.game import BasicOpponent, HockeyEnv


def _rates(steps: int, wall_start: float, cpu_start: float) -> tuple[float, float]:
    return steps / (time.perf_counter() - wall_start), steps / (time.process_time() - cpu_start)


def run_scripted(steps: int, seed: int = 0) -> tuple[float, float]:
    """Steps per wall and CPU second of the game driven by two strong BasicOpponents."""
    np.random.seed(seed)
    env = HockeyEnv()
    p1, p2 = BasicOpponent(weak=False), BasicOpponent(weak=False)
    obs, _ = env.reset(seed=seed)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        action = np.hstack([p1.act(obs), p2.act(env.obs_agent_two())])
        obs, _, done, _, _ = env.step(action)
        if done:
            obs, _ = env.reset()
    return _rates(steps, wall, cpu)


def run_game_only(steps: int, seed: int = 0) -> tuple[float, float]:
    """Steps per wall and CPU second of the game alone, with random fixed actions."""
    env = HockeyEnv()
    actions = np.random.default_rng(seed).uniform(-1, 1, size=(256, 8))
    env.reset(seed=seed)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(steps):
        if env.step(actions[i % 256])[2]:
            env.reset()
    return _rates(steps, wall, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the top functions of one scripted run")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be positive")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_scripted, args.steps)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    runs = (("two strong scripted players", run_scripted), ("game alone (fixed actions)", run_game_only))
    for name, run in runs:
        rates = [run(args.steps, seed) for seed in range(args.repeats)]
        wall, cpu = max(r[0] for r in rates), max(r[1] for r in rates)
        best = f"best of {args.repeats} x {args.steps}"
        print(f"{name:28s} {wall:8,.0f} steps/s wall, {cpu:8,.0f} steps/s CPU ({best})")


if __name__ == "__main__":
    main()
