"""How often the learning test's run passes, seed by seed: the test's margin, measured.

Each seed trains the tiny agent of tests/test_learning.py (shooting vs `still`, one
thread, its own process) and prints whether it has learned as the test counts it (its
better policy beats random play by SCORE_MARGIN in score and RETURN_MARGIN in the `mix`
return), then how many seeds learned. Usage:

    python benchmarks/learning_seeds.py --seeds 0-7 --workers 2
    python benchmarks/learning_seeds.py --seeds 0-3 --steps 2500 --device cuda

A run takes about as long as one seed of the test per worker-round (minutes on CPU).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_learning as learning  # noqa: E402


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-3"), help="e.g. 0-15 or 0,2,5")
    parser.add_argument("--steps", type=int, default=learning.STEPS, help="env steps per run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override on top of the test's configuration (repeatable)",
    )
    args = parser.parse_args()
    random_score, random_return = learning.random_score(), learning.random_return()
    print(
        f"random play scores {random_score:.3f} and returns {random_return:.2f}; a seed has learned at "
        f"{random_score + learning.SCORE_MARGIN:.3f} and {random_return + learning.RETURN_MARGIN:.2f}"
    )
    run = partial(learning.run_seed, steps=args.steps, device=args.device, overrides=tuple(args.overrides))
    start = time.perf_counter()
    bests, learned = [], 0
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for seed, result in zip(args.seeds, pool.map(run, args.seeds)):
            bests.append(max(result["deterministic"], result["stochastic"]))
            ok = learning.has_learned(result, random_score, random_return)
            learned += ok
            print(
                f"seed {seed:3d}: deterministic {result['deterministic']:.3f} stochastic {result['stochastic']:.3f} "
                f"return {result['deterministic return']:.1f} / {result['stochastic return']:.1f} "
                f"wm/loss {result['wm/loss first']:.2f} -> {result['wm/loss last']:.2f} learned {ok}",
                flush=True,
            )
    print(
        f"{learned} of {len(bests)} seeds learned (the test needs {learning.MIN_LEARNED} of {len(learning.SEEDS)}); "
        f"best score per seed: mean {sum(bests) / len(bests):.3f}, min {min(bests):.3f}, max {max(bests):.3f}; "
        f"{time.perf_counter() - start:.0f} s ({args.steps} env steps, {args.workers} workers, {args.device})"
    )


if __name__ == "__main__":
    main()
