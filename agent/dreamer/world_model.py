"""The DreamerV3 world model: RSSM, encoder, decoder, reward and continue heads, loss.

RSSM (as in the current official code): the deterministic state `deter` is updated
by a GRU whose input is three RMSNorm+SiLU projections (of deter, the flattened
stochastic state and the previous action); the GRU's hidden layer and gates are
block-diagonal over `blocks` groups of deter, each group also seeing the shared
inputs. The stochastic state is `stoch` categoricals with `classes` classes, 1%
unimix, sampled with straight-through gradients. The prior sees deter; the posterior
sees deter and the observation embedding.

Loss per replayed step: symlog squared error of the decoder (summed over the 18
values), two-hot cross-entropy of the reward, Bernoulli log-loss of the continue
flag (1 - terminal), dyn = max(1, KL(sg(post) || prior)) and
rep = max(1, KL(post || sg(prior))), scaled 1, 1, 1, 1, 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from agent.config import ModelConfig
from agent.dreamer.filter import FilterShape
from agent.dreamer.filter import observe as filter_observe
from agent.dreamer.maths import symexp_bins, symlog, twohot_loss
from agent.dreamer.nets import (
    MLP,
    BlockLinear,
    NormLinear,
    RMSNorm,
    TwoHotHead,
    categorical_kl,
    onehot_mode,
    onehot_sample,
    unimix_probs,
)


def kl_losses(post: Tensor, prior: Tensor, free_nats: float) -> tuple[Tensor, Tensor, Tensor]:
    """KL balancing with free nats on probabilities [..., L, C].

    dyn = max(free, KL(sg(post) || prior)) trains the prior toward the posterior,
    rep = max(free, KL(post || sg(prior))) the posterior toward the prior; below
    `free_nats` neither has a gradient. Also returns the unclipped KL (detached).
    """
    kl_dyn = categorical_kl(post.detach(), prior)
    rep = torch.clamp(categorical_kl(post, prior.detach()), min=free_nats)
    return torch.clamp(kl_dyn, min=free_nats), rep, kl_dyn.detach()


@dataclass
class WorldModelOutput:
    """The world-model loss, its parts (detached) and the posterior states."""

    loss: Tensor
    parts: dict[str, Tensor]
    deter: Tensor  # [B, T, D], detached unless asked to keep the graph
    stoch: Tensor  # [B, T, L * C], detached unless asked to keep the graph


class WorldModel(nn.Module):
    bins: Tensor

    def __init__(self, cfg: ModelConfig, obs_dim: int, act_dim: int):
        super().__init__()
        self.cfg = cfg
        d, h, g = cfg.deter, cfg.hidden, cfg.blocks
        self.deter_size, self.stoch_size = d, cfg.stoch * cfg.classes
        self.feat_size = d + self.stoch_size
        self.register_buffer("bins", symexp_bins(cfg.bins), persistent=False)

        self.encoder = MLP(obs_dim, cfg.units, cfg.layers)
        # GRU inputs
        self.in_deter = NormLinear(d, h)
        self.in_stoch = NormLinear(self.stoch_size, h)
        self.in_action = NormLinear(act_dim, h)
        # hidden layer: block-diagonal on deter plus a dense map of the shared inputs
        self.hid_deter = BlockLinear(d, d, g)
        self.hid_inputs = nn.Linear(3 * h, d, bias=False)
        self.hid_norm = RMSNorm(d)
        self.gates = BlockLinear(d, 3 * d, g)  # per group: reset, candidate, update
        # prior and posterior
        self.prior_net = nn.Sequential(MLP(d, h, 2), nn.Linear(h, self.stoch_size))
        self.post_deter = nn.Linear(d, h)
        self.post_embed = nn.Linear(self.encoder.out_dim, h, bias=False)
        self.post_norm = RMSNorm(h)
        self.post_out = nn.Linear(h, self.stoch_size)
        # heads on the features [deter, stoch]
        dec = MLP(self.feat_size, cfg.units, cfg.layers)
        self.decoder = nn.Sequential(dec, nn.Linear(dec.out_dim, obs_dim))
        self.reward = TwoHotHead(self.feat_size, cfg.units, cfg.head_layers, cfg.bins)
        con = MLP(self.feat_size, cfg.units, cfg.head_layers)
        self.cont = nn.Sequential(con, nn.Linear(con.out_dim, 1))
        # observe() trains through filter.observe unless the recurrent steps are compiled
        self.fused_filter = True
        norms = (self.in_deter.norm, self.in_stoch.norm, self.hid_norm, self.post_norm)
        self.filter_shape = FilterShape(g, cfg.stoch, cfg.classes, cfg.unimix, tuple(n.eps for n in norms))

    # ---- RSSM steps ----------------------------------------------------------------

    def gru(self, deter: Tensor, stoch: Tensor, action_in: Tensor) -> Tensor:
        """One deterministic step; `action_in` is `in_action(prev_action)`."""
        x = torch.cat([self.in_deter(deter), self.in_stoch(stoch), action_in], -1)
        n, g = x.shape[0], self.cfg.blocks
        x = self.hid_inputs(x).reshape(n, g, -1) + self.hid_deter.grouped(deter)
        x = nn.functional.silu(self.hid_norm(x.reshape(n, -1)))
        # gates per group: reset, candidate, update; fp32 state under autocast
        r, c, u = self.gates.grouped(x).float().reshape(n, g, 3, -1).unbind(2)
        reset = torch.sigmoid(r)
        cand = torch.tanh(reset * c)
        update = torch.sigmoid(u - 1.0)
        # update * cand + (1 - update) * deter, in one kernel
        return torch.lerp(deter.reshape(n, g, -1), cand, update).reshape(n, -1)

    def prior_probs(self, deter: Tensor) -> Tensor:
        """[..., D] -> [..., L, C] unimix probabilities of the prior."""
        logits = self.prior_net(deter)
        return unimix_probs(logits.reshape(*logits.shape[:-1], self.cfg.stoch, self.cfg.classes), self.cfg.unimix)

    def post_probs(self, deter: Tensor, embed_in: Tensor) -> Tensor:
        """Posterior probabilities from deter and `post_embed(embedding)`."""
        x = nn.functional.silu(self.post_norm(self.post_deter(deter) + embed_in))
        logits = self.post_out(x)
        return unimix_probs(logits.reshape(*logits.shape[:-1], self.cfg.stoch, self.cfg.classes), self.cfg.unimix)

    def embed(self, obs: Tensor) -> Tensor:
        return self.encoder(symlog(obs))

    def obs_step(
        self, deter: Tensor, stoch: Tensor, prev_action: Tensor, obs: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """One filtering step on real observations (acting). generator None: mode."""
        deter = self.gru(deter, stoch, self.in_action(prev_action))
        probs = self.post_probs(deter, self.post_embed(self.embed(obs)))
        sample = onehot_mode(probs) if generator is None else onehot_sample(probs, generator)
        return deter, sample.flatten(-2)

    def img_step(
        self, deter: Tensor, stoch: Tensor, action: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """One imagined step: GRU, then a sample from the prior."""
        deter = self.gru(deter, stoch, self.in_action(action))
        return deter, onehot_sample(self.prior_probs(deter), generator).flatten(-2)

    # ---- training ------------------------------------------------------------------

    def filter_params(self) -> tuple[Tensor, ...]:
        """The filter's parameters in the order of `filter.PARAM_NAMES`."""
        return (
            self.in_deter.linear.weight, self.in_deter.linear.bias, self.in_deter.norm.weight,
            self.in_stoch.linear.weight, self.in_stoch.linear.bias, self.in_stoch.norm.weight,
            self.hid_inputs.weight,
            self.hid_deter.weight, self.hid_deter.bias,
            self.hid_norm.weight,
            self.gates.weight, self.gates.bias,
            self.post_deter.weight, self.post_deter.bias,
            self.post_norm.weight,
            self.post_out.weight, self.post_out.bias,
        )  # fmt: skip

    def observe(
        self,
        obs: Tensor,
        prev_action: Tensor,
        is_first: Tensor,
        generator: torch.Generator,
        start: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Filter a batch of sequences from the zero state, or from `start` (deter [B, D],
        stoch [B, L*C]: the replay's context), rows with is_first restarting from zeros.

        Returns deter [B, T, D], stoch [B, T, L*C] and posterior probs [B, T, L, C].
        While training in float32 this runs `filter.observe`, the same function with a
        hand-written backward (several times cheaper at small batches); otherwise, and
        as the definition the tests hold it to, `observe_reference`.
        """
        fused = (
            self.fused_filter
            and torch.is_grad_enabled()
            and obs.dtype == torch.float32
            and not torch.is_autocast_enabled(obs.device.type)
        )
        if not fused:
            return self.observe_reference(obs, prev_action, is_first, generator, start)
        embed_in = self.post_embed(self.embed(obs))
        keep = (~is_first).to(obs.dtype)
        return filter_observe(
            self.filter_shape, self.filter_params(), embed_in, self.in_action(prev_action), keep, generator, start
        )

    def observe_reference(
        self,
        obs: Tensor,
        prev_action: Tensor,
        is_first: Tensor,
        generator: torch.Generator,
        start: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """`observe` written step by step with the modules, for autograd to differentiate.

        Everything that does not depend on the recurrence (embedding, action
        projection) is computed for all steps at once before the loop.
        """
        batch, steps = obs.shape[:2]
        embed_in = self.post_embed(self.embed(obs))
        action_in = self.in_action(prev_action)
        keep = (~is_first).to(obs.dtype).unsqueeze(-1)
        if start is None:
            deter = obs.new_zeros(batch, self.deter_size)
            stoch = obs.new_zeros(batch, self.stoch_size)
        else:
            deter, stoch = start
        deters, stochs, posts = [], [], []
        for t in range(steps):
            if t > 0 or start is not None:  # rows that start an episode restart from the zero state
                deter, stoch = deter * keep[:, t], stoch * keep[:, t]
            deter = self.gru(deter, stoch, action_in[:, t])
            probs = self.post_probs(deter, embed_in[:, t])
            stoch = onehot_sample(probs, generator).flatten(-2)
            deters.append(deter)
            stochs.append(stoch)
            posts.append(probs)
        return torch.stack(deters, 1), torch.stack(stochs, 1), torch.stack(posts, 1)

    def loss(
        self,
        obs: Tensor,
        prev_action: Tensor,
        reward: Tensor,
        is_first: Tensor,
        is_terminal: Tensor,
        generator: torch.Generator,
        keep_graph: bool = False,
        start: tuple[Tensor, Tensor] | None = None,
    ) -> WorldModelOutput:
        """The world-model loss on replayed sequences (see the module docstring); the
        posterior states come back detached unless `keep_graph` (the replay value loss
        trains the world model through them)."""
        cfg = self.cfg
        deter, stoch, post = self.observe(obs, prev_action, is_first, generator, start)
        prior = self.prior_probs(deter)
        feat = torch.cat([deter, stoch], -1)

        rec = ((self.decoder(feat).float() - symlog(obs)) ** 2).sum(-1)
        rew = twohot_loss(self.reward(feat), reward, self.bins)
        con = nn.functional.binary_cross_entropy_with_logits(
            self.cont(feat).float().squeeze(-1), (~is_terminal).to(feat.dtype), reduction="none"
        )
        dyn, rep, kl = kl_losses(post, prior, cfg.free_nats)
        total = (
            cfg.rec_scale * rec + cfg.rew_scale * rew + cfg.con_scale * con + cfg.dyn_scale * dyn + cfg.rep_scale * rep
        ).mean()
        parts = {
            "rec": rec.mean(),
            "rew": rew.mean(),
            "con": con.mean(),
            "dyn": dyn.mean(),
            "rep": rep.mean(),
            "kl": kl.mean(),
        }
        if not keep_graph:
            deter, stoch = deter.detach(), stoch.detach()
        return WorldModelOutput(total, {k: v.detach() for k, v in parts.items()}, deter, stoch)
