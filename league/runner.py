"""Play scheduled matches in parallel and write each one as soon as it finishes.

Games run in worker processes (a spawn process pool by default, or Ray tasks on a
local or remote cluster, or inline with workers=0); workers only play and return
results, and the parent claims each match before handing it out and writes it the
moment it comes back, so an interrupt loses only the matches in flight (whose
claims it releases; a SIGKILL leaves claims that the next run takes over because
their process is gone).

A worker keeps the members it has loaded (ONNX sessions, checkpoints) in a small
cache, so it loads a learned member once, not once per game; the schedule lists a
pair's games together, so a worker meets the same pair again and again. Scripted
members are built afresh for every game from the match seed, which keeps their
random draws reproducible.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.players.policy import Policy
from league.db import DEFAULT_LEAGUE, LeagueDB, MatchRecord, RatingRow
from league.members import LeagueError, Member, load_policy, scripted_members
from league.ratings import bradley_terry, elo, openskill
from league.schedule import SCHEDULES, Task, round_robin, uncertain

CACHE_SIZE = 8
RAY_INSTALL = "pip install 'hockey-agent[ray]'"

_policy_cache: OrderedDict[tuple[str, str], Policy] = OrderedDict()  # per worker process: (name, spec) -> member


def default_workers() -> int:
    return os.cpu_count() or 1


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_POLL_S = 0.5


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:  # re-parented: the parent is gone
            os._exit(1)
        time.sleep(PARENT_POLL_S)


def _die_with_parent(parent: int, use_prctl: bool = True) -> None:
    """End this process when `parent` (the process that started it) dies, even by SIGKILL.

    A pool worker otherwise outlives a killed `league eval`: it waits on a queue whose
    other end it holds itself, so it never sees the parent go. On Linux the kernel sends
    SIGTERM at the parent's death (prctl PR_SET_PDEATHSIG); elsewhere, or if that call
    fails, a daemon thread polls the parent pid. A parent that died before this ran is
    caught by the pid check either way.
    """
    armed = False
    if use_prctl and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent", daemon=True).start()


def _init_worker(parent: int) -> None:
    """Tie the worker's life to the parent's, and keep it to one thread.

    One thread: the parallelism is across workers. Set before torch or onnxruntime is
    imported here (only if a learned member needs them), which read it at import.
    """
    _die_with_parent(parent)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _policy(member: Member, seed: int) -> Policy:
    if member.kind == "scripted":
        return load_policy(member, seed=seed)
    # keyed by name too: two members made from one file must not share a recurrent state
    key = (member.name, member.spec)
    cached = _policy_cache.get(key)
    if cached is None:
        cached = load_policy(member)
        _policy_cache[key] = cached
        while len(_policy_cache) > CACHE_SIZE:
            _policy_cache.popitem(last=False)
    else:
        _policy_cache.move_to_end(key)
    return cached


def play_task(task: Task, member1: Member, member2: Member) -> MatchRecord:
    """Play one scheduled match in this process (the worker side; picklable, spawn-safe)."""
    from agent.players.match import play_game

    seed1, seed2 = (int(s) for s in np.random.SeedSequence(task.seed).generate_state(2))
    result = play_game(_policy(member1, seed1), _policy(member2, seed2), seed=task.seed)
    return MatchRecord(
        key=task.key,
        player1=task.player1,
        player2=task.player2,
        seed=task.seed,
        rounds=tuple(int(r) for r in result.rounds),
        score1=int(result.score1),
        score2=int(result.score2),
        steps=int(result.steps),
        duration=float(result.duration),
        created=time.time(),
    )


class _InlineExecutor(cf.Executor):
    """Runs each task at submission, in this process (workers=0: debugging, tiny runs)."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class _RayExecutor(cf.Executor):
    """Submits games as Ray tasks; results come back as concurrent futures.

    Ray itself is left running afterwards (the inherited no-op shutdown): a cluster,
    or a caller's own ray.init, outlives one evaluation.
    """

    def __init__(self, address: str, workers: int) -> None:
        try:
            import ray
        except ImportError as exc:
            raise LeagueError(f"--ray needs Ray, which is not installed: {RAY_INSTALL}") from exc
        if not ray.is_initialized():
            if address == "auto":
                try:
                    ray.init(address="auto", log_to_driver=False)
                except ConnectionError:
                    ray.init(num_cpus=max(workers, 1), log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        self.slots = max(1, int(ray.cluster_resources().get("CPU", workers)))
        self._remote = ray.remote(num_cpus=1)(play_task)

    def submit(self, fn: Callable, /, *args, **kwargs) -> cf.Future:
        if fn is not play_task:
            raise ValueError("the Ray executor only plays league matches")
        return self._remote.remote(*args, **kwargs).future()


def _executor(workers: int, ray_address: str | None) -> tuple[cf.Executor, int]:
    """The executor and how many matches to keep in flight."""
    if ray_address:
        ray_exec = _RayExecutor(ray_address, workers)
        return ray_exec, 2 * ray_exec.slots
    if workers < 0:
        raise LeagueError(f"--workers must be >= 0 (0 plays in this process), got {workers}")
    if workers == 0:
        return _InlineExecutor(), 1
    import multiprocessing

    pool = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )
    return pool, 2 * workers


@dataclass
class RunSummary:
    """What one run did; `game_seconds` sums the games' own durations."""

    played: int = 0
    skipped: int = 0
    wall_seconds: float = 0.0
    game_seconds: float = 0.0
    records: list[MatchRecord] = field(default_factory=list)


def run_tasks(
    db: LeagueDB,
    tasks: Sequence[Task],
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool = True,
) -> RunSummary:
    """Claim, play and record `tasks`; matches another live process holds are skipped.

    Skipped matches are looked at once more at the end, in case their holder died
    meanwhile. A worker error stops the run with a LeagueError naming the match.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    workers = default_workers() if workers is None else workers
    members = {m.name: m for m in db.members()}
    for task in tasks:
        for name in (task.player1, task.player2):
            if name not in members:
                known = ", ".join(sorted(members))
                raise LeagueError(f"scheduled member {name!r} is not in the league; members: {known}")
    summary = RunSummary()
    start = time.perf_counter()
    pending = deque(tasks)
    skipped: list[Task] = []
    retried = False
    inflight: dict[cf.Future, Task] = {}
    executor, max_inflight = _executor(workers, ray_address)
    bar = Progress(
        TextColumn("league eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    )
    try:
        with bar:
            total = len(tasks)  # the bar counts the matches this run plays
            bar_id = bar.add_task("games", total=total, last="")
            while pending or inflight or (skipped and not retried):
                if not pending and not inflight:
                    pending, skipped, retried = deque(skipped), [], True
                while pending and len(inflight) < max_inflight:
                    task = pending.popleft()
                    if not db.claim(task.key):
                        skipped.append(task)
                        if not retried:
                            total -= 1
                            bar.update(bar_id, total=total)
                        continue
                    if retried:
                        total += 1
                        bar.update(bar_id, total=total)
                    inflight[executor.submit(play_task, task, members[task.player1], members[task.player2])] = task
                if not inflight:
                    continue
                done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    task = inflight[future]
                    try:
                        record = future.result()
                    except Exception as exc:  # its claim is released below with the others in flight
                        raise LeagueError(
                            f"match {task.player1} vs {task.player2} (game {task.key.game_index}) failed: "
                            f"{type(exc).__name__}: {exc}"
                        ) from exc
                    del inflight[future]
                    if db.record(record):
                        summary.played += 1
                        summary.game_seconds += record.duration
                        summary.records.append(record)
                    bar.update(
                        bar_id,
                        advance=1,
                        last=f"{record.player1} {record.score1}:{record.score2} {record.player2}",
                    )
    finally:
        db.release(task.key for task in inflight.values())
        executor.shutdown(wait=not inflight, cancel_futures=True)
    summary.skipped = len(skipped)
    summary.wall_seconds = time.perf_counter() - start
    return summary


def snapshot_ratings(db: LeagueDB, n_boot: int = 200) -> None:
    """Append the current Elo, Bradley-Terry and OpenSkill ratings to the history."""
    names = [m.name for m in db.members()]
    games = db.games()
    now = time.time()
    counts = {name: 0 for name in names}
    for g in games:
        counts[g.player1] += 1
        counts[g.player2] += 1
    bt = bradley_terry(games, names, n_boot=n_boot)
    rows = [RatingRow("bt", name, v, lo, hi, counts[name], now) for name, (v, lo, hi) in bt.as_dict().items()]
    rows += [RatingRow("elo", name, v, None, None, counts[name], now) for name, v in elo(games, names).items()]
    rows += [
        RatingRow("openskill", name, r.conservative, None, None, counts[name], now)
        for name, r in openskill(games, names).items()
    ]
    db.add_ratings(rows)


def evaluate(
    league: str | Path = DEFAULT_LEAGUE,
    games_per_pair: int = 4,
    workers: int | None = None,
    ray_address: str | None = None,
    schedule: str = "round-robin",
    only: Sequence[str] | None = None,
    progress: bool = True,
) -> RunSummary:
    """`league eval`: create the league if new (with every scripted player), play, rate.

    Round robin plays each pair's missing games among the first `games_per_pair`;
    'uncertain' plays `games_per_pair` more games for the least certain pairs.
    `only` limits the schedule to pairs among those members (ratings still use every
    match). A rating snapshot is appended to the history when new matches were written.
    """
    if schedule not in SCHEDULES:
        raise LeagueError(f"unknown schedule {schedule!r}; choices: {', '.join(SCHEDULES)}")
    with LeagueDB(league, create=True) as db:
        db.start_with(scripted_members())
        names = [m.name for m in db.members()]
        if only is not None:
            for name in only:
                db.member(name)  # an unknown name is an error listing the members
            if len(set(only)) < 2:
                raise LeagueError(f"--members needs at least two distinct members, got {', '.join(only) or 'none'}")
        selected = names if only is None else sorted(set(only))
        played = db.played_indices()
        if schedule == "round-robin":
            tasks = round_robin(selected, played, games_per_pair)
        else:
            bt = bradley_terry([g for g in db.games() if g.player1 in selected and g.player2 in selected], selected)
            tasks = uncertain(bt, played, games_per_pair)
        summary = run_tasks(db, tasks, workers=workers, ray_address=ray_address, progress=progress)
        if summary.played:
            snapshot_ratings(db)
    return summary
