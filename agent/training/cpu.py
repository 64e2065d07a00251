"""How a training job uses the CPU: its OpenMP wait policy and thread count.

Measured on 2 cores (docs/results.md, "Speed"): the small preset's update runs about
twice as fast when OpenMP's threads spin briefly while they wait (OpenMP's own default)
as when they go to sleep at once (`OMP_WAIT_POLICY=PASSIVE`), but two spinning jobs on
the same cores wait for each other's descheduled threads and crawl. So a job that has
the machine to itself keeps OpenMP's default and one thread per core, and sharing the
cores with other jobs is an explicit choice (`train.share_cpu`, `--share-cpu`): threads
then sleep while they wait. A user's own OMP_WAIT_POLICY always wins. The policy is read
when torch loads, so `configure` must run before the first `import torch`.
"""

from __future__ import annotations

import os
import sys
import warnings


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure(share_cpu: bool, threads: int) -> str:
    """Set the wait policy (before torch loads) and torch's thread count; a one-line summary.

    threads 0 means one per core; more threads than cores is refused with a warning
    that says what is used instead.
    """
    available = cores()
    torch_loaded = "torch" in sys.modules
    if "OMP_WAIT_POLICY" in os.environ:
        policy = f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} (yours)"
    elif share_cpu:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        policy = "threads sleep while they wait (sharing the CPU)"
    else:
        policy = "threads spin while they wait (the machine to itself; --share-cpu to share it)"
    if torch_loaded and share_cpu and os.environ.get("OMP_WAIT_POLICY") == "PASSIVE":
        policy += " (torch was loaded before: its threads keep the policy they started with)"
    import torch

    wanted = threads or available
    if wanted > available:
        warnings.warn(
            f"train.threads={threads} but this process may use {available} cores; using {available}", stacklevel=2
        )
        wanted = available
    torch.set_num_threads(wanted)
    return f"{wanted} CPU threads, {policy}"


class ContentionGuard:
    """Falls back to one thread while other jobs compete for the cores, and back again.

    Spinning threads that lose their core to another job make every update wait for
    them: measured on 2 cores, a tiny-preset run took 138 s with a test suite running
    beside it against 7 s with sleeping threads. One thread never waits for a sibling,
    so while the 1-minute load average says another job is running (above the cores
    plus `margin`), the trainer uses one thread; once the load falls back to what it
    alone makes, it returns to `threads`. Nothing happens for a job that shares the CPU
    by choice, runs one thread, or trains on a GPU.
    """

    def __init__(self, threads: int, every: float = 30.0, margin: float = 0.75) -> None:
        self.threads, self.every, self.margin = threads, every, margin
        self.cores = cores()
        self.reduced = False
        self._last: float | None = None  # the first look comes `every` seconds after the first check

    def check(self, now: float) -> str | None:
        """Look at the load every `every` seconds; a message when the thread count changed."""
        if self._last is None:
            self._last = now
        if self.threads <= 1 or now - self._last < self.every or not hasattr(os, "getloadavg"):
            return None
        self._last = now
        import torch

        load = os.getloadavg()[0]
        if not self.reduced and load > self.cores + self.margin:
            self.reduced = True
            torch.set_num_threads(1)
            return (
                f"another job competes for the {self.cores} cores (load {load:.1f}): training on 1 thread until it "
                "ends (--share-cpu avoids this)"
            )
        if self.reduced and load < self.cores - self.margin:
            self.reduced = False
            torch.set_num_threads(self.threads)
            return f"the cores are free again (load {load:.1f}): training on {self.threads} threads"
        return None
