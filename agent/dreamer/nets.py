"""Building blocks: RMSNorm + SiLU MLPs, block-diagonal linear layers, categorical
latents with unimix and straight-through samples, and the two actor distributions.

Every sampling function takes an explicit `torch.Generator`, so an agent's random
stream is part of its saved state and a resumed run continues bit for bit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

NORM_EPS = 1e-4


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * scale.

    torch's fused kernel when running (several times faster without autograd), the
    formula written out while exporting: the ONNX exporter maps rms_norm only from
    opset 23 on.
    """

    def __init__(self, size: int, eps: float = NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps) * self.weight
        return nn.functional.rms_norm(x, self.weight.shape, self.weight.to(x.dtype), self.eps)


class NormLinear(nn.Module):
    """Linear -> RMSNorm -> SiLU, the layer DreamerV3 uses everywhere."""

    def __init__(self, inp: int, out: int):
        super().__init__()
        self.linear = nn.Linear(inp, out)
        self.norm = RMSNorm(out)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.silu(self.norm(self.linear(x)))


class MLP(nn.Sequential):
    """`layers` NormLinear layers of width `units` (the output is the last hidden)."""

    def __init__(self, inp: int, units: int, layers: int):
        super().__init__(*[NormLinear(inp if i == 0 else units, units) for i in range(layers)])
        self.out_dim = units if layers else inp


class BlockLinear(nn.Module):
    """A block-diagonal linear map: `groups` independent [in/g -> out/g] matrices.

    Used by the GRU so that the deterministic state is split into groups that only
    mix through the shared inputs, which cuts the GRU's cost by the group count.
    """

    def __init__(self, inp: int, out: int, groups: int):
        super().__init__()
        if inp % groups or out % groups:
            raise ValueError(f"BlockLinear sizes {inp} -> {out} are not divisible by {groups} groups")
        self.groups = groups
        bound = 1.0 / math.sqrt(inp // groups)
        self.weight = nn.Parameter(torch.empty(groups, inp // groups, out // groups).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out))

    def grouped(self, x: Tensor) -> Tensor:
        """x [N, in] -> [N, groups, out/g]; output group g only sees input group g.

        The result is a strided view of the [groups, N, out/g] product: callers that
        feed it to elementwise ops save the copy back to row-major order.
        """
        xg = x.reshape(x.shape[0], self.groups, -1).transpose(0, 1)  # [g, N, in/g], a view
        bias = self.bias.reshape(self.groups, 1, -1)
        return torch.baddbmm(bias, xg, self.weight).transpose(0, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x [N, in] -> [N, out]."""
        return self.grouped(x).reshape(x.shape[0], -1)


def official_init(root: nn.Module) -> None:
    """The official code's initialisation of every linear map below `root`: weights from a
    normal truncated at +-2, times 1.1368 / sqrt(fan_in) (the 1.1368 restores the unit
    variance the truncation takes away), biases zero. A block-diagonal map counts its
    whole input as fan-in, as the official BlockLinear does. Output layers keep their
    scale by setting `out_scale` on the layer: the actor's 0.01, zero for the reward head
    and the critic (see Actor and TwoHotHead); RMSNorm scales stay 1.
    """
    for module in root.modules():
        if isinstance(module, nn.Linear):
            weight, fan_in = module.weight, module.weight.shape[1]
        elif isinstance(module, BlockLinear):
            weight, fan_in = module.weight, module.weight.shape[0] * module.weight.shape[1]
        else:
            continue
        with torch.no_grad():
            nn.init.trunc_normal_(weight, std=1.0, a=-2.0, b=2.0)
            weight.mul_(1.1368 / math.sqrt(fan_in) * getattr(module, "out_scale", 1.0))
            if module.bias is not None:
                module.bias.zero_()


def zero_linear(inp: int, out: int) -> nn.Linear:
    """An output layer initialised to zero (reward head and critic start predicting 0)."""
    layer = nn.Linear(inp, out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    layer.out_scale = 0.0  # kept at zero by official_init too
    return layer


# ---- categorical latents ---------------------------------------------------------


def unimix_probs(logits: Tensor, unimix: float) -> Tensor:
    """(1 - unimix) softmax(logits) + unimix / C, so every class keeps >= unimix / C.

    logits [..., L, C]. The softmax runs over a transposed view: torch's CPU kernel is
    ~9x slower over a last dim of only C = 4 values than over a strided one.
    """
    probs = torch.softmax(logits.float().transpose(-1, -2), -2).transpose(-1, -2)
    return (1.0 - unimix) * probs + unimix / logits.shape[-1]


def onehot_mode(probs: Tensor) -> Tensor:
    """One-hot of the most likely class (scatter, so the ONNX exporter handles it)."""
    return torch.zeros_like(probs).scatter_(-1, probs.argmax(-1, keepdim=True), 1.0)


def onehot_sample(probs: Tensor, generator: torch.Generator) -> Tensor:
    """A one-hot sample with straight-through gradients: onehot + p - sg(p)."""
    u = torch.rand(probs.shape[:-1] + (1,), generator=generator, device=probs.device, dtype=probs.dtype)
    idx = (probs.cumsum(-1) < u).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
    onehot = torch.zeros_like(probs).scatter_(-1, idx, 1.0)
    return onehot + probs - probs.detach()


def categorical_kl(p: Tensor, q: Tensor) -> Tensor:
    """KL(p || q) of categoricals [..., L, C], summed over the L latents."""
    return (p * (torch.log(p) - torch.log(q))).sum((-2, -1))


# ---- actor distributions ---------------------------------------------------------

_HALF_LOG_2PIE = 0.5 * math.log(2.0 * math.pi * math.e)


def normal_entropy(std: Tensor) -> Tensor:
    """Entropy of a diagonal Normal, summed over the last dim: sum 0.5 ln(2 pi e s^2)."""
    return (_HALF_LOG_2PIE + torch.log(std)).sum(-1)


def _normal_log_prob(x: Tensor, loc: Tensor, std: Tensor) -> Tensor:
    z = (x - loc) / std
    return (-0.5 * z * z - torch.log(std) - 0.5 * math.log(2.0 * math.pi)).sum(-1)


class BoundedNormal:
    """DreamerV3's continuous policy: Normal(tanh(m), (max - min) sigmoid(s + 2) + min).

    The sample itself is unsquashed; the environment (and imagination) clip it to
    [-1, 1]. The entropy is the exact Gaussian entropy.
    """

    def __init__(self, mean: Tensor, std: Tensor):
        self.mean, self.std = mean, std

    def sample(self, generator: torch.Generator) -> Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    @staticmethod
    def to_action(raw: Tensor) -> Tensor:
        return raw.clamp(-1.0, 1.0)

    def log_prob(self, raw: Tensor) -> Tensor:
        return _normal_log_prob(raw, self.mean, self.std)

    def entropy(self, generator: torch.Generator) -> Tensor:
        return normal_entropy(self.std)

    def mode(self) -> Tensor:
        return self.mean.clamp(-1.0, 1.0)


class TanhNormal:
    """tanh(u), u ~ Normal(m, std): the users' original policy, kept as an option.

    log pi(a) includes the tanh change of variables, and the entropy is the entropy of
    the squashed action, estimated from one reparameterised sample as -log pi(a)
    (the Gaussian's entropy would keep rising while the actions saturate).
    """

    def __init__(self, loc: Tensor, std: Tensor):
        self.loc, self.std = loc, std

    def sample(self, generator: torch.Generator) -> Tensor:
        noise = torch.randn(self.loc.shape, generator=generator, device=self.loc.device, dtype=self.loc.dtype)
        return self.loc + self.std * noise

    @staticmethod
    def to_action(raw: Tensor) -> Tensor:
        return torch.tanh(raw)

    def log_prob(self, raw: Tensor) -> Tensor:
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        log_det = 2.0 * (math.log(2.0) - raw - nn.functional.softplus(-2.0 * raw))
        return _normal_log_prob(raw, self.loc, self.std) - log_det.sum(-1)

    def entropy(self, generator: torch.Generator) -> Tensor:
        return -self.log_prob(self.sample(generator))

    def mode(self) -> Tensor:
        return torch.tanh(self.loc)


ActionDist = BoundedNormal | TanhNormal


class Actor(nn.Module):
    """Features -> action distribution (`dist` 'bounded_normal' or 'tanh_normal')."""

    def __init__(self, feat_dim: int, act_dim: int, units: int, layers: int, dist: str, min_std: float, max_std: float):
        super().__init__()
        if dist not in ("bounded_normal", "tanh_normal"):
            raise ValueError(f"unknown actor dist {dist!r}; choices: bounded_normal, tanh_normal")
        self.dist, self.act_dim, self.min_std, self.max_std = dist, act_dim, min_std, max_std
        self.mlp = MLP(feat_dim, units, layers)
        self.out = nn.Linear(self.mlp.out_dim, 2 * act_dim)
        with torch.no_grad():  # small initial outputs: mean ~ 0, std ~ its initial value
            self.out.weight.mul_(0.01)
            self.out.bias.zero_()
        self.out.out_scale = 0.01  # the official output scale, kept by official_init

    def forward(self, feat: Tensor) -> ActionDist:
        return self.dist_from(self.head(feat))

    def head(self, feat: Tensor) -> Tensor:
        """Features -> the distribution's raw parameters [..., 2 * act_dim], float32."""
        return self.out(self.mlp(feat)).float()

    def dist_from(self, head: Tensor) -> ActionDist:
        """The distribution of `head(feat)` outputs (stacked outputs give a batched one)."""
        m, s = head.chunk(2, -1)
        std = (self.max_std - self.min_std) * torch.sigmoid(s + 2.0) + self.min_std
        if self.dist == "bounded_normal":
            return BoundedNormal(torch.tanh(m), std)
        return TanhNormal(m, std)


class TwoHotHead(nn.Module):
    """Features -> float32 logits over the two-hot bins, output layer zero-initialised."""

    def __init__(self, feat_dim: int, units: int, layers: int, bins: int):
        super().__init__()
        self.mlp = MLP(feat_dim, units, layers)
        self.out = zero_linear(self.mlp.out_dim, bins)

    def forward(self, feat: Tensor) -> Tensor:
        return self.out(self.mlp(feat)).float()
