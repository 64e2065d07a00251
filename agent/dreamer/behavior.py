"""Actor-critic learning in imagination (DreamerV3).

From every replayed posterior state the world model imagines `horizon` steps with
the actor's sampled actions. The actor is trained with REINFORCE, so no gradient
flows through the dynamics: the whole rollout runs under `torch.no_grad`, one
`rollout_step` per imagined step (the actor's sample, the GRU, the prior's sample),
from noise drawn beforehand. That keeps the step a pure tensor function, which
`torch.compile` can fuse (DreamerAgent does on the CPU). The losses then run the actor
and the critic once each over all H x N imagined states, with their graphs: the same
values as the rollout's actor outputs, in one large product instead of H small ones.

Per imagined state t (0..H-1), with weight w_t = prod_{k<=t} (gamma c_k) / gamma:
- lambda-return R_t from predicted rewards, continues and critic values,
- advantage A_t = (R_t - v_t) / max(1, S), S the EMA of P95(R) - P5(R),
- actor loss  w_t * -(sg(A_t) log pi(a_t | s_t) + eta H[pi(. | s_t)]),
- critic loss w_t * (twohot_ce(v(s_t), sg(R_t)) + slow_reg twohot_ce(v(s_t), sg(v_slow(s_t)))).
The returns bootstrap from the online critic's values (as in the paper); the slow
critic only regularises. The critic is trained on imagined returns only (the official
code's extra replay-value loss, scale 0.3, is not used).

Logged terms: actor/pg_term = mean(w_t sg(A_t) log pi), actor/ent_term =
mean(w_t eta H), so actor/loss = -(pg_scale pg_term + ent_term); actor/adv_abs is the
mean |A_t| (unweighted); ret/p05 and ret/p95 are the EMAs whose difference is S.
The discrete actor (actor.dist=discrete) is trained the same way, with a_t the sampled
one-hot and its exact categorical entropy; it has no std, and its actions are -1, 0 or
+1 by construction, so actor/std_q* and actor/saturation are logged for the continuous
distributions only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from agent.config import CHOICES, ActorConfig, CriticConfig
from agent.dreamer.maths import ReturnNormalizer, lambda_return, quantiles, twohot_mean, twohot_nll
from agent.dreamer.nets import Actor, TwoHotHead, max_discrete_entropy, onehot_at
from agent.dreamer.world_model import WorldModel


@dataclass
class Imagined:
    """An imagined batch, time first, all detached: feat [H+1, N, F], raw [H, N, R] and
    action [H, N, A]; R is A for the continuous distributions, G*C for the discrete one."""

    feat: Tensor
    raw: Tensor  # the distribution's own sample (pre-clip / pre-tanh, or one-hot), for log pi
    action: Tensor  # what the dynamics saw, in [-1, 1]


RolloutStep = Callable[[WorldModel, Actor, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]


def rollout_step(
    wm: WorldModel, actor: Actor, deter: Tensor, stoch: Tensor, noise: Tensor, latent_noise: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One imagined step from given noise: the actor's sample, its action, the GRU and
    the prior's sample. noise [N, actor.noise_size] of kind actor.noise_kind picks the
    actor's sample (`sample_from`), latent_noise [N, L, 1] uniform the prior's classes
    (`onehot_at`). Returns the next deter and stoch, and the sample raw and its action."""
    dist = actor.dist_from(actor.head(torch.cat([deter, stoch], -1)))
    raw = dist.sample_from(noise)
    action = dist.to_action(raw)
    deter = wm.gru(deter, stoch, wm.in_action(action))
    stoch = onehot_at(wm.prior_probs(deter), latent_noise).flatten(-2)
    return deter, stoch, raw, action


def imagine(
    wm: WorldModel,
    actor: Actor,
    deter: Tensor,
    stoch: Tensor,
    horizon: int,
    generator: torch.Generator,
    step: RolloutStep = rollout_step,
) -> Imagined:
    """Roll the prior forward `horizon` steps from start states deter [N, D], stoch [N, S].

    Each step draws the actor's noise, then the prior's uniforms, from `generator`: the
    draws, in number and order, of sampling the actor and then `WorldModel.img_step`.
    `step` is `rollout_step` or a compiled copy of it.
    """
    n, dev = deter.shape[0], deter.device
    feats, raws, actions = [torch.cat([deter, stoch], -1)], [], []
    with torch.no_grad():
        for _ in range(horizon):
            if actor.noise_kind == "normal":
                noise = torch.randn((n, actor.noise_size), generator=generator, device=dev)
            else:
                noise = torch.rand((n, actor.noise_size), generator=generator, device=dev)
            latent_noise = torch.rand((n, wm.cfg.stoch, 1), generator=generator, device=dev)
            deter, stoch, raw, action = step(wm, actor, deter, stoch, noise, latent_noise)
            feats.append(torch.cat([deter.float(), stoch.float()], -1))
            raws.append(raw)
            actions.append(action)
    return Imagined(torch.stack(feats), torch.stack(raws), torch.stack(actions))


def entropy_bounds(act_dim: int, min_std: float, max_std: float) -> tuple[float, float]:
    """Entropy of a diagonal Normal with every std at min_std, and at max_std."""
    half = 0.5 * math.log(2.0 * math.pi * math.e)
    return act_dim * (half + math.log(min_std)), act_dim * (half + math.log(max_std))


def policy_entropy_bounds(cfg: ActorConfig, act_dim: int) -> tuple[float, float]:
    """The entropy range that actor/rand maps onto [0, 1] for the configured actor.

    Continuous: `entropy_bounds` (exact for bounded_normal; for tanh_normal the
    Gaussian's range, which the squashed entropy only approximates). Discrete:
    [0, sum_g ln C], so rand = entropy / the uniform policy's entropy (with unimix the
    entropy never quite reaches 0).
    """
    if cfg.dist == "discrete":
        return 0.0, max_discrete_entropy(cfg.action_set)
    return entropy_bounds(act_dim, cfg.min_std, cfg.max_std)


def eta_at(cfg: ActorConfig, update: int) -> float:
    """The entropy scale after `update` updates under the configured schedule."""
    if cfg.eta_schedule == "constant":
        return cfg.eta
    frac = min(1.0, update / max(1, cfg.eta_decay_steps))
    if cfg.eta_schedule == "linear":
        return cfg.eta + frac * (cfg.eta_final - cfg.eta)
    if cfg.eta_schedule == "exp":
        return cfg.eta * (cfg.eta_final / cfg.eta) ** frac
    raise ValueError(
        f"unknown eta_schedule {cfg.eta_schedule!r}; choices: {', '.join(CHOICES['actor', 'eta_schedule'])}"
    )


@dataclass
class BehaviorOutput:
    actor_loss: Tensor
    critic_loss: Tensor
    metrics: dict[str, Tensor]  # detached scalars and two [H] vectors
    start_return: Tensor  # [N] the lambda-return of each start state (detached): the replay loss bootstraps from it


def behavior_losses(
    wm: WorldModel,
    actor: Actor,
    critic: TwoHotHead,
    slow_critic: TwoHotHead,
    retnorm: ReturnNormalizer,
    imag: Imagined,
    start_cont: Tensor,
    acfg: ActorConfig,
    ccfg: CriticConfig,
    eta: float | Tensor,
    generator: torch.Generator,
    bonus: Tensor | None = None,
) -> BehaviorOutput:
    """Actor and critic losses on an imagined batch; updates the return normaliser.

    start_cont [N] is 1 - is_terminal of the replayed start states: a terminal start
    state gets weight 0. bonus [H, N], when given, is an intrinsic reward (already
    scaled) added to the predicted reward of the state each imagined action leads to.
    """
    bins = wm.bins
    gamma = 1.0 - 1.0 / acfg.discount_horizon
    feat = imag.feat
    with torch.no_grad():  # reward and continue of the start states are never used
        reward = twohot_mean(torch.softmax(wm.reward(feat[1:]), -1), bins)
        if bonus is not None:
            reward = reward + bonus
        reward = torch.cat([torch.zeros_like(reward[:1]), reward], 0)
        cont = torch.sigmoid(wm.cont(feat[1:]).float().squeeze(-1))
        cont = torch.cat([start_cont.unsqueeze(0), cont], 0)
        weight = torch.cumprod(gamma * cont, 0) / gamma  # [H+1, N]
        slow_value = twohot_mean(torch.softmax(slow_critic(feat[:-1]), -1), bins)

    # the critic's logits of states 0..H-1 keep their graph; the last state's value is only
    # a bootstrap target, as every value is (decoded without gradient)
    value_logits = critic(feat[:-1])
    with torch.no_grad():
        value = torch.cat([value_logits, critic(feat[-1:])]).softmax(-1)
        value = twohot_mean(value, bins)
    ret = lambda_return(reward, cont, value, gamma, acfg.lam)  # [H, N]
    retnorm.update(ret)
    adv = (ret - value[:-1]) / retnorm.divisor()

    dist = actor(feat[:-1])  # the rollout's distributions, now with their graph
    logpi = dist.log_prob(imag.raw)
    ent = dist.entropy(generator)
    w = weight[:-1]
    pg = w * adv * logpi
    ent_bonus = w * eta * ent
    actor_loss = -(acfg.pg_scale * pg + ent_bonus).mean()

    # two-hot cross-entropies toward R_t and toward the slow critic
    critic_nll = twohot_nll(value_logits, ((ret, 1.0), (slow_value, ccfg.slow_reg)), bins)
    critic_loss = (w * critic_nll).mean() * ccfg.scale

    with torch.no_grad():
        h_min, h_max = policy_entropy_bounds(acfg, actor.act_dim)
        mean_ent = ent.mean()
        metrics = {"actor/entropy": mean_ent, "actor/rand": (mean_ent - h_min) / (h_max - h_min)}
        if not actor.discrete:
            q = quantiles(dist.std, (0.05, 0.5, 0.95))
            metrics["actor/std_q05"], metrics["actor/std_q50"], metrics["actor/std_q95"] = q[0], q[1], q[2]
            metrics["actor/saturation"] = (imag.action.abs() > 0.99).any(-1).float().mean()
        metrics |= {
            "actor/pg_term": pg.mean(),
            "actor/ent_term": ent_bonus.mean(),
            "actor/adv_abs": adv.abs().mean(),
            "actor/entropy_step": ent.mean(1),
            "actor/weight_step": w.mean(1),
            "ret/scale": retnorm.scale(),
            "ret/at_floor": (retnorm.scale() < retnorm.limit).float(),
            "ret/p05": retnorm.low.clone(),
            "ret/p95": retnorm.high.clone(),
            "critic/value_mean": value[:-1].mean(),
        }
    return BehaviorOutput(actor_loss, critic_loss, metrics, ret[0].detach())
