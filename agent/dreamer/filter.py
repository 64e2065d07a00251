"""The posterior filter over replayed sequences as one autograd function.

`WorldModel.observe` runs T recurrent steps (GRU, posterior, straight-through sample) at
a small batch. Recorded op by op, each step leaves ~40 autograd nodes and its backward
~60 more, and at batch 16 the bookkeeping costs more than the arithmetic. `observe`
below computes the same function with a hand-written backward in three phases:

1. forward, step by step without autograd, keeping only the pre-activations
   (deter_in, stoch_in, z_d, z_s, x, h, q, deter, z_p, probs);
2. backward, step by step, propagating only what is sequential (the gradients of the
   state) and storing the gradient of every pre-activation, with every factor that does
   not depend on the incoming gradient (SiLU, RMSNorm, gate and softmax derivatives)
   computed for all T steps at once before the loop;
3. the parameter gradients as one product over all B T rows each.

The maths of one step (per row; G groups of the deter, Dg = D / G; W x means x W^T):

    d0 = keep_t d,  s0 = keep_t s
    x_d = silu(rms(W_d d0 + b_d) g_d),   x_s = silu(rms(W_s s0 + b_s) g_s)
    x = [x_d, x_s, a_t]                          a_t = in_action(prev_action_t)
    h = W_h x + blockdiag(W_b) d0 + b_b
    [r, c, u] = blockdiag(W_g) silu(rms(h) g_h) + b_g     (per group)
    deter = d0 + sigmoid(u - 1) (tanh(sigmoid(r) c) - d0)
    z_p = W_p deter + b_p + e_t                  e_t = post_embed(embed_t)
    probs = (1 - m) softmax(W_o silu(rms(z_p) g_p) + b_o) + m / C
    stoch = onehot(sample(probs)) + probs - sg(probs)

with rms(z) = z / sqrt(mean(z^2) + eps). The derivatives used: silu'(n) =
sigmoid(n) (1 + n (1 - sigmoid(n))); for y = rms(z) g and zh = rms(z),
dz = r (dzh - zh mean(dzh zh)) with dzh = dy g and r = 1 / sqrt(mean(z^2) + eps);
softmax: dl = p (dp - sum(dp p)). The tests check every gradient against autograd on
`WorldModel.observe_reference`, which stays the readable definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from agent.dreamer.nets import onehot_at


@dataclass(frozen=True)
class FilterShape:
    """Sizes and constants of the filter: groups, latents, classes, unimix and the
    epsilon of each RMSNorm (deter input, stoch input, hidden, posterior)."""

    groups: int
    latents: int
    classes: int
    unimix: float
    eps: tuple[float, float, float, float]


# The parameters in the order `observe` takes them (WorldModel.filter_params builds it).
PARAM_NAMES = (
    "W_d", "b_d", "g_d",  # in_deter: linear, norm
    "W_s", "b_s", "g_s",  # in_stoch
    "W_h",  # hid_inputs
    "W_b", "b_b",  # hid_deter (block-diagonal)
    "g_h",  # hid_norm
    "W_g", "b_g",  # gates (block-diagonal)
    "W_p", "b_p",  # post_deter
    "g_p",  # post_norm
    "W_o", "b_o",  # post_out
)  # fmt: skip


def _rms_parts(z: Tensor, g: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For x = silu(rms(z) g): r, zh = rms(z), silu'(rms(z) g) and x."""
    r = torch.rsqrt(z.square().mean(-1, keepdim=True) + eps)
    zh = z * r
    n = zh * g
    sig = torch.sigmoid(n)
    return r, zh, sig * (1.0 + n * (1.0 - sig)), n * sig


def _rms_back(dzh: Tensor, r: Tensor, zh: Tensor) -> Tensor:
    """Gradient through zh = rms(z): r (dzh - zh mean(dzh zh))."""
    return r * (dzh - zh * (dzh * zh).mean(-1, keepdim=True))


def _gates(q: Tensor, d0: Tensor) -> tuple[Tensor, Tensor]:
    """From gate pre-activations q [..., G, 3, Dg] and d0 [..., G, Dg]: the factors that
    turn d deter into d q ([..., G, 3, Dg]) and 1 - update."""
    r, c, u = q.unbind(-2)
    reset = torch.sigmoid(r)
    cand = torch.tanh(reset * c)
    update = torch.sigmoid(u - 1.0)
    dcand = update * (1.0 - cand * cand)  # d deter / d (reset c)
    factors = torch.stack([dcand * c * reset * (1.0 - reset), dcand * reset, (cand - d0) * update * (1.0 - update)], -2)
    return factors, 1.0 - update


class _Filter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shape: FilterShape, generator, keep, embed_in, action_in, start_d, start_s, *params):  # noqa: ANN001
        W_d, b_d, g_d, W_s, b_s, g_s, W_h, W_b, b_b, g_h, W_g, b_g, W_p, b_p, g_p, W_o, b_o = params
        G, L, C, m = shape.groups, shape.latents, shape.classes, shape.unimix
        batch, steps, hidden = embed_in.shape
        D, S = W_d.shape[1], W_s.shape[1]
        new = embed_in.new_empty
        D0, S0 = new(steps, batch, D), new(steps, batch, S)
        ZD, ZS, X = new(steps, batch, hidden), new(steps, batch, hidden), new(steps, batch, 3 * hidden)
        Hh, Q, DET = new(steps, batch, D), new(steps, batch, G, 3 * (D // G)), new(steps, batch, D)
        ZP, PROBS, STOCH = new(steps, batch, hidden), new(steps, batch, L, C), new(steps, batch, S)
        e_in = (embed_in + b_p).transpose(0, 1)  # [T, B, H]
        a_in = action_in.transpose(0, 1)
        keep_t = keep.transpose(0, 1).unsqueeze(-1)  # [T, B, 1]
        W_dT, W_sT, W_hT, W_pT, W_oT = W_d.t(), W_s.t(), W_h.t(), W_p.t(), W_o.t()
        bias_b, bias_g = b_b.reshape(G, 1, -1), b_g.reshape(G, 1, -1)
        has_start = start_d is not None
        d = start_d if has_start else embed_in.new_zeros(batch, D)
        s = start_s if has_start else embed_in.new_zeros(batch, S)
        for t in range(steps):
            if t > 0 or has_start:
                torch.mul(d, keep_t[t], out=D0[t])
                torch.mul(s, keep_t[t], out=S0[t])
            else:
                D0[t].copy_(d)
                S0[t].copy_(s)
            d0, s0 = D0[t], S0[t]
            torch.addmm(b_d, d0, W_dT, out=ZD[t])
            torch.addmm(b_s, s0, W_sT, out=ZS[t])
            x_d = F.silu(F.rms_norm(ZD[t], (hidden,), g_d, shape.eps[0]))
            x_s = F.silu(F.rms_norm(ZS[t], (hidden,), g_s, shape.eps[1]))
            torch.cat([x_d, x_s, a_in[t]], -1, out=X[t])
            blocks = torch.baddbmm(bias_b, d0.reshape(batch, G, -1).transpose(0, 1), W_b).transpose(0, 1)
            torch.add(torch.mm(X[t], W_hT).reshape(batch, G, -1), blocks, out=Hh[t].view(batch, G, -1))
            hx = F.silu(F.rms_norm(Hh[t], (D,), g_h, shape.eps[2]))
            Q[t].copy_(torch.baddbmm(bias_g, hx.reshape(batch, G, -1).transpose(0, 1), W_g).transpose(0, 1))
            r, c, u = Q[t].view(batch, G, 3, -1).unbind(2)
            cand = torch.tanh(torch.sigmoid(r) * c)
            torch.lerp(d0.view(batch, G, -1), cand, torch.sigmoid(u - 1.0), out=DET[t].view(batch, G, -1))
            torch.addmm(e_in[t], DET[t], W_pT, out=ZP[t])
            x_p = F.silu(F.rms_norm(ZP[t], (hidden,), g_p, shape.eps[3]))
            logits = torch.addmm(b_o, x_p, W_oT).view(batch, L, C)
            # the softmax over a strided view, as unimix_probs does (faster on the CPU)
            soft = torch.softmax(logits.transpose(-1, -2), -2).transpose(-1, -2)
            torch.add(soft * (1.0 - m), m / C, out=PROBS[t])
            u_draw = torch.rand((batch, L, 1), generator=generator, device=embed_in.device, dtype=embed_in.dtype)
            STOCH[t].copy_(onehot_at(PROBS[t], u_draw).view(batch, S))
            d, s = DET[t], STOCH[t]
        ctx.shape, ctx.has_start = shape, has_start
        ctx.save_for_backward(keep, D0, S0, ZD, ZS, X, Hh, Q, DET, ZP, PROBS, *params)
        return DET.transpose(0, 1).contiguous(), STOCH.transpose(0, 1).contiguous(), PROBS.transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx, g_det, g_stoch, g_probs):  # noqa: ANN001
        keep, D0, S0, ZD, ZS, X, Hh, Q, DET, ZP, PROBS, *params = ctx.saved_tensors
        W_d, b_d, g_d, W_s, b_s, g_s, W_h, W_b, b_b, g_h, W_g, b_g, W_p, b_p, g_p, W_o, b_o = params
        shape = ctx.shape
        G, L, C, m = shape.groups, shape.latents, shape.classes, shape.unimix
        steps, batch, D = D0.shape
        hidden, S, Dg = ZD.shape[-1], S0.shape[-1], D // G

        # Phase 2a: every factor that does not depend on the incoming gradient, all steps at once.
        r_d, zh_d, ds_d, _ = _rms_parts(ZD, g_d, shape.eps[0])
        r_s, zh_s, ds_s, _ = _rms_parts(ZS, g_s, shape.eps[1])
        r_h, zh_h, ds_h, hx = _rms_parts(Hh, g_h, shape.eps[2])
        r_p, zh_p, ds_p, xp = _rms_parts(ZP, g_p, shape.eps[3])
        a_d, a_s, a_h, a_p = ds_d * g_d, ds_s * g_s, ds_h * g_h, ds_p * g_p  # d x / d zh
        factors, keep_old = _gates(Q.view(steps, batch, G, 3, Dg), D0.view(steps, batch, G, Dg))
        soft = (PROBS - m / C) / (1.0 - m)  # the softmax before unimix
        soft_scaled = soft * (1.0 - m)
        g_p_in = g_probs.transpose(0, 1) + g_stoch.transpose(0, 1).reshape(steps, batch, L, C)  # straight-through
        g_d_in = g_det.transpose(0, 1)
        keep_t = keep.transpose(0, 1).unsqueeze(-1)

        # Phase 2b: the sequential part, from the last step to the first.
        new = D0.new_empty
        GL, GXP, GZP = new(steps, batch, S), new(steps, batch, hidden), new(steps, batch, hidden)
        GQ, GHX, GH = new(steps, batch, G, 3, Dg), new(steps, batch, D), new(steps, batch, D)
        GX, GZD, GZS = new(steps, batch, 3 * hidden), new(steps, batch, hidden), new(steps, batch, hidden)
        W_gT, W_bT = W_g.transpose(1, 2), W_b.transpose(1, 2)
        carry_d, carry_s = D0.new_zeros(batch, D), D0.new_zeros(batch, S)
        for t in reversed(range(steps)):
            gp = g_p_in[t] + carry_s.view(batch, L, C)
            gl = GL[t].view(batch, L, C)
            torch.mul(soft_scaled[t], gp - (gp * soft[t]).sum(-1, keepdim=True), out=gl)
            torch.mm(GL[t], W_o, out=GXP[t])
            GZP[t] = _rms_back(GXP[t] * a_p[t], r_p[t], zh_p[t])
            g_deter = torch.addmm(g_d_in[t] + carry_d, GZP[t], W_p)
            torch.mul(g_deter.view(batch, G, 1, Dg), factors[t], out=GQ[t])
            g_hx = torch.bmm(GQ[t].view(batch, G, 3 * Dg).transpose(0, 1), W_gT)  # [G, B, Dg]
            GHX[t].view(batch, G, Dg).copy_(g_hx.transpose(0, 1))
            GH[t] = _rms_back(GHX[t] * a_h[t], r_h[t], zh_h[t])
            torch.mm(GH[t], W_h, out=GX[t])
            g_d0 = g_deter * keep_old[t].reshape(batch, D)
            g_d0 += torch.bmm(GH[t].view(batch, G, Dg).transpose(0, 1), W_bT).transpose(0, 1).reshape(batch, D)
            GZD[t] = _rms_back(GX[t, :, :hidden] * a_d[t], r_d[t], zh_d[t])
            GZS[t] = _rms_back(GX[t, :, hidden : 2 * hidden] * a_s[t], r_s[t], zh_s[t])
            g_d0 = torch.addmm(g_d0, GZD[t], W_d)
            g_s0 = torch.mm(GZS[t], W_s)
            if t > 0 or ctx.has_start:
                carry_d, carry_s = g_d0 * keep_t[t], g_s0 * keep_t[t]

        # Phase 3: the parameter gradients, each one product over all B T rows.
        def rows(x: Tensor) -> Tensor:
            return x.reshape(steps * batch, -1)

        def grouped(x: Tensor) -> Tensor:  # [T, B, G * k] -> [G, T B, k]
            return x.reshape(steps * batch, G, -1).transpose(0, 1)

        GQr = GQ.view(steps, batch, G * 3 * Dg)
        grads = (
            rows(GZD).t() @ rows(D0), rows(GZD).sum(0), rows(GX[..., :hidden] * ds_d * zh_d).sum(0),
            rows(GZS).t() @ rows(S0), rows(GZS).sum(0), rows(GX[..., hidden : 2 * hidden] * ds_s * zh_s).sum(0),
            rows(GH).t() @ rows(X),
            torch.bmm(grouped(D0).transpose(1, 2), grouped(GH)), rows(GH).sum(0),
            rows(GHX * ds_h * zh_h).sum(0),
            torch.bmm(grouped(hx).transpose(1, 2), grouped(GQr)), rows(GQr).sum(0),
            rows(GZP).t() @ rows(DET), rows(GZP).sum(0),
            rows(GXP * ds_p * zh_p).sum(0),
            rows(GL).t() @ rows(xp), rows(GL).sum(0),
        )  # fmt: skip
        g_embed = GZP.transpose(0, 1)
        g_action = GX[..., 2 * hidden :].transpose(0, 1)
        g_start_d = g_start_s = None
        if ctx.has_start:
            g_start_d, g_start_s = carry_d, carry_s
        return None, None, None, g_embed, g_action, g_start_d, g_start_s, *grads


def observe(
    shape: FilterShape,
    params: tuple[Tensor, ...],
    embed_in: Tensor,
    action_in: Tensor,
    keep: Tensor,
    generator: torch.Generator,
    start: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The filter of `WorldModel.observe_reference` with the hand-written backward.

    embed_in [B, T, H] (post_embed of the embedding, without post_deter's bias: that is
    b_p here), action_in [B, T, H], keep [B, T] (0 where a row restarts), start (deter
    [B, D], stoch [B, S]) or None for zeros. Draws the same random numbers in the same
    order as the reference. Returns deter [B, T, D], stoch [B, T, S], probs [B, T, L, C].
    """
    start_d, start_s = start if start is not None else (None, None)
    return _Filter.apply(shape, generator, keep, embed_in, action_in, start_d, start_s, *params)
