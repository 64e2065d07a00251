"""Fixtures shared by the test modules; the plain helpers they build on are in helpers.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, write_agent_file


@pytest.fixture(scope="session")
def fast_config() -> Callable[..., Any]:
    """fast_config(*overrides): the tiny preset shrunk further by helpers.FAST, then `overrides`."""
    from agent.config import make_config

    def make(*extra: str) -> Any:
        return make_config("tiny", [*FAST, *extra])

    return make


@pytest.fixture(scope="session")
def random_batch() -> Callable[..., dict]:
    """random_batch(cfg, seed=0): a replay-shaped batch of random tensors for `cfg`."""
    import torch

    def make(cfg: Any, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        b, t = cfg.train.batch_size, cfg.train.seq_len
        is_first = torch.rand(b, t, generator=g) < 0.1
        is_first[:, 0] = True
        return {
            "obs": torch.randn(b, t, 18, generator=g) * 3,
            "action": torch.rand(b, t, 4, generator=g) * 2 - 1,
            "reward": torch.where(torch.rand(b, t, generator=g) < 0.05, 10.0, 0.0),
            "is_first": is_first,
            "is_terminal": torch.rand(b, t, generator=g) < 0.05,
        }

    return make


@pytest.fixture
def agent_file(tmp_path: Path) -> Path:
    """helpers.write_agent_file's graph in tmp_path (test_runtime.py overrides it with its own graph)."""
    return write_agent_file(tmp_path / "agent.onnx")
