"""An optional intrinsic reward for imagination: ensemble disagreement (Plan2Explore).

DreamerV3 explores only through its entropy bonus and its own action noise. On a
sparse task the actor may never see a goal in imagination; a bonus for states the
world model is unsure about can lead it there. `members` small MLPs each predict the
next posterior stochastic state from the current features and action, trained on
replayed sequences (features detached, so the world model is untouched). Where they
disagree, the model has seen little: the bonus of an imagined transition is the
standard deviation across members, averaged over the predicted values, and
`explore.scale` times it is added to the predicted reward of the step it leads to.
The return normalisation then treats both as one return. scale 0 (the default)
builds nothing and leaves the agent exactly as without this module.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from agent.dreamer.nets import MLP


class Disagreement(nn.Module):
    """`members` predictors of the next stochastic state; disagreement as a bonus."""

    def __init__(self, feat_dim: int, act_dim: int, target_dim: int, units: int, layers: int, members: int):
        super().__init__()
        if members < 2:
            raise ValueError(f"explore.members must be >= 2 for a disagreement, got {members}")
        self.members = nn.ModuleList(
            nn.Sequential(MLP(feat_dim + act_dim, units, layers), nn.Linear(units, target_dim)) for _ in range(members)
        )

    def predict(self, feat: Tensor, action: Tensor) -> Tensor:
        """[..., F], [..., A] -> [members, ..., target] float32 predictions."""
        x = torch.cat([feat, action], -1)
        return torch.stack([m(x).float() for m in self.members])

    def loss(self, feat: Tensor, action: Tensor, next_stoch: Tensor, valid: Tensor) -> Tensor:
        """Mean squared error of every member over the valid transitions (bool [...])."""
        err = ((self.predict(feat, action) - next_stoch) ** 2).mean((0, -1))  # mean over members and values
        weight = valid.float()
        return (err * weight).sum() / weight.sum().clamp(min=1.0)

    @torch.no_grad()
    def bonus(self, feat: Tensor, action: Tensor) -> Tensor:
        """The intrinsic reward of taking `action` in `feat`: std across members, averaged."""
        return self.predict(feat, action).std(0).mean(-1)
