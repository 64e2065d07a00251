"""The bundled game against the reference's recorded vectors (criteria of the conformance README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.game import scripted_action
from agent.game.conformance import (
    OBS_TOL,
    OPPONENT_TOL,
    RESET_TOL,
    VALUE_TOL,
    EpisodeResult,
    opponent_errors,
    replay,
    summary,
)

VECTORS = Path(__file__).parent / "data" / "vectors.npz"


@pytest.fixture(scope="module")
def results() -> list[EpisodeResult]:
    return replay(VECTORS)


def test_every_recorded_episode_is_replayed(results: list[EpisodeResult]) -> None:
    data = np.load(VECTORS)
    assert len(results) == int(data["n_episodes"]) > 0
    assert {(r.mode, r.keep_mode) for r in results} >= {(0, True), (1, True), (2, True), (0, False)}


def test_reset_observations_exact(results: list[EpisodeResult]) -> None:
    bad = {r.name: r.reset_err for r in results if r.reset_err > RESET_TOL}
    assert not bad


def test_first_ten_steps(results: list[EpisodeResult]) -> None:
    bad = {r.name: r.early_err for r in results if r.early_err > OBS_TOL}
    assert not bad


def test_winner_and_length(results: list[EpisodeResult]) -> None:
    share = np.mean([r.same_outcome for r in results])
    assert share >= 0.95, [r.name for r in results if not r.same_outcome]


def test_whole_episodes_observations(results: list[EpisodeResult]) -> None:
    share = np.mean([r.obs_ok for r in results])
    assert share >= 0.90, [(r.name, r.first_bad_step) for r in results if not r.obs_ok]


@pytest.mark.parametrize("quantity", ["reward", "reward2", "terminated", "info", "info2"])
def test_values_where_observations_agree(results: list[EpisodeResult], quantity: str) -> None:
    bad = {r.name: r.value_err[quantity] for r in results if r.value_err[quantity] > VALUE_TOL}
    assert not bad


def test_scripted_decisions() -> None:
    """The pure decision function at the recorded phase."""
    data = np.load(VECTORS)
    obs, phase, weak, action = (data[f"opponent/{k}"] for k in ("obs", "phase", "weak", "action"))
    ours = np.array([scripted_action(o, p, bool(w), True) for o, p, w in zip(obs, phase, weak)])
    assert len(ours) > 0 and float(np.max(np.abs(ours - action))) <= OPPONENT_TOL


def test_act_reproduces_recorded_decisions() -> None:
    """act() itself, its phase set so that after the random increment it is the recorded one."""
    err = opponent_errors(VECTORS)
    assert err.size > 0 and float(np.max(err)) <= OPPONENT_TOL


def test_reference_game_replays_too() -> None:
    """The harness against the reference itself, where that package is installed."""
    pytest.importorskip("hockey.hockey_env")
    results = replay(VECTORS, game="reference")
    assert all(r.obs_ok and r.same_outcome for r in results)


def test_bundled_game_is_exact(results: list[EpisodeResult]) -> None:
    """Stricter than the README: the literal float32 order reproduces every recorded episode."""
    rows = summary(results, opponent_errors(VECTORS))
    names = [row[0] for row in rows]
    assert len(rows) == 10 and len(set(names)) == 10
    assert all(share == 1.0 for _, _, share, _ in rows)
