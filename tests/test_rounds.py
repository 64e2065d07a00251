"""The round detector against recorded games: every true reset found, no false ones.

Two sources: the reference game's recordings (tests/data/vectors.npz, consecutive
episodes on one game object, so counters carry over as on the server) and games of the
bundled game played through agent.players.match, seen from both players.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.game.rules import mirror, parse_mode
from export.rounds import RoundDetector, is_discontinuous, is_reset_configuration

VECTORS = Path(__file__).parent / "data" / "vectors.npz"


def detect(stream: list[np.ndarray], mode: int) -> np.ndarray:
    detector = RoundDetector(mode)
    return np.array([detector.observe(obs) for obs in stream])


def reference_streams() -> list[tuple[int, str, bool, list[np.ndarray], np.ndarray]]:
    """Per mode and view: the concatenated episodes (keep mode), with or without the terminal obs.

    The server never sends the terminal observation (it resets right after the last
    step); both ways must work.
    """
    data = np.load(VECTORS)
    streams = []
    for mode in (0, 1, 2):
        episodes = [
            i
            for i in range(int(data["n_episodes"]))
            if int(data[f"ep{i:03d}/mode"]) == mode and bool(data[f"ep{i:03d}/keep_mode"])
        ]
        for key in ("obs", "obs2"):
            for server_style in (True, False):
                stream: list[np.ndarray] = []
                truth: list[bool] = []
                for i in episodes:
                    observations = data[f"ep{i:03d}/{key}"]
                    if server_style:
                        observations = observations[:-1]
                    stream.extend(observations)
                    truth.extend([True] + [False] * (len(observations) - 1))
                streams.append((mode, key, server_style, stream, np.array(truth)))
    return streams


@pytest.mark.parametrize("mode, key, server_style, stream, truth", reference_streams())
def test_reference_recordings(mode: int, key: str, server_style: bool, stream: list, truth: np.ndarray) -> None:
    found = detect(stream, mode)
    assert truth.sum() == 12
    np.testing.assert_array_equal(found, truth)


class Recorder:
    """Wraps a policy and records what it sees, marking the first observation after reset()."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.observations: list[np.ndarray] = []
        self.starts: list[bool] = []
        self._fresh = True

    def reset(self) -> None:
        self.policy.reset()
        self._fresh = True

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.observations.append(np.array(obs))
        self.starts.append(self._fresh)
        self._fresh = False
        return self.policy.act(obs)


class Homing:
    """Drives back to its start spot (-3, 0) and rests there: the false-reset trap."""

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        target = np.array([-3.0, 0.0, 0.0])
        move = np.clip(3.0 * (target - obs[0:3]) - 1.0 * obs[3:6], -1.0, 1.0)
        return np.append(move, 0.0)


def _player(name: str, seed: int):
    from agent.players.scripted import make_scripted

    return Homing() if name == "homing" else make_scripted(name, seed=seed)


PAIRINGS = [("weak", "strong"), ("still", "random"), ("keeper", "still"), ("homing", "shooter"), ("still", "homing")]


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_bundled_game_both_views(mode: int) -> None:
    from agent.players.match import play_game

    resting_at_start = 0
    for index, (name1, name2) in enumerate(PAIRINGS):
        one, two = Recorder(_player(name1, index)), Recorder(_player(name2, index + 100))
        play_game(one, two, seed=1000 * mode + index, mode=mode, rounds=4)
        for recorder in (one, two):
            truth = np.array(recorder.starts)
            assert truth.sum() == 4
            found = detect(recorder.observations, mode)
            np.testing.assert_array_equal(found, truth, err_msg=f"mode {mode}, {name1} vs {name2}")
            resting_at_start += sum(
                is_reset_configuration(obs, mode) and not first
                for obs, first in zip(recorder.observations, recorder.starts)
            )
    if mode == 0:
        # the trap was really laid: in NORMAL games many in-play observations look
        # exactly like a reset (nobody has touched the puck yet)
        assert resting_at_start > 100


def test_reset_configuration_and_mirror() -> None:
    obs = np.zeros(18)
    obs[0], obs[6], obs[12], obs[13] = -3.0, 3.0, 1.5, 0.5
    obs[16], obs[17] = 7.0, 0.0  # counters carry over: ignored
    assert is_reset_configuration(obs)
    assert is_reset_configuration(mirror(obs))
    np.testing.assert_array_equal(mirror(mirror(obs)), obs)
    moving = obs.copy()
    moving[14] = 0.1  # puck not at rest
    assert not is_reset_configuration(moving)
    away = obs.copy()
    away[12] = 0.5  # puck outside its start range
    assert not is_reset_configuration(away)
    assert not is_reset_configuration(np.full(18, np.nan))
    assert not is_reset_configuration(obs[:16])


def test_same_observation_twice_is_not_a_new_round() -> None:
    """Nobody moves after a reset: the observation repeats and must not reset again."""
    obs = np.zeros(18)
    obs[0], obs[6], obs[12] = -3.0, 3.0, -1.2
    detector = RoundDetector()
    assert detector.observe(obs)
    assert not any(detector.observe(obs) for _ in range(300))
    jumped = obs.copy()
    jumped[12] = 1.7  # the next round's puck on the other side
    assert detector.observe(jumped)
    assert detector.rounds == 2


def test_discontinuity_follows_velocity() -> None:
    prev = np.zeros(18)
    cur = prev.copy()
    cur[0], cur[3] = 0.1, 5.0  # moved by dt * v
    assert not is_discontinuous(prev, cur)
    cur[3] = 0.0
    assert is_discontinuous(prev, cur)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="choices"):
        parse_mode("hockey")
    with pytest.raises(ValueError, match="choices"):
        RoundDetector(mode=7)
    with pytest.raises(ValueError, match="18 values"):
        RoundDetector().observe(np.zeros(5))
    assert parse_mode("train_defense") == 2
