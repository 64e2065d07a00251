"""The intrinsic-reward ensemble: disagreement is high off the data, low on it; off by default."""

from __future__ import annotations

import pytest
import torch

from agent.config import make_config
from agent.dreamer import DreamerAgent
from agent.dreamer.behavior import behavior_losses, imagine
from agent.dreamer.explore import Disagreement
from agent.dreamer.maths import ReturnNormalizer


def test_disagreement_falls_where_the_ensemble_was_trained():
    torch.manual_seed(0)
    ens = Disagreement(feat_dim=6, act_dim=2, target_dim=3, units=32, layers=2, members=5)
    opt = torch.optim.Adam(ens.parameters(), lr=3e-3)
    feat, action = torch.randn(256, 6) * 0.3, torch.randn(256, 2) * 0.3
    target = torch.tanh(feat[:, :3] + action.sum(-1, keepdim=True))
    valid = torch.ones(256, dtype=torch.bool)
    before = ens.bonus(feat, action).mean()
    for _ in range(300):
        opt.zero_grad()
        ens.loss(feat, action, target, valid).backward()
        opt.step()
    seen = ens.bonus(feat, action).mean()
    unseen = ens.bonus(feat + 4.0, action).mean()
    assert seen < 0.5 * before
    assert unseen > 3 * seen


def test_invalid_transitions_do_not_train_the_ensemble():
    torch.manual_seed(0)
    ens = Disagreement(4, 1, 2, 16, 1, 3)
    feat, action, target = torch.randn(8, 4), torch.randn(8, 1), torch.randn(8, 2)
    valid = torch.zeros(8, dtype=torch.bool)
    valid[:4] = True
    loss = ens.loss(feat, action, target, valid)
    target2 = target.clone()
    target2[4:] += 100.0  # only rows that cross an episode start change
    assert torch.equal(loss, ens.loss(feat, action, target2, valid))


def test_off_by_default_and_on_when_scaled(random_batch):
    base = DreamerAgent(make_config("tiny"))
    assert base.explore is None and not any(k.startswith("explore") for k in base.state_dict())
    agent = DreamerAgent(make_config("tiny", ["explore.scale=0.1"]))
    metrics = agent.update(random_batch(agent.cfg))
    assert metrics["explore/loss"] > 0 and metrics["explore/bonus"] > 0
    with pytest.raises(ValueError, match="explore"):
        make_config("tiny", ["explore.scale=-1"])


def test_a_positive_bonus_raises_the_imagined_returns():
    torch.manual_seed(0)
    cfg = make_config("tiny")
    agent = DreamerAgent(cfg)
    n = 32
    deter, stoch = torch.zeros(n, agent.wm.deter_size), torch.zeros(n, agent.wm.stoch_size)
    imag = imagine(agent.wm, agent.actor, deter, stoch, cfg.actor.horizon, torch.Generator().manual_seed(0))

    def p95(bonus):  # decay 0: the normaliser's high percentile is this batch's P95(R)
        out = behavior_losses(
            agent.wm,
            agent.actor,
            agent.critic,
            agent.slow_critic,
            ReturnNormalizer(0.0),
            imag,
            torch.ones(n),
            cfg.actor,
            cfg.critic,
            0.0,
            torch.Generator(),
            bonus,
        )
        return out.metrics["ret/p95"]

    # with zero rewards and values from the untrained heads, every return rises by at
    # least the bonus of its own next step (more where the continue head says go on)
    assert p95(torch.full((cfg.actor.horizon, n), 1.0)) > p95(None) + 0.99
