"""Ratings: Elo by hand, Bradley-Terry recovers known strengths, OpenSkill as comprl feeds it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from league.ratings import COMPRL_MU, COMPRL_SIGMA, Game, bradley_terry, elo, openskill, outcome


def test_outcome_counts_rounds_and_draws_as_halves() -> None:
    assert outcome(2, 1) == 1.0
    assert outcome(0, 0) == 0.5
    assert outcome(1, 1) == 0.5
    assert outcome(0, 3) == 0.0


def test_elo_matches_hand_computed_updates() -> None:
    games = [Game("a", "b", 2, 1), Game("b", "c", 1, 1), Game("c", "a", 3, 0)]
    r = elo(games, ["a", "b", "c"], k=16)
    # game 1: equal ratings, expected 0.5: a +8 -> 1008, b -> 992
    # game 2: b (992) draws c (1000): E_b = 1 / (1 + 10^(8/400)) = 0.488489109,
    #   delta = 16 (0.5 - 0.488489109) = 0.184174259 -> b 992.184174, c 999.815826
    # game 3: c (999.815826) beats a (1008): E_c = 1 / (1 + 10^(8.184174/400)) = 0.488224204,
    #   delta = 16 (1 - 0.488224204) = 8.188412729 -> c 1008.004238, a 999.811587
    assert r["a"] == pytest.approx(999.811587, abs=1e-5)
    assert r["b"] == pytest.approx(992.184174, abs=1e-5)
    assert r["c"] == pytest.approx(1008.004238, abs=1e-5)


def test_elo_is_anchored_on_weak() -> None:
    games = [Game("weak", "x", 0, 2), Game("x", "y", 1, 0)]
    r = elo(games, ["weak", "x", "y"], k=32)
    assert r["weak"] == 1000.0
    # first game: weak loses 16 (K 32 at even odds), so everyone is shifted up by 16
    assert r["x"] == pytest.approx(1016 + 16 + 32 * (1 - 1 / (1 + 10 ** (-16 / 400))))


def _simulate(true: dict[str, float], n_games: int, seed: int, draw: float = 0.1) -> list[Game]:
    """Games whose expected outcome (draws as halves) is the Elo-scale BT probability."""
    rng = np.random.default_rng(seed)
    names = list(true)
    games = []
    for _ in range(n_games):
        i, j = rng.choice(len(names), size=2, replace=False)
        p = 1.0 / (1.0 + 10.0 ** ((true[names[j]] - true[names[i]]) / 400.0))
        d = min(draw, 2 * p, 2 * (1 - p))  # win p - d/2, draw d, loss 1 - p - d/2
        u = rng.random()
        score = (2, 1) if u < p - d / 2 else (1, 1) if u < p + d / 2 else (0, 1)
        games.append(Game(names[i], names[j], *score))
    return games


def test_bradley_terry_recovers_known_strengths_within_intervals() -> None:
    true = {"weak": 1000.0, "a": 800.0, "b": 1150.0, "c": 1350.0, "d": 900.0}
    games = _simulate(true, 3000, seed=11)
    bt = bradley_terry(games, list(true), n_boot=200, seed=1)
    for i, name in enumerate(bt.members):
        assert bt.low[i] <= true[name] <= bt.high[i], (name, bt.as_dict()[name])
        assert abs(bt.value[i] - true[name]) < 60, (name, bt.value[i])
    w = bt.members.index("weak")
    assert (
        bt.value[w] == pytest.approx(1000.0)
        and bt.low[w] == pytest.approx(1000.0)
        and bt.high[w] == pytest.approx(1000.0)
    )
    # order recovered, intervals of neighbours 150+ apart do not overlap
    order = [bt.members[i] for i in np.argsort(-bt.value)]
    assert order == ["c", "b", "weak", "d", "a"]
    assert bt.low[bt.members.index("c")] > bt.high[bt.members.index("b")]


def test_bradley_terry_keeps_unbeaten_players_finite_and_orders_them() -> None:
    games = [Game("top", "weak", 2, 0)] * 10 + [Game("weak", "bottom", 3, 1)] * 10
    bt = bradley_terry(games, ["top", "weak", "bottom"], n_boot=50)
    values = bt.as_dict()
    assert all(math.isfinite(v) for triple in values.values() for v in triple)
    assert values["top"][0] > 1000.0 > values["bottom"][0]


def test_bradley_terry_without_anchor_centres_on_1000() -> None:
    games = _simulate({"p": 1100.0, "q": 900.0}, 200, seed=3)
    bt = bradley_terry(games, ["p", "q"], n_boot=0)
    assert float(np.mean(bt.value)) == pytest.approx(1000.0)
    assert bt.value[0] > bt.value[1]


def test_openskill_follows_the_package_fed_like_comprl() -> None:
    from openskill.models import PlackettLuce

    games = [
        Game("a", "b", 3, 1),
        Game("b", "c", 0, 0),
        Game("c", "a", 2, 2),
        Game("a", "c", 0, 1),
        Game("b", "a", 4, 0),
    ]
    ours = openskill(games, ["a", "b", "c"])
    model = PlackettLuce()
    ref = {n: model.rating(mu=COMPRL_MU, sigma=COMPRL_SIGMA, name=n) for n in "abc"}
    for g in games:
        [[x], [y]] = model.rate([[ref[g.player1]], [ref[g.player2]]], scores=[g.score1, g.score2])
        ref[g.player1], ref[g.player2] = x, y
    for n in "abc":
        assert ours[n].mu == pytest.approx(ref[n].mu, rel=1e-12)
        assert ours[n].sigma == pytest.approx(ref[n].sigma, rel=1e-12)
        assert ours[n].conservative == pytest.approx(ref[n].mu - 3 * ref[n].sigma, rel=1e-12)


def test_openskill_first_game_matches_the_plackett_luce_formula() -> None:
    # one 1-vs-1 game from comprl's start (mu 25, sigma 8.333) with the model's beta 25/6:
    # c = sqrt(2 sigma^2 + 2 beta^2) = 13.1760, winner's mu += sigma^2 / c * (1 - 1/2)
    r = openskill([Game("a", "b", 1, 0)], ["a", "b"])
    c = math.sqrt(2 * 8.333**2 + 2 * (25 / 6) ** 2)
    assert r["a"].mu == pytest.approx(25 + 8.333**2 / c / 2, abs=1e-3)
    assert r["b"].mu == pytest.approx(25 - 8.333**2 / c / 2, abs=1e-3)
    assert r["a"].sigma < 8.333
    tie = openskill([Game("a", "b", 2, 2)], ["a", "b"])
    assert tie["a"].mu == pytest.approx(25.0) and tie["b"].mu == pytest.approx(25.0)


def test_unknown_players_and_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="'zz' is not a member"):
        elo([Game("a", "zz", 1, 0)], ["a"])
    with pytest.raises(ValueError, match="K must be positive"):
        elo([], ["a"], k=0)
    with pytest.raises(ValueError, match="prior"):
        bradley_terry([], ["a"], prior=0.0)
