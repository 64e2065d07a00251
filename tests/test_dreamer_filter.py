"""The world model's fused filter against its autograd reference: same values, same
random draws, and every gradient (parameters, embedding, actions, start state)."""

from __future__ import annotations

import pytest
import torch

from agent.config import make_config
from agent.dreamer import DreamerAgent
from agent.dreamer.filter import PARAM_NAMES
from agent.dreamer.world_model import WorldModel

torch.set_num_threads(1)


def _observe_and_backward(wm: WorldModel, fused: bool, batch, start):  # noqa: ANN001
    obs, action, first = batch
    wm.zero_grad()
    if start is not None:
        for s in start:
            s.grad = None
    wm.fused_filter = fused
    deter, stoch, probs = wm.observe(obs, action, first, torch.Generator().manual_seed(1), start)
    weights = torch.Generator().manual_seed(5)
    loss = sum((x * torch.randn(x.shape, generator=weights)).sum() for x in (deter, stoch, probs))
    (loss + (probs * probs.log()).sum()).backward()  # a KL-like term on the probabilities too
    grads = {n: p.grad.clone() for n, p in wm.named_parameters() if p.grad is not None}
    if start is not None:
        grads["start deter"], grads["start stoch"] = start[0].grad.clone(), start[1].grad.clone()
    return (deter.detach(), stoch.detach(), probs.detach()), grads


@pytest.mark.parametrize("with_start", [False, True])
def test_fused_filter_matches_the_reference_in_values_and_every_gradient(with_start):
    torch.manual_seed(0)
    cfg = make_config("tiny", ["model.deter=48", "model.blocks=3", "model.hidden=24", "model.stoch=6"])
    wm = WorldModel(cfg.model, 18, 4)
    with torch.no_grad():  # move norm scales and biases off their initial values
        for p in wm.parameters():
            p.add_(0.2 * torch.randn_like(p))
    b, t = 5, 9
    first = torch.zeros(b, t, dtype=torch.bool)
    first[:, 0] = True
    first[1, 4] = first[3, 7] = True  # rows that restart in the middle
    batch = (torch.randn(b, t, 18), torch.rand(b, t, 4) * 2 - 1, first)
    start = None
    if with_start:
        first[2, 0] = False  # a row that continues its context
        start = (torch.randn(b, 48, requires_grad=True), torch.rand(b, 6 * 4, requires_grad=True))
    (ref_values, ref_grads) = _observe_and_backward(wm, False, batch, start)
    (values, grads) = _observe_and_backward(wm, True, batch, start)
    for ref, got in zip(ref_values, values, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)  # the same samples, too
    assert set(grads) == set(ref_grads)
    assert len(ref_grads) >= len(PARAM_NAMES)
    for name, ref in ref_grads.items():
        assert ref.abs().max() > 0, name
        torch.testing.assert_close(grads[name], ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item(), msg=name)


def test_training_uses_the_fused_filter_and_acting_and_compiling_do_not(random_batch):
    cfg = make_config("tiny", [])
    agent = DreamerAgent(cfg)
    batch = random_batch(cfg)
    obs, action, first = batch["obs"], batch["action"], batch["is_first"]
    gen = torch.Generator().manual_seed(0)
    deter, _, _ = agent.wm.observe(obs, action, first, gen)
    assert type(deter.grad_fn).__name__ == "_FilterBackward"
    with torch.no_grad():
        deter, _, _ = agent.wm.observe(obs, action, first, gen)
    assert deter.grad_fn is None
    agent.wm.fused_filter = False  # what compile_steps sets
    deter, _, _ = agent.wm.observe(obs, action, first, gen)
    assert type(deter.grad_fn).__name__ != "_FilterBackward"
