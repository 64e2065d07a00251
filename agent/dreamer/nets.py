"""Building blocks: RMSNorm + SiLU MLPs, block-diagonal linear layers, categorical
latents with unimix and straight-through samples, and the three actor distributions.

Every sampling function takes an explicit `torch.Generator`, so an agent's random
stream is part of its saved state and a resumed run continues bit for bit. Each actor
distribution also samples from given noise (`draw_noise(generator)` then
`sample_from(noise)` is `sample(generator)`, draw for draw), which is how an exported
graph samples: the runtime draws the noise and feeds it in.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from agent.config import CHOICES

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


def onehot_at(probs: Tensor, u: Tensor) -> Tensor:
    """The one-hot class a uniform u in [0, 1) picks by inverse CDF: the first class whose
    cumulative probability exceeds u. probs [..., C], u [..., 1]; no gradient."""
    idx = (probs.cumsum(-1) < u).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
    return torch.zeros_like(probs).scatter_(-1, idx, 1.0)


def onehot_sample(probs: Tensor, generator: torch.Generator) -> Tensor:
    """A one-hot sample with straight-through gradients: onehot + p - sg(p)."""
    u = torch.rand(probs.shape[:-1] + (1,), generator=generator, device=probs.device, dtype=probs.dtype)
    return onehot_at(probs, u) + probs - probs.detach()


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


def _standard_normal(like: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


class BoundedNormal:
    """DreamerV3's continuous policy: Normal(tanh(m), (max - min) sigmoid(s + 2) + min).

    The sample itself is unsquashed; the environment (and imagination) clip it to
    [-1, 1]. The entropy is the exact Gaussian entropy. Noise: standard normal [..., A].
    """

    noise_kind = "normal"

    def __init__(self, mean: Tensor, std: Tensor):
        self.mean, self.std = mean, std

    def draw_noise(self, generator: torch.Generator) -> Tensor:
        return _standard_normal(self.mean, generator)

    def sample_from(self, noise: Tensor) -> Tensor:
        return self.mean + self.std * noise

    def sample(self, generator: torch.Generator) -> Tensor:
        return self.sample_from(self.draw_noise(generator))

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
    (the Gaussian's entropy would keep rising while the actions saturate). Noise:
    standard normal [..., A].
    """

    noise_kind = "normal"

    def __init__(self, loc: Tensor, std: Tensor):
        self.loc, self.std = loc, std

    def draw_noise(self, generator: torch.Generator) -> Tensor:
        return _standard_normal(self.loc, generator)

    def sample_from(self, noise: Tensor) -> Tensor:
        return self.loc + self.std * noise

    def sample(self, generator: torch.Generator) -> Tensor:
        return self.sample_from(self.draw_noise(generator))

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


# ---- discrete actions ------------------------------------------------------------

# The 8 directions of a full-force move, counter-clockwise from +x (diagonals push
# both axes at full force; the game clips each value to [-1, 1] on its own).
DIRECTIONS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
TURNS = ((0, "no turn"), (1, "turn left (torque +1, counter-clockwise)"), (-1, "turn right (torque -1)"))


def _bins3() -> tuple[tuple[tuple[float, ...], ...], ...]:
    """4 groups (x force, y force, torque, shoot) of 3 classes: the value -1, 0 or +1 in
    that dimension, 0 in the others."""
    return tuple(tuple(tuple(float(v) if d == g else 0.0 for d in range(4)) for v in (-1, 0, 1)) for g in range(4))


def _joint25() -> tuple[tuple[tuple[float, ...], ...], ...]:
    """One group of 25 joint actions (x, y, torque, shoot): index 8 t + k is direction k
    of DIRECTIONS with turn t of TURNS (0-7 no turn, 8-15 left, 16-23 right); 24 shoots."""
    moves = tuple((float(x), float(y), float(turn), 0.0) for turn, _ in TURNS for x, y in DIRECTIONS)
    return (moves + ((0.0, 0.0, 0.0, 1.0),),)


# name -> groups of classes, each class an action vector (x force, y force, torque, shoot).
# The names are agent/config.py's CHOICES[("actor", "action_set")].
ACTION_SETS: dict[str, tuple[tuple[tuple[float, ...], ...], ...]] = {"bins3": _bins3(), "joint25": _joint25()}


def action_table(action_set: str) -> Tensor:
    """The action set as a float32 tensor [groups, classes, 4]."""
    if action_set not in ACTION_SETS:
        raise ValueError(f"unknown action set {action_set!r}; choices: {', '.join(ACTION_SETS)}")
    return torch.tensor(ACTION_SETS[action_set], dtype=torch.float32)


def max_discrete_entropy(action_set: str) -> float:
    """sum over the groups of ln(classes): the entropy of the uniform policy."""
    return sum(math.log(len(group)) for group in ACTION_SETS[action_set])


class Discrete:
    """Independent categoricals over an action set (DreamerV3's discrete policy).

    G groups of C classes (`action_table`); probs = (1 - unimix) softmax(logits) +
    unimix / C per group (official: 1% unimix). A sample (the `raw` value that
    REINFORCE scores) is the flattened one-hot [..., G * C]; its action is
    sum_g table[g, class_g], so `to_action` is one matrix product with the table
    [G * C, 4]. log pi = sum_g log p_g(class_g); the entropy is exact,
    H = -sum_g sum_c p_gc ln p_gc, within [0, sum_g ln C] (`max_discrete_entropy`).
    The mode takes each group's most likely class. Noise: one uniform in [0, 1) per group
    [..., G], which picks the class by inverse CDF (`onehot_at`).

    Action sets (`ACTION_SETS`): 'bins3', 4 groups of 3 classes, the values -1, 0, +1 of
    each action dimension (81 joint actions); 'joint25', one group of 25 actions:

    | index | x force, y force (DIRECTIONS[k]) | torque | shoot |
    | --- | --- | --- | --- |
    | 0-7 | (1,0) (1,1) (0,1) (-1,1) (-1,0) (-1,-1) (0,-1) (1,-1) for k = 0-7 | 0 | 0 |
    | 8-15 | the same 8 directions | +1 (turn left) | 0 |
    | 16-23 | the same 8 directions | -1 (turn right) | 0 |
    | 24 | (0, 0), no move | 0 | 1 (shoot) |

    Of the 25 moves {stay, 8 directions} x {no turn} + {8 directions} x {left, right},
    the pure no-op (stay, no turn, no shoot) is the one left out: the shoot action is that
    no-op whenever the agent does not hold the puck, and releases it when it does.
    """

    noise_kind = "uniform"

    def __init__(self, logits: Tensor, table: Tensor, unimix: float):
        self.probs = unimix_probs(logits, unimix)  # [..., G, C], float32
        self.table = table  # [G, C, A]

    def draw_noise(self, generator: torch.Generator) -> Tensor:
        shape = self.probs.shape[:-1]
        return torch.rand(shape, generator=generator, device=self.probs.device, dtype=self.probs.dtype)

    def sample_from(self, noise: Tensor) -> Tensor:
        return onehot_at(self.probs, noise.unsqueeze(-1)).flatten(-2)

    def sample(self, generator: torch.Generator) -> Tensor:
        return self.sample_from(self.draw_noise(generator))

    def to_action(self, raw: Tensor) -> Tensor:
        return raw @ self.table.flatten(0, 1)

    def log_prob(self, raw: Tensor) -> Tensor:
        return (raw.unflatten(-1, self.probs.shape[-2:]) * torch.log(self.probs)).sum((-2, -1))

    def entropy(self, generator: torch.Generator) -> Tensor:
        return -(self.probs * torch.log(self.probs)).sum((-2, -1))

    def mode(self) -> Tensor:
        return self.to_action(onehot_mode(self.probs).flatten(-2))


ActionDist = BoundedNormal | TanhNormal | Discrete
ACTOR_DISTS = CHOICES["actor", "dist"]


class Actor(nn.Module):
    """Features -> action distribution (`dist` 'bounded_normal', 'tanh_normal' or
    'discrete' over `action_set` with `unimix`).

    The head outputs 2 A values (mean and std parameters) for the continuous
    distributions, G * C logits for 'discrete'. A sample is driven by noise of
    `noise_size` values per row, of kind `noise_kind` ('normal' or 'uniform').
    """

    table: Tensor

    def __init__(
        self,
        feat_dim: int,
        act_dim: int,
        units: int,
        layers: int,
        dist: str,
        min_std: float,
        max_std: float,
        action_set: str = "bins3",
        unimix: float = 0.01,
    ):
        super().__init__()
        if dist not in ACTOR_DISTS:
            raise ValueError(f"unknown actor dist {dist!r}; choices: {', '.join(ACTOR_DISTS)}")
        self.dist, self.act_dim, self.min_std, self.max_std = dist, act_dim, min_std, max_std
        self.action_set, self.unimix = action_set, unimix
        self.discrete = dist == "discrete"
        if self.discrete:
            table = action_table(action_set)
            if table.shape[-1] != act_dim:
                raise ValueError(f"action set {action_set!r} holds {table.shape[-1]}-value actions, not {act_dim}")
            self.register_buffer("table", table, persistent=False)
            self.groups, self.classes = table.shape[0], table.shape[1]
            outputs, self.noise_size, self.noise_kind = self.groups * self.classes, self.groups, "uniform"
        else:
            outputs, self.noise_size, self.noise_kind = 2 * act_dim, act_dim, "normal"
        self.mlp = MLP(feat_dim, units, layers)
        self.out = nn.Linear(self.mlp.out_dim, outputs)
        with torch.no_grad():  # small initial outputs: mean ~ 0, std ~ its initial value; near-uniform logits
            self.out.weight.mul_(0.01)
            self.out.bias.zero_()
        self.out.out_scale = 0.01  # the official output scale, kept by official_init

    def forward(self, feat: Tensor) -> ActionDist:
        return self.dist_from(self.head(feat))

    def head(self, feat: Tensor) -> Tensor:
        """Features -> the distribution's raw parameters [..., 2 A or G C], float32."""
        return self.out(self.mlp(feat)).float()

    def dist_from(self, head: Tensor) -> ActionDist:
        """The distribution of `head(feat)` outputs (stacked outputs give a batched one)."""
        if self.discrete:
            return Discrete(head.reshape(*head.shape[:-1], self.groups, self.classes), self.table, self.unimix)
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
