"""Prioritised fictitious self-play (PFSP): which opponent the learner meets next.

Games are split into three shares: the latest self (the learner's current policy,
which keeps the learner from overfitting to frozen opponents), scripted players
(which keep basic skills from being forgotten) and the league of frozen snapshots
and external agents, the rest. Inside the scripted and league groups an opponent
is drawn with weight f(p), p the learner's recent win rate against it:
'squared' f = (1 - p)^2 spends games on opponents the learner still loses to;
'variance' f = p (1 - p) spends them on opponents of about equal strength.
Win rates come from each opponent's last `window` outcomes plus a prior of
`prior_games` games at a 50% win rate, so an unseen opponent counts as even.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

WEIGHTINGS: dict[str, Callable[[float], float]] = {
    "squared": lambda p: (1.0 - p) ** 2,
    "variance": lambda p: p * (1.0 - p),
}
GROUPS = ("league", "scripted")


class PFSPSampler:
    """Draws opponent names for the learner and learns from the games' outcomes.

    `latest` is the name returned for a game against the learner's current self.
    Outcomes passed to `update` are the learner's: 1 win, 0.5 draw, 0 loss.
    """

    def __init__(
        self,
        league: list[str] | tuple[str, ...] = (),
        scripted: list[str] | tuple[str, ...] = (),
        weighting: str = "squared",
        self_share: float = 0.2,
        scripted_share: float = 0.2,
        latest: str = "self",
        window: int = 100,
        prior_games: float = 2.0,
    ) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown PFSP weighting {weighting!r}; choices: {sorted(WEIGHTINGS)}")
        for label, share in (("self_share", self_share), ("scripted_share", scripted_share)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{label} must be in [0, 1], got {share}")
        if self_share + scripted_share > 1.0:
            raise ValueError(f"self_share + scripted_share must be <= 1, got {self_share + scripted_share}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if prior_games <= 0:
            raise ValueError(f"prior_games must be positive, got {prior_games}")
        self.weighting = weighting
        self.self_share = self_share
        self.scripted_share = scripted_share
        self.latest = latest
        self.window = window
        self.prior_games = prior_games
        self._group: dict[str, str] = {}
        self._results: dict[str, deque[float]] = {}
        for name in league:
            self.add(name)
        for name in scripted:
            self.add(name, scripted=True)

    def add(self, name: str, scripted: bool = False) -> None:
        """Make `name` available as an opponent (a new snapshot, say)."""
        if name == self.latest:
            raise ValueError(f"{name!r} is the latest self's name and cannot be a league opponent")
        if name in self._group:
            raise ValueError(f"opponent {name!r} is already in the pool")
        self._group[name] = "scripted" if scripted else "league"
        self._results[name] = deque(maxlen=self.window)

    def remove(self, name: str) -> None:
        self._known(name)
        del self._group[name], self._results[name]

    def names(self) -> tuple[str, ...]:
        """The opponents in the pool (the latest self not among them), in the order added."""
        return tuple(self._group)

    def forget(self) -> None:
        """Drop every recorded outcome (the learner was reset: what it won says nothing now)."""
        for results in self._results.values():
            results.clear()

    def _known(self, name: str) -> None:
        if name not in self._group:
            raise ValueError(f"unknown opponent {name!r}; choices: {sorted(self._group)}")

    def update(self, name: str, outcome: float) -> None:
        """Record the learner's outcome of one game against `name`."""
        if outcome not in (0.0, 0.5, 1.0):
            raise ValueError(f"outcome must be 1 (win), 0.5 (draw) or 0 (loss), got {outcome}")
        if name == self.latest:
            return  # games against the latest self carry no signal for PFSP
        self._known(name)
        self._results[name].append(float(outcome))

    def win_rate(self, name: str) -> float:
        """The learner's recent win rate against `name`, draws as halves, with the prior."""
        self._known(name)
        results = self._results[name]
        return (sum(results) + 0.5 * self.prior_games) / (len(results) + self.prior_games)

    def probabilities(self) -> dict[str, float]:
        """Each opponent's chance of being drawn next (the latest self included)."""
        f = WEIGHTINGS[self.weighting]
        weights = {name: f(self.win_rate(name)) for name in self._group}
        shares = {"league": 1.0 - self.self_share - self.scripted_share, "scripted": self.scripted_share}
        probs: dict[str, float] = {self.latest: self.self_share}
        totals = {g: sum(w for n, w in weights.items() if self._group[n] == g) for g in GROUPS}
        counts = {g: sum(1 for n in self._group if self._group[n] == g) for g in GROUPS}
        for name, w in weights.items():
            group = self._group[name]
            # all opponents of a group beaten for sure (weight 0): spread its share evenly
            probs[name] = shares[group] * (w / totals[group] if totals[group] > 0 else 1.0 / counts[group])
        # an empty group's share goes to the others in proportion, so probabilities sum to 1
        total = sum(probs.values())
        if total <= 0:
            return {self.latest: 1.0}
        return {name: p / total for name, p in probs.items()}

    def sample(self, rng: np.random.Generator) -> str:
        """Draw the next opponent's name."""
        probs = self.probabilities()
        names = list(probs)
        return names[int(rng.choice(len(names), p=np.array([probs[n] for n in names])))]

    def state_dict(self) -> dict[str, Any]:
        return {
            "weighting": self.weighting,
            "self_share": self.self_share,
            "scripted_share": self.scripted_share,
            "latest": self.latest,
            "window": self.window,
            "prior_games": self.prior_games,
            "opponents": {
                name: {"group": self._group[name], "results": list(self._results[name])} for name in self._group
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state saved with `state_dict` (for resuming a run), pool included."""
        restored = PFSPSampler(
            weighting=state["weighting"],
            self_share=state["self_share"],
            scripted_share=state["scripted_share"],
            latest=state["latest"],
            window=state["window"],
            prior_games=state["prior_games"],
        )
        for name, entry in state["opponents"].items():
            if entry["group"] not in GROUPS:
                raise ValueError(f"opponent {name!r} has unknown group {entry['group']!r}; choices: {list(GROUPS)}")
            restored.add(name, scripted=entry["group"] == "scripted")
            restored._results[name].extend(entry["results"])
        self.__dict__.update(restored.__dict__)
