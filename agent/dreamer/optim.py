"""The optimiser of the current official DreamerV3 code: LaProp with adaptive gradient
clipping and a linear warm-up.

Per parameter tensor p with gradient g, at update t = 1, 2, ...:

    g   <- g / max(1, ||g|| / (agc * max(pmin, ||p||)))      adaptive clipping, per tensor
    nu  <- beta2 nu + (1 - beta2) g^2
    u   =  g / (sqrt(nu / (1 - beta2^t)) + eps)               scale by the running RMS first...
    mu  <- beta1 mu + (1 - beta1) u
    p   <- p - lr_t mu / (1 - beta1^t)                        ...then momentum (LaProp)
    lr_t = lr min(1, (t - 1) / warmup)                        linear warm-up from 0

(the official chain: clip_by_agc(0.3), scale_by_rms(0.999, 1e-20), scale_by_momentum(0.9),
a linear schedule from 0 to lr over 1,000 updates; weight decay 0). Unlike Adam, the
momentum averages already normalised steps, so a tiny eps (1e-20) is safe and the first
steps are not shrunk by eps the way Adam's eps 1e-5 shrinks gradients near 1e-8.
Every quantity is a tensor on the parameter's device, so the step can be captured in a
CUDA graph as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class LaProp(torch.optim.Optimizer):
    """LaProp + adaptive gradient clipping + linear warm-up (see the module docstring)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 4e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-20,
        agc: float = 0.3,
        pmin: float = 1e-3,
        warmup: int = 1000,
    ) -> None:
        if lr <= 0 or eps <= 0 or agc < 0 or pmin <= 0 or warmup < 0:
            raise ValueError(
                f"LaProp needs lr, eps, pmin > 0 and agc, warmup >= 0; got {lr}, {eps}, {pmin}, {agc}, {warmup}"
            )
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"LaProp betas must be in [0, 1), got {betas}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "agc": agc, "pmin": pmin, "warmup": warmup}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 (torch's signature)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            beta1, beta2 = group["betas"]
            if group["agc"] > 0:
                gnorms = torch._foreach_norm(grads)
                pnorms = torch._foreach_norm(params)
                for g, gnorm, pnorm in zip(grads, gnorms, pnorms):
                    upper = group["agc"] * pnorm.clamp(min=group["pmin"])
                    g.div_(torch.clamp(gnorm / upper, min=1.0))
            for p, g in zip(params, grads):
                state = self.state[p]
                if not state:
                    # the step count in the parameter's precision (float32 for float32 and lower)
                    dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
                    state["step"] = torch.zeros((), dtype=dtype, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                step, mu, nu = state["step"], state["exp_avg"], state["exp_avg_sq"]
                step.add_(1.0)
                nu.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                scaled = g / ((nu / (1.0 - beta2**step)).sqrt() + group["eps"])
                mu.mul_(beta1).add_(scaled, alpha=1.0 - beta1)
                lr = group["lr"]
                if group["warmup"] > 0:
                    lr = lr * torch.clamp((step - 1.0) / group["warmup"], max=1.0)
                p.sub_(lr * mu / (1.0 - beta1**step))
        return loss
