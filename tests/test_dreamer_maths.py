"""DreamerV3 maths: symlog, two-hot, lambda-return, return normaliser, distributions, KL."""

from __future__ import annotations

import math

import pytest
import torch

from agent.config import CHOICES, ActorConfig
from agent.dreamer.behavior import entropy_bounds, eta_at, policy_entropy_bounds
from agent.dreamer.maths import (
    ReturnNormalizer,
    lambda_return,
    symexp,
    symexp_bins,
    symlog,
    twohot,
    twohot_logp,
    twohot_loss,
    twohot_mean,
    twohot_nll,
)
from agent.dreamer.nets import (
    ACTION_SETS,
    Actor,
    BoundedNormal,
    Discrete,
    TanhNormal,
    action_table,
    onehot_at,
    onehot_sample,
    unimix_probs,
)
from agent.dreamer.world_model import kl_losses

torch.set_num_threads(1)


def test_symlog_symexp_inverse_and_values():
    x = torch.tensor([-1e6, -10.0, -1.0, -0.5, 0.0, 0.3, 1.0, 7.0, 1e5], dtype=torch.float64)
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-12, atol=1e-12)
    assert torch.allclose(symlog(x), torch.sign(x) * torch.log(x.abs() + 1))
    assert symlog(torch.tensor(math.e - 1)).item() == pytest.approx(1.0)


def test_bins_symmetric_and_symexp_spaced():
    bins = symexp_bins(255)
    assert bins.shape == (255,) and bins[127] == 0
    assert torch.equal(bins, -bins.flip(0))
    assert torch.allclose(symlog(bins.double()), torch.linspace(-20, 20, 255, dtype=torch.float64), atol=1e-5)


def test_twohot_round_trip_on_between_and_beyond_bins():
    bins = symexp_bins(255)
    on = bins[[10, 127, 130, 200]]
    between = torch.tensor([-3.7, -0.01, 0.0, 0.25, 1.5, 42.0, 1234.5])
    beyond = torch.tensor([-1e12, 1e12])
    for x in (on, between):
        enc = twohot(x, bins)
        assert torch.allclose(enc.sum(-1), torch.ones(len(x)))
        assert ((enc > 0).sum(-1) <= 2).all()
        assert torch.allclose(twohot_mean(enc, bins), x, rtol=1e-5, atol=1e-6)
    enc = twohot(beyond, bins)
    assert enc[0, 0] == 1 and enc[1, -1] == 1
    assert torch.equal(twohot_mean(enc, bins), torch.stack([bins[0], bins[-1]]))
    # a value between two bins puts its weight on exactly those two, by distance
    x = (0.25 * bins[140] + 0.75 * bins[141]).reshape(1)
    enc = twohot(x, bins)[0]
    assert enc[140].item() == pytest.approx(0.25, abs=1e-4) and enc[141].item() == pytest.approx(0.75, abs=1e-4)


def test_twohot_uniform_decodes_to_exact_zero_and_loss_is_cross_entropy():
    bins = symexp_bins(255)
    assert twohot_mean(torch.full((255,), 1 / 255), bins).item() == 0.0
    logits = torch.randn(3, 255)
    target = torch.tensor([0.5, -2.0, 30.0])
    expected = -(twohot(target, bins) * torch.log_softmax(logits, -1)).sum(-1)
    assert torch.allclose(twohot_loss(logits, target, bins), expected)


def test_twohot_nll_is_the_sum_of_two_hot_log_likelihoods_with_the_same_gradient():
    bins = symexp_bins(255).double()
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 255, generator=gen, dtype=torch.float64, requires_grad=True)
    far = torch.randn(4, 6, generator=gen, dtype=torch.float64) * 50
    far[0, 0], far[0, 1] = 1e12, -1e12  # beyond the outer bins
    near = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    targets = ((far, 1.0), (near, 0.3))

    def reference(x: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(x, -1)
        return -sum(scale * twohot_logp(logp, t, bins) for t, scale in targets)

    torch.testing.assert_close(twohot_nll(logits, targets, bins), reference(logits))
    weights = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    (want,) = torch.autograd.grad((reference(logits) * weights).sum(), logits)
    (got,) = torch.autograd.grad((twohot_nll(logits, targets, bins) * weights).sum(), logits)
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda x: twohot_nll(x, targets, bins), (logits,))


def test_replay_return_matches_hand_computation():
    """The replay value loss's targets: real rewards and terminals, imagined returns to bootstrap."""
    from agent.dreamer.maths import replay_return

    gamma, lam = 0.9, 0.8
    reward = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])  # reward[t] came with state t
    term = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])
    last = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])  # state 3 ends its episode
    boot = torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0]])
    r3 = 50.0  # not used: the episode ended at state 3
    r2 = 3.0 + gamma * 0.0 * ((1 - 0.0) * 40.0 + 0.0 * r3)  # a terminal state 3: only its reward
    r1 = 2.0 + gamma * ((1 - lam) * 30.0 + lam * r2)
    r0 = 1.0 + gamma * ((1 - lam) * 20.0 + lam * r1)
    out = replay_return(last, term, reward, boot, gamma, lam)
    assert out.shape == (1, 4)
    assert torch.allclose(out[0, :3], torch.tensor([r0, r1, r2]))
    # an episode's last state that is not terminal (a round nobody won) bootstraps from its estimate
    out = replay_return(last, torch.zeros_like(term), reward, boot, gamma, lam)
    assert out[0, 2].item() == pytest.approx(3.0 + gamma * 40.0)
    # lam = 1 without ends: the discounted rewards plus the discounted last estimate
    mc = replay_return(torch.zeros_like(last), torch.zeros_like(term), reward, boot, 0.5, 1.0)
    assert mc[0, 0].item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4 + 0.0625 * 50)


def test_lambda_return_matches_hand_computation():
    gamma, lam = 0.9, 0.8
    reward = torch.tensor([0.0, 1.0, 2.0, 3.0])  # reward[t] predicted from state t
    cont = torch.tensor([1.0, 1.0, 0.5, 1.0])
    value = torch.tensor([10.0, 20.0, 30.0, 40.0])
    r3 = 40.0
    r2 = 3.0 + gamma * 1.0 * ((1 - lam) * 40.0 + lam * r3)
    r1 = 2.0 + gamma * 0.5 * ((1 - lam) * 30.0 + lam * r2)
    r0 = 1.0 + gamma * 1.0 * ((1 - lam) * 20.0 + lam * r1)
    out = lambda_return(reward, cont, value, gamma, lam)
    assert torch.allclose(out, torch.tensor([r0, r1, r2]))
    # lam = 1: discounted Monte Carlo return bootstrapped from the last value
    mc = lambda_return(reward, torch.ones(4), value, 0.5, 1.0)
    assert mc[0].item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 40)
    # batched over a second dim gives the same per column
    both = lambda_return(
        reward[:, None].repeat(1, 2), cont[:, None].repeat(1, 2), value[:, None].repeat(1, 2), gamma, lam
    )
    assert torch.allclose(both[:, 1], out)


def test_return_normaliser_floor_and_ema():
    norm = ReturnNormalizer(decay=0.99, limit=1.0)
    for _ in range(5):
        norm.update(torch.full((100,), 0.3))
    assert norm.scale().item() == pytest.approx(0.0, abs=1e-7)
    assert norm.divisor().item() == 1.0
    norm = ReturnNormalizer(decay=0.5, limit=1.0)
    returns = torch.linspace(0, 100, 1001)  # P5 = 5, P95 = 95
    lo = hi = 0.0
    for _ in range(4):
        norm.update(returns)
        lo, hi = 0.5 * lo + 0.5 * 5.0, 0.5 * hi + 0.5 * 95.0
        assert norm.low.item() == pytest.approx(lo, rel=1e-5)
        assert norm.high.item() == pytest.approx(hi, rel=1e-5)
    assert norm.divisor().item() == pytest.approx(hi - lo, rel=1e-5)
    assert "low" in norm.state_dict() and "high" in norm.state_dict()


def test_bounded_normal_entropy_closed_form():
    std = torch.tensor([[0.1, 0.3, 0.6, 1.0]])
    dist = BoundedNormal(torch.zeros(1, 4), std)
    closed = sum(0.5 * math.log(2 * math.pi * math.e * s * s) for s in std[0].tolist())
    gen = torch.Generator().manual_seed(0)
    assert dist.entropy(gen).item() == pytest.approx(closed, rel=1e-5)
    ref = torch.distributions.Normal(torch.zeros(4), std[0]).entropy().sum()
    assert dist.entropy(gen).item() == pytest.approx(ref.item(), rel=1e-5)
    x = torch.randn(1, 4)
    assert dist.log_prob(x).item() == pytest.approx(
        torch.distributions.Normal(0.0, std[0]).log_prob(x[0]).sum().item(), rel=1e-5
    )
    h_min, h_max = entropy_bounds(4, 0.1, 1.0)
    assert h_min == pytest.approx(-3.54, abs=0.01) and h_max == pytest.approx(5.68, abs=0.01)


def test_tanh_normal_log_prob_and_entropy_of_the_squashed_action():
    loc = torch.tensor([0.0, 0.5, -1.0, 2.0])
    std = torch.tensor([0.3, 1.0, 0.7, 1.5])
    dist = TanhNormal(loc.expand(200_000, 4), std.expand(200_000, 4))
    gen = torch.Generator().manual_seed(1)
    u = dist.sample(gen)
    ref = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(loc, std), [torch.distributions.TanhTransform()]
    )
    small = TanhNormal(loc.expand(10, 4), std.expand(10, 4))
    assert torch.allclose(small.log_prob(u[:10]), ref.log_prob(torch.tanh(u[:10])).sum(-1), rtol=1e-4, atol=1e-4)
    # change of variables: H[tanh(u)] = H[u] + E[log(1 - tanh(u)^2)]
    gauss = torch.distributions.Normal(loc, std).entropy().sum()
    cov = gauss + torch.log1p(-(torch.tanh(u.double()) ** 2)).sum(-1).mean()
    estimate = dist.entropy(gen).mean()
    assert estimate.item() == pytest.approx(cov.item(), abs=0.03)
    assert estimate < gauss  # squashing loses entropy


@pytest.mark.parametrize("dist", ["bounded_normal", "tanh_normal"])
def test_gradient_signs_entropy_raises_std_and_advantage_raises_logprob(dist):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(64, 8)
    actor = Actor(8, 4, 16, 1, dist, 0.1, 1.0)
    opt = torch.optim.SGD(actor.parameters(), lr=0.5)
    before = actor(feat).std.mean().item()
    opt.zero_grad()
    (-actor(feat).entropy(gen).mean()).backward()
    opt.step()
    assert actor(feat).std.mean().item() > before

    d = actor(feat)
    raw = d.sample(gen).detach()
    for adv in (1.0, -1.0):
        trial = Actor(8, 4, 16, 1, dist, 0.1, 1.0)
        trial.load_state_dict(actor.state_dict())
        opt = torch.optim.SGD(trial.parameters(), lr=0.05)
        logp0 = trial(feat).log_prob(raw).mean().item()
        opt.zero_grad()
        (-(adv * trial(feat).log_prob(raw)).mean()).backward()
        opt.step()
        logp1 = trial(feat).log_prob(raw).mean().item()
        assert (logp1 - logp0) * adv > 0


# ---- discrete actions ------------------------------------------------------------


def _all_joint_actions(table: torch.Tensor) -> torch.Tensor:
    """Every joint action of a [G, C, A] table as flattened one-hots [C^G, G*C]."""
    groups, classes = table.shape[:2]
    index = torch.cartesian_prod(*[torch.arange(classes)] * groups).reshape(-1, groups)
    return torch.nn.functional.one_hot(index, classes).float().flatten(-2)


@pytest.mark.parametrize("action_set", ["bins3", "joint25"])
def test_discrete_entropy_log_prob_and_bounds(action_set):
    table = action_table(action_set)
    groups, classes = table.shape[:2]
    logits = torch.randn(3, groups, classes, generator=torch.Generator().manual_seed(0)) * 2
    dist = Discrete(logits, table, 0.01)
    probs = 0.99 * torch.softmax(logits, -1) + 0.01 / classes
    closed = -(probs * probs.log()).sum((-2, -1))
    assert torch.allclose(dist.entropy(torch.Generator()), closed, atol=1e-5)
    ref = torch.distributions.Categorical(probs=probs).entropy().sum(-1)
    assert torch.allclose(dist.entropy(torch.Generator()), ref, atol=1e-5)
    # pi over every joint action sums to 1 (81 for bins3, 25 for joint25)
    joint = _all_joint_actions(table)
    assert joint.shape[0] == {"bins3": 81, "joint25": 25}[action_set]
    total = dist.log_prob(joint[:, None, :]).exp().sum(0)
    assert torch.allclose(total, torch.ones(3), atol=1e-5)
    h_min, h_max = policy_entropy_bounds(ActorConfig(dist="discrete", action_set=action_set), 4)
    assert h_min == 0.0 and h_max == pytest.approx(groups * math.log(classes))
    uniform = Discrete(torch.zeros(1, groups, classes), table, 0.01)
    assert uniform.entropy(torch.Generator()).item() == pytest.approx(h_max, rel=1e-6)


def test_discrete_action_sets_map_indices_to_the_documented_vectors():
    assert set(ACTION_SETS) == set(CHOICES[("actor", "action_set")])
    bins3 = Discrete(torch.zeros(1, 4, 3), action_table("bins3"), 0.01)
    onehot = torch.nn.functional.one_hot(torch.tensor([[0, 1, 2, 2]]), 3).float().flatten(-2)
    assert bins3.to_action(onehot).tolist() == [[-1.0, 0.0, 1.0, 1.0]]
    joint = Discrete(torch.zeros(1, 1, 25), action_table("joint25"), 0.01)
    actions = joint.to_action(torch.eye(25)).tolist()
    directions = [[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]]
    assert actions[:8] == [[x, y, 0.0, 0.0] for x, y in directions]
    assert actions[8:16] == [[x, y, 1.0, 0.0] for x, y in directions]  # turn left
    assert actions[16:24] == [[x, y, -1.0, 0.0] for x, y in directions]  # turn right
    assert actions[24] == [0.0, 0.0, 0.0, 1.0]  # shoot
    assert len({tuple(a) for a in actions}) == 25


@pytest.mark.parametrize("action_set", ["bins3", "joint25"])
def test_discrete_sample_mode_and_noise(action_set):
    actor = Actor(8, 4, 16, 1, "discrete", 0.1, 1.0, action_set)
    with torch.no_grad():
        actor.out.bias.normal_(0.0, 2.0, generator=torch.Generator().manual_seed(3))
        dist = actor(torch.randn(20_000, 8, generator=torch.Generator().manual_seed(4)))
    gen = torch.Generator().manual_seed(0)
    raw = dist.sample(gen)
    assert raw.shape == (20_000, actor.groups * actor.classes) and torch.equal(
        raw.sum(-1), torch.full((20_000,), float(actor.groups))
    )
    assert torch.allclose(raw.reshape(dist.probs.shape).mean(0), dist.probs.mean(0), atol=0.02)
    action = dist.to_action(raw)
    assert set(action.unique().tolist()) <= {-1.0, 0.0, 1.0}
    # sample(generator) is draw_noise then sample_from, draw for draw
    again = dist.sample_from(dist.draw_noise(torch.Generator().manual_seed(0)))
    assert torch.equal(raw, again)
    best = dist.probs.argmax(-1)
    mode = dist.to_action(torch.nn.functional.one_hot(best, actor.classes).float().flatten(-2))
    assert torch.equal(dist.mode(), mode)
    assert onehot_at(torch.tensor([[0.2, 0.5, 0.3]]), torch.tensor([[0.69]])).tolist() == [[0.0, 1.0, 0.0]]


def test_discrete_advantage_raises_the_sampled_action_log_prob():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(64, 8)
    actor = Actor(8, 4, 16, 1, "discrete", 0.1, 1.0, "joint25")
    raw = actor(feat).sample(gen)
    opt = torch.optim.SGD(actor.parameters(), lr=0.5)
    logp0 = actor(feat).log_prob(raw).mean().item()
    opt.zero_grad()
    (-actor(feat).log_prob(raw).mean()).backward()
    opt.step()
    assert actor(feat).log_prob(raw).mean().item() > logp0


def test_kl_free_nats_no_gradient_below_one_nat_and_balancing():
    prior_logits = torch.zeros(2, 32, 4, requires_grad=True)
    post_logits = (0.1 * torch.randn(2, 32, 4)).requires_grad_(True)
    dyn, rep, kl = kl_losses(unimix_probs(post_logits, 0.01), unimix_probs(prior_logits, 0.01), 1.0)
    assert (kl < 1).all() and torch.equal(dyn, torch.ones(2)) and torch.equal(rep, torch.ones(2))
    (dyn.sum() + rep.sum()).backward()
    assert prior_logits.grad.abs().max() == 0 and post_logits.grad.abs().max() == 0

    post_logits = (5 * torch.randn(2, 32, 4)).requires_grad_(True)
    prior_logits.grad = None
    dyn, rep, kl = kl_losses(unimix_probs(post_logits, 0.01), unimix_probs(prior_logits, 0.01), 1.0)
    assert (kl > 1).all() and torch.allclose(dyn, kl) and torch.allclose(rep, kl)
    dyn.sum().backward()  # dyn trains only the prior
    assert post_logits.grad is None and prior_logits.grad.abs().max() > 0
    prior_logits.grad = None
    rep.sum().backward()  # rep trains only the posterior
    assert prior_logits.grad is None and post_logits.grad.abs().max() > 0


def test_unimix_floor_and_straight_through_sample():
    logits = torch.tensor([[50.0, -50.0, -50.0, -50.0]])
    probs = unimix_probs(logits, 0.01)
    assert (probs >= 0.01 / 4 - 1e-9).all() and probs.sum().item() == pytest.approx(1.0)
    gen = torch.Generator().manual_seed(0)
    many = unimix_probs(torch.randn(20_000, 4) * 20, 0.01)
    assert many.min().item() >= 0.01 / 4 - 1e-7
    logits = torch.randn(5000, 3, 4, requires_grad=True)
    p = unimix_probs(logits, 0.01)
    sample = onehot_sample(p, gen)
    hard = sample.detach().round()
    assert torch.allclose(sample.detach(), hard, atol=1e-6)  # forward value is the one-hot
    assert torch.equal(hard.sum(-1), torch.ones(5000, 3))
    assert torch.allclose(sample.detach().mean(0), p.detach().mean(0), atol=0.03)
    (sample * torch.arange(4.0)).sum().backward()  # straight-through: gradient reaches logits
    assert logits.grad.abs().max() > 0


def test_eta_schedules():
    constant = ActorConfig(eta=3e-4)
    linear = ActorConfig(eta=1e-3, eta_schedule="linear", eta_final=1e-4, eta_decay_steps=100)
    exp = ActorConfig(eta=1e-3, eta_schedule="exp", eta_final=1e-5, eta_decay_steps=100)
    assert eta_at(constant, 0) == eta_at(constant, 10**6) == 3e-4
    assert eta_at(linear, 50) == pytest.approx(5.5e-4) and eta_at(linear, 500) == pytest.approx(1e-4)
    assert eta_at(exp, 50) == pytest.approx(1e-4) and eta_at(exp, 100) == pytest.approx(1e-5)
