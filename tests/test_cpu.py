"""How training uses the CPU: the wait policy, the thread count and the contention guard."""

from __future__ import annotations

import os

import pytest
import torch

from agent.training import cpu


@pytest.fixture(autouse=True)
def _keep_threads(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    yield
    torch.set_num_threads(threads)


def test_a_lone_job_keeps_spinning_threads_and_one_per_core(monkeypatch) -> None:
    monkeypatch.setattr(cpu, "cores", lambda: 2)
    line = cpu.configure(share_cpu=False, threads=0)
    assert "OMP_WAIT_POLICY" not in os.environ and torch.get_num_threads() == 2
    assert "2 CPU threads" in line and "spin" in line


def test_sharing_the_cpu_puts_waiting_threads_to_sleep() -> None:
    line = cpu.configure(share_cpu=True, threads=1)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and torch.get_num_threads() == 1
    assert "sleep" in line


def test_the_users_own_policy_wins(monkeypatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert "OMP_WAIT_POLICY=ACTIVE (yours)" in cpu.configure(share_cpu=True, threads=1)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_more_threads_than_cores_warns_and_uses_the_cores(monkeypatch) -> None:
    monkeypatch.setattr(cpu, "cores", lambda: 2)
    with pytest.warns(UserWarning, match="train.threads=64 but this process may use 2 cores; using 2"):
        cpu.configure(share_cpu=False, threads=64)
    assert torch.get_num_threads() == 2


def test_the_guard_drops_to_one_thread_while_another_job_runs(monkeypatch) -> None:
    monkeypatch.setattr(cpu, "cores", lambda: 2)
    load = [2.0]
    monkeypatch.setattr(os, "getloadavg", lambda: (load[0], 0.0, 0.0))
    torch.set_num_threads(2)
    guard = cpu.ContentionGuard(threads=2, every=10.0)
    assert guard.check(100.0) is None and torch.get_num_threads() == 2  # alone: load = its own threads
    load[0] = 3.4
    assert guard.check(105.0) is None  # looks only every 10 s
    assert "1 thread" in guard.check(111.0) and torch.get_num_threads() == 1
    load[0] = 2.0
    assert guard.check(130.0) is None and torch.get_num_threads() == 1  # the other job still runs
    load[0] = 1.0
    assert "2 threads" in guard.check(140.0) and torch.get_num_threads() == 2
    assert cpu.ContentionGuard(threads=1).check(1e9) is None  # one thread never waits for a sibling
