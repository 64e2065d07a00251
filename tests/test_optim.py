"""LaProp with adaptive gradient clipping and warm-up, against the official chain written out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agent.dreamer.optim import LaProp


def reference(params, grads_per_step, lr, b1, b2, eps, agc, pmin, warmup):
    """The official optax chain (clip_by_agc, scale_by_rms, scale_by_momentum, schedule) in numpy float64."""
    params = [p.astype(np.float64).copy() for p in params]
    mu = [np.zeros_like(p) for p in params]
    nu = [np.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g.astype(np.float64)
            if agc:
                g = g / max(1.0, np.linalg.norm(g) / (agc * max(pmin, np.linalg.norm(p))))
            nu[i] = b2 * nu[i] + (1 - b2) * g * g
            u = g / (np.sqrt(nu[i] / (1 - b2**t)) + eps)
            mu[i] = b1 * mu[i] + (1 - b1) * u
            step_lr = lr * min(1.0, (t - 1) / warmup) if warmup else lr
            params[i] = p - step_lr * mu[i] / (1 - b1**t)
    return params


@pytest.mark.parametrize("agc, warmup", [(0.3, 3), (0.0, 0), (0.3, 0)])
def test_laprop_follows_the_official_chain(agc: float, warmup: int) -> None:
    rng = np.random.default_rng(0)
    shapes = [(5, 3), (7,)]
    init = [rng.normal(size=s) * 0.1 for s in shapes]
    steps = [[rng.normal(size=s) * (10.0 if k % 2 else 1e-3) for s in shapes] for k in range(8)]
    params = [torch.nn.Parameter(torch.tensor(p, dtype=torch.float64)) for p in init]
    opt = LaProp(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-20, agc=agc, pmin=1e-3, warmup=warmup)
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
    expected = reference(init, steps, 1e-2, 0.9, 0.999, 1e-20, agc, 1e-3, warmup)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-10, atol=1e-12)


def test_the_first_step_of_a_warm_up_moves_nothing_and_tiny_gradients_take_full_steps() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = LaProp([p], lr=1e-2, warmup=10)
    p.grad = torch.full((3,), 1e-8)
    opt.step()
    assert torch.equal(p.detach(), torch.ones(3))  # lr 0 at the first update, as the official schedule
    for _ in range(10):
        p.grad = torch.full((3,), 1e-8)
        opt.step()
    # eps 1e-20 does not shrink gradients near 1e-8: the step is close to lr (Adam's eps 1e-5 would cut it 1000x)
    assert math.isclose(float(1 - p.detach()[0]), 1e-2 * sum(min(1.0, k / 10) for k in range(1, 11)), rel_tol=1e-3)


def test_bad_settings_are_clear_errors() -> None:
    p = [torch.nn.Parameter(torch.ones(1))]
    with pytest.raises(ValueError, match="lr, eps, pmin > 0"):
        LaProp(p, lr=0.0)
    with pytest.raises(ValueError, match="betas"):
        LaProp(p, betas=(0.9, 1.0))
