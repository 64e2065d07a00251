"""PFSP sampler: weights follow the win rates, draws match the weights, state resumes."""

from __future__ import annotations

import numpy as np
import pytest

from selfplay.pfsp import PFSPSampler

# chi-square critical values at p = 0.001 by degrees of freedom
CHI2_999 = {3: 16.27, 4: 18.47, 5: 20.52}


def _table(sampler: PFSPSampler, wins: dict[str, int], games: int = 100) -> None:
    """Feed `wins[name]` learner wins out of `games` against each opponent."""
    for name, w in wins.items():
        for k in range(games):
            sampler.update(name, 1.0 if k < w else 0.0)


@pytest.mark.parametrize("weighting", ["squared", "variance"])
def test_frequencies_match_weights(weighting: str) -> None:
    sampler = PFSPSampler(
        league=["s1", "s2", "s3"],
        scripted=["weak", "strong"],
        weighting=weighting,
        self_share=0.2,
        scripted_share=0.3,
        window=100,
        prior_games=2.0,
    )
    wins = {"s1": 90, "s2": 50, "s3": 20, "weak": 80, "strong": 30}
    _table(sampler, wins)
    f = (lambda p: (1 - p) ** 2) if weighting == "squared" else (lambda p: p * (1 - p))
    rates = {n: (w + 1.0) / 102.0 for n, w in wins.items()}
    league_w = {n: f(rates[n]) for n in ("s1", "s2", "s3")}
    scripted_w = {n: f(rates[n]) for n in ("weak", "strong")}
    expected = {"self": 0.2}
    expected |= {n: 0.5 * w / sum(league_w.values()) for n, w in league_w.items()}
    expected |= {n: 0.3 * w / sum(scripted_w.values()) for n, w in scripted_w.items()}
    probs = sampler.probabilities()
    assert probs == pytest.approx(expected, rel=1e-12)

    n = 20000
    rng = np.random.default_rng(7)
    draws = [sampler.sample(rng) for _ in range(n)]
    names = list(expected)
    observed = np.array([draws.count(name) for name in names])
    exp = np.array([expected[name] * n for name in names])
    chi2 = float(((observed - exp) ** 2 / exp).sum())
    assert chi2 < CHI2_999[len(names) - 1], (dict(zip(names, observed)), chi2)


def test_squared_prefers_hard_opponents_and_unseen_are_even() -> None:
    sampler = PFSPSampler(league=["easy", "hard", "new"], self_share=0.0, scripted_share=0.0)
    _table(sampler, {"easy": 95, "hard": 10}, games=100)
    assert sampler.win_rate("new") == 0.5
    probs = sampler.probabilities()
    assert probs["hard"] > probs["new"] > probs["easy"]
    assert sum(probs.values()) == pytest.approx(1.0)


def test_empty_groups_give_their_share_to_the_rest() -> None:
    sampler = PFSPSampler(league=[], scripted=["weak"], self_share=0.25, scripted_share=0.25)
    assert sampler.probabilities() == pytest.approx({"self": 0.5, "weak": 0.5})


def test_window_keeps_only_recent_results() -> None:
    sampler = PFSPSampler(league=["a"], window=4, prior_games=2.0)
    for outcome in (0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0):
        sampler.update("a", outcome)
    assert sampler.win_rate("a") == pytest.approx((4 + 1) / 6)


def test_state_dict_round_trip() -> None:
    sampler = PFSPSampler(league=["a", "b"], scripted=["weak"], weighting="variance", window=10)
    _table(sampler, {"a": 3, "b": 7, "weak": 9}, games=10)
    restored = PFSPSampler()
    restored.load_state_dict(sampler.state_dict())
    assert restored.probabilities() == sampler.probabilities()
    assert restored.state_dict() == sampler.state_dict()
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    assert [sampler.sample(r1) for _ in range(50)] == [restored.sample(r2) for _ in range(50)]


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="choices"):
        PFSPSampler(weighting="cubic")
    sampler = PFSPSampler(league=["a"])
    with pytest.raises(ValueError, match="unknown opponent 'zz'"):
        sampler.update("zz", 1.0)
    with pytest.raises(ValueError, match="outcome"):
        sampler.update("a", 2.0)
    with pytest.raises(ValueError, match="already"):
        sampler.add("a")
    with pytest.raises(ValueError, match="<= 1"):
        PFSPSampler(self_share=0.7, scripted_share=0.5)
