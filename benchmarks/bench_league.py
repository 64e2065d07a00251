"""League evaluation throughput: games/s with 1 and 2 worker processes and local Ray,
and the scheduler's overhead per game against the game's own time.

Run by hand: `python benchmarks/bench_league.py [--games-per-pair 4] [--no-ray]`.
Every configuration plays the same round robin of scripted players (normal games,
4 rounds) on a fresh league in a temporary directory. Wall times include starting
the worker pool (spawn) but not starting Ray.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from league.db import LeagueDB, MatchRecord
from league.members import scripted_members
from league.runner import RunSummary, run_tasks
from league.schedule import round_robin

MEMBERS = ["still", "random", "weak", "strong"]


def _run(games_per_pair: int, workers: int, ray_address: str | None = None) -> tuple[RunSummary, float]:
    """One round robin on a fresh league; also returns this (parent) process's CPU seconds."""
    with tempfile.TemporaryDirectory() as directory, LeagueDB(directory, create=True) as db:
        db.start_with(scripted_members())
        tasks = round_robin(MEMBERS, {}, games_per_pair)
        cpu = time.process_time()
        summary = run_tasks(db, tasks, workers=workers, ray_address=ray_address, progress=False)
        return summary, time.process_time() - cpu


def _line(label: str, run: tuple[RunSummary, float]) -> float:
    """Print one configuration; returns its steady rate (first to last finished game)."""
    s, parent_cpu = run
    rate = s.played / s.wall_seconds
    finished = sorted(r.created for r in s.records)
    steady = (len(finished) - 1) / (finished[-1] - finished[0])
    print(
        f"{label:<22} {s.played:4d} games {s.wall_seconds:7.2f} s wall {rate:6.2f} games/s "
        f"(steady {steady:6.2f}, without start-up)  {s.game_seconds / s.played:6.3f} s/game in play_game  "
        f"parent CPU {1000 * parent_cpu / s.played:5.1f} ms/game"
    )
    return steady


def _db_ms_per_game(n_pairs_games: int = 50) -> float:
    """The database's share alone: one claim and one record transaction per game."""
    with tempfile.TemporaryDirectory() as directory, LeagueDB(directory, create=True) as db:
        db.start_with(scripted_members())
        tasks = round_robin(MEMBERS, {}, n_pairs_games)
        start = time.perf_counter()
        for t in tasks:
            db.claim(t.key)
            db.record(MatchRecord(t.key, t.player1, t.player2, t.seed, (0, 0, 0, 0), 0, 0, 0, 0.0, time.time()))
        return 1000 * (time.perf_counter() - start) / len(tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games-per-pair", type=int, default=4)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurement")
    args = parser.parse_args()

    import rich.progress  # noqa: F401

    import agent.players.match  # noqa: F401  (one-time imports are not per-game overhead)

    inline, inline_cpu = _run(args.games_per_pair, workers=0)
    _line("inline (workers=0)", (inline, inline_cpu))
    overhead = inline.wall_seconds - inline.game_seconds
    print(
        f"scheduler overhead: {1000 * overhead / inline.played:.1f} ms/game = "
        f"{100 * overhead / inline.game_seconds:.1f}% of game time (claim, build players, make the env, record)"
    )
    db_ms = _db_ms_per_game()
    print(
        f"  of which the database (claim + record): {db_ms:.2f} ms/game = "
        f"{100 * db_ms / (1000 * inline.game_seconds / inline.played):.1f}% of game time"
    )

    one = _line("1 worker process", _run(args.games_per_pair, workers=1))
    two = _line("2 worker processes", _run(args.games_per_pair, workers=2))
    print(f"speed-up with 2 workers (steady rates): {two / one:.2f}x")

    if args.no_ray:
        return
    try:
        import ray
    except ImportError:
        print("ray not installed: pip install 'hockey-agent[ray]'")
        return
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"ray.init (local, 2 CPUs): {time.perf_counter() - start:.1f} s")
    try:
        _line("local Ray, 2 CPUs", _run(args.games_per_pair, workers=2, ray_address="auto"))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
