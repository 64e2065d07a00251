"""The small pieces of DreamerV3 maths, written as in the paper.

symlog / symexp squash observations and targets of any scale; two-hot encodes a
scalar over bins spaced evenly in symlog space; the lambda-return is the critic's and
actor's target; the return normaliser divides advantages by max(1, S), S an EMA of
the P95 - P5 range of the returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def symlog(x: Tensor) -> Tensor:
    """sign(x) ln(|x| + 1)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """sign(x) (exp(|x|) - 1), the inverse of symlog."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def symexp_bins(n: int = 255, low: float = -20.0, high: float = 20.0) -> Tensor:
    """symexp(linspace(low, high, n)), built exactly symmetric around zero.

    The outer bins reach ~5e8, so a float32 linspace that is off by one ulp between
    the positive and negative side would make a uniform distribution decode to a
    value far from zero; mirroring one half avoids that.
    """
    if n % 2 != 1 or low != -high:
        raise ValueError("two-hot bins need an odd count and a range symmetric around 0")
    half = symexp(torch.linspace(0.0, high, n // 2 + 1, dtype=torch.float64))
    return torch.cat([-half.flip(0)[:-1], half]).float()


def _twohot_parts(x: Tensor, bins: Tensor) -> tuple[Tensor, Tensor]:
    """The bin just below x (index) and the weight of the bin above it, for x clamped to the bins."""
    x = x.clamp(bins[0], bins[-1])
    below = (torch.searchsorted(bins, x.contiguous(), right=True) - 1).clamp(0, len(bins) - 2)
    lo, hi = bins[below], bins[below + 1]
    return below, ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def twohot(x: Tensor, bins: Tensor) -> Tensor:
    """Encode x [...] as weights [..., K] on the two bins around it (sum 1).

    Values beyond the outer bins put all weight on the outer bin.
    """
    below, w_hi = _twohot_parts(x, bins)
    out = torch.zeros(*x.shape, len(bins), dtype=x.dtype, device=x.device)
    out.scatter_(-1, below.unsqueeze(-1), (1.0 - w_hi).unsqueeze(-1))
    out.scatter_add_(-1, (below + 1).unsqueeze(-1), w_hi.unsqueeze(-1))
    return out


def twohot_logp(logp: Tensor, x: Tensor, bins: Tensor) -> Tensor:
    """sum_k twohot(x)_k logp_k [...]: the two-hot log-likelihood of x under the log-probs
    logp [..., K], read from the two bins around x instead of a dense encoding (the same
    number: the other K - 2 terms are zeros)."""
    below, w_hi = _twohot_parts(x, bins)
    lo = logp.gather(-1, below.unsqueeze(-1)).squeeze(-1)
    hi = logp.gather(-1, (below + 1).unsqueeze(-1)).squeeze(-1)
    return (1.0 - w_hi) * lo + w_hi * hi


def twohot_mean(probs: Tensor, bins: Tensor) -> Tensor:
    """Expected value sum_k p_k b_k of a distribution over symmetric bins.

    Summed as sum_k (p_{+k} - p_{-k}) b_k so that mirrored probabilities cancel
    exactly (a uniform distribution decodes to exactly 0).
    """
    mid = len(bins) // 2
    pos, neg = probs[..., mid + 1 :], probs[..., :mid].flip(-1)
    return (pos - neg) @ bins[mid + 1 :]


def twohot_loss(logits: Tensor, target: Tensor, bins: Tensor) -> Tensor:
    """Cross-entropy of the two-hot encoding of target under softmax(logits)."""
    return twohot_nll(logits, ((target, 1.0),), bins)


def twohot_nll(logits: Tensor, targets: Sequence[tuple[Tensor, float]], bins: Tensor) -> Tensor:
    """-sum_j s_j twohot_logp(log_softmax(logits), x_j) for targets ((x_j, s_j), ...), [...].

    The same number as the sum of `twohot_logp` terms, computed as
    (sum_j s_j) logsumexp(logits) - sum_j s_j (the two logits around x_j, weighted),
    with the gradient written out: (sum_j s_j) softmax(logits) - sum_j s_j twohot(x_j),
    two passes over [..., K] where autograd's log-softmax and gathers take about ten
    (the critic's K = 255 logits of 16 x 1,024 imagined states are the largest tensors
    of the update).
    """
    parts = [(*_twohot_parts(x, bins), float(scale)) for x, scale in targets]
    return _TwoHotNLL.apply(logits, parts)


class _TwoHotNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, parts: list[tuple[Tensor, Tensor, float]]) -> Tensor:  # noqa: ANN001
        total = sum(scale for _, _, scale in parts)
        nll = total * torch.logsumexp(logits, -1)
        for below, w_hi, scale in parts:
            lo = logits.gather(-1, below.unsqueeze(-1)).squeeze(-1)
            hi = logits.gather(-1, (below + 1).unsqueeze(-1)).squeeze(-1)
            nll = nll - scale * ((1.0 - w_hi) * lo + w_hi * hi)
        ctx.parts, ctx.total = parts, total
        ctx.save_for_backward(logits)
        return nll

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN001
        (logits,) = ctx.saved_tensors
        out = torch.softmax(logits, -1)
        out.mul_((ctx.total * grad).unsqueeze(-1))
        for below, w_hi, scale in ctx.parts:
            out.scatter_add_(-1, below.unsqueeze(-1), (-scale * grad * (1.0 - w_hi)).unsqueeze(-1))
            out.scatter_add_(-1, (below + 1).unsqueeze(-1), (-scale * grad * w_hi).unsqueeze(-1))
        return out, None


def lambda_return(reward: Tensor, cont: Tensor, value: Tensor, gamma: float, lam: float) -> Tensor:
    """TD(lambda) returns over imagined states 0..H (time first).

    reward[t], cont[t], value[t] [H + 1, ...] are predicted from state t, so the
    return of state t uses reward[t + 1] and cont[t + 1]:
        R_t = r_{t+1} + gamma c_{t+1} ((1 - lam) v_{t+1} + lam R_{t+1}),  R_H = v_H.
    Returns [H, ...] for t = 0..H-1.
    """
    horizon = reward.shape[0] - 1
    disc = gamma * cont[1:]
    mixed = reward[1:] + disc * (1.0 - lam) * value[1:]
    out = torch.empty_like(value[:-1])
    ret = value[-1]
    for t in reversed(range(horizon)):
        ret = mixed[t] + disc[t] * lam * ret
        out[t] = ret
    return out


def quantiles(x: Tensor, levels: tuple[float, ...]) -> Tensor:
    """torch.quantile of a flat tensor at `levels` (linear interpolation), with the levels
    as Python numbers: no tensor is copied from the host or to it, so it can run in a
    CUDA graph and be compiled whole."""
    flat = x.flatten().sort().values
    n = flat.shape[0]
    # the ranks in the tensor's precision, as torch.quantile computes them
    real = np.float64 if flat.dtype == torch.float64 else np.float32
    out = []
    for level in levels:
        rank = float(real(level) * real(n - 1))
        lo = min(int(rank), n - 1)
        out.append(torch.lerp(flat[lo], flat[min(lo + 1, n - 1)], rank - lo))
    return torch.stack(out)


def replay_return(last: Tensor, term: Tensor, reward: Tensor, boot: Tensor, gamma: float, lam: float) -> Tensor:
    """Lambda-returns over a replayed sequence [B, T] (the official code's lambda_return).

    reward[t], term[t] came with state t; last[t] is 1 when state t ends its episode (the
    next row starts another); boot[t] is the return estimate of state t. Backwards from
    R_{T-1} = boot_{T-1}:
        R_t = r_{t+1} + gamma (1 - term_{t+1}) ((1 - lam') boot_{t+1} + lam' R_{t+1}),
    lam' = lam (1 - last_{t+1}): an episode's last state bootstraps fully. Returns [B, T-1].
    """
    live = (1.0 - term[:, 1:]) * gamma
    cont = (1.0 - last[:, 1:]) * lam
    interm = reward[:, 1:] + (1.0 - cont) * live * boot[:, 1:]
    out = torch.empty_like(boot[:, :-1])
    ret = boot[:, -1]
    for t in reversed(range(out.shape[1])):
        ret = interm[:, t] + live[:, t] * cont[:, t] * ret
        out[:, t] = ret
    return out


class ReturnNormalizer(torch.nn.Module):
    """S = EMA(P_high(R) - P_low(R)); advantages are divided by max(limit, S).

    The low and high percentiles are tracked as separate EMAs (their difference is
    the EMA of the range), starting at zero without debiasing as the official code
    does; the state lives in buffers so it is saved with the model.
    """

    low: Tensor
    high: Tensor

    def __init__(self, decay: float = 0.99, limit: float = 1.0, perc_low: float = 5.0, perc_high: float = 95.0):
        super().__init__()
        self.decay, self.limit = decay, limit
        self.perc_low, self.perc_high = perc_low / 100.0, perc_high / 100.0
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: Tensor) -> None:
        q = quantiles(returns.detach().float(), (self.perc_low, self.perc_high))
        self.low.mul_(self.decay).add_((1.0 - self.decay) * q[0])
        self.high.mul_(self.decay).add_((1.0 - self.decay) * q[1])

    def scale(self) -> Tensor:
        """S, before the floor."""
        return self.high - self.low

    def divisor(self) -> Tensor:
        """max(limit, S), what advantages are divided by."""
        return torch.clamp(self.scale(), min=self.limit)
