"""Replay: sequences stay inside one game's stored rows, starts are uniform, is_first is set."""

from __future__ import annotations

import numpy as np
import pytest

from agent.training.replay import Replay


def _fill(replay: Replay, written: np.ndarray, rows: int, envs: np.ndarray | None = None) -> None:
    """Write rows whose obs[0] is a per-game counter (`written`) and obs[1] the game index."""
    idx = np.arange(replay.n_envs) if envs is None else envs
    for _ in range(rows):
        obs = np.zeros((idx.size, 18), np.float32)
        obs[:, 0] = written[idx]
        obs[:, 1] = idx
        replay.add(
            obs,
            np.zeros((idx.size, 4)),
            np.zeros(idx.size),
            np.zeros(idx.size, bool),
            np.zeros(idx.size, bool),
            envs=idx,
        )
        written[idx] += 1


def test_sequences_are_consecutive_rows_of_one_game_after_wrap() -> None:
    r, w = Replay(40, 2), np.zeros(2, np.int64)  # 20 rows per game
    _fill(r, w, 33)  # game buffers wrapped: rows 13..32 remain
    _fill(r, w, 4, envs=np.array([1]))  # game 1 ahead: rows 17..36
    b = r.sample(500, 8)
    counter, game = b["obs"][..., 0], b["obs"][..., 1]
    assert np.all(np.diff(counter, axis=1) == 1)
    assert np.all(game == game[:, :1])
    low = np.where(game[:, 0] == 0, 13, 17)
    high = np.where(game[:, 0] == 0, 32, 36)
    assert np.all(counter[:, 0] >= low) and np.all(counter[:, -1] <= high)


def test_starts_are_uniform_over_valid_starts() -> None:
    r = Replay(30, 3)  # 10 rows per game
    _fill(r, np.zeros(3, np.int64), 10)
    starts = r.sample(60000, 4)["obs"][:, 0, :2]  # 3 games x 7 starts
    keys = starts[:, 1] * 100 + starts[:, 0]
    _, counts = np.unique(keys, return_counts=True)
    assert counts.size == 21
    expected = 60000 / 21
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_is_first_forced_on_first_row_and_kept_elsewhere() -> None:
    r = Replay(100, 1)
    for t in range(50):
        r.add(np.full((1, 18), t), np.zeros((1, 4)), np.zeros(1), np.array([t % 10 == 0]), np.zeros(1, bool))
    b = r.sample(200, 12)
    assert b["is_first"][:, 0].all()
    t = b["obs"][:, :, 0]
    assert np.array_equal(b["is_first"][:, 1:], (t[:, 1:] % 10) == 0)
    # the buffer itself is not modified by sampling
    assert r.is_first.sum() == 5


def test_not_enough_rows_and_bad_args() -> None:
    r = Replay(20, 2)
    with pytest.raises(ValueError, match="no sequence"):
        r.sample(1, 4)
    with pytest.raises(ValueError, match="exceeds"):
        r.sample(1, 11)
    with pytest.raises(ValueError, match="capacity"):
        Replay(1, 2)


def test_state_dict_round_trip_resumes_sampling(tmp_path) -> None:
    r = Replay(64, 2, seed=3)
    _fill(r, np.zeros(2, np.int64), 40)
    r.sample(4, 5)
    r.save(tmp_path / "replay.npz")
    expected = r.sample(8, 5)
    other = Replay(64, 2, seed=99)
    other.load(tmp_path / "replay.npz")
    got = other.sample(8, 5)
    for k in expected:
        assert np.array_equal(expected[k], got[k]), k


def test_load_rejects_other_shape_and_corrupt_file(tmp_path) -> None:
    r = Replay(64, 2)
    r.save(tmp_path / "a.npz")
    with pytest.raises(ValueError, match="games"):
        Replay(64, 4).load(tmp_path / "a.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read"):
        Replay(64, 2).load(tmp_path / "bad.npz")


@pytest.mark.parametrize("rows", [0, 5, 40])
def test_saved_file_holds_only_filled_rows_and_restores_every_field(tmp_path, rows: int) -> None:
    r = Replay(64, 2, seed=1)  # 32 rows per game; 40 rows wrap
    _fill(r, np.zeros(2, np.int64), rows)
    r.save(tmp_path / "replay.npz")
    with np.load(tmp_path / "replay.npz") as data:
        assert data["obs"].shape == (2, min(rows, 32), 18)
    stale = Replay(64, 2, seed=1)
    _fill(stale, np.full(2, 1000, np.int64), 32)  # old contents must not survive a load
    stale.load(tmp_path / "replay.npz")
    for name in ("obs", "action", "reward", "is_first", "is_terminal", "ptr", "size"):
        assert np.array_equal(getattr(stale, name), getattr(r, name)), name


def test_online_queue_serves_every_new_stretch_first_then_uniform(tmp_path) -> None:
    replay = Replay(capacity=2 * 20, n_envs=2, seed=0, online_len=4)
    for t in range(12):  # 12 rows per game: stretches 0-3, 4-7, 8-11 of each game queued in write order
        replay.add(np.full((2, 18), t, np.float32), np.zeros((2, 4), np.float32), np.zeros(2), np.zeros(2, bool),
                   np.zeros(2, bool))  # fmt: skip
    assert list(replay.queue) == [(0, 0), (1, 0), (0, 4), (1, 4), (0, 8), (1, 8)]
    batch = replay.sample(4, 4)
    assert batch["obs"][:, :, 0].tolist() == [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7], [4, 5, 6, 7]]
    copy = Replay(capacity=2 * 20, n_envs=2, seed=0, online_len=4)
    copy.load_state_dict(replay.state_dict())
    assert list(copy.queue) == [(0, 8), (1, 8)] and copy.written.tolist() == [12, 12]
    batch = replay.sample(4, 4)  # the last two queued, then two uniform draws
    assert batch["obs"][:2, :, 0].tolist() == [[8, 9, 10, 11], [8, 9, 10, 11]] and not replay.queue
    for t in range(12, 40):  # wrap: stretches no longer held whole are dropped from the queue
        replay.add(np.full((2, 18), t, np.float32), np.zeros((2, 4), np.float32), np.zeros(2), np.zeros(2, bool),
                   np.zeros(2, bool))  # fmt: skip
    assert replay.sample(1, 4)["obs"][0, 0, 0] == 20  # rows 12-19 were overwritten; 20-23 is the oldest kept
    assert Replay(capacity=40, n_envs=2).num_starts(4).sum() == 0


def test_a_replay_file_from_before_the_queue_loads(tmp_path) -> None:
    replay = Replay(capacity=40, n_envs=2, seed=0)
    replay.add(np.zeros((2, 18), np.float32), np.zeros((2, 4), np.float32), np.zeros(2), np.zeros(2, bool),
               np.zeros(2, bool))  # fmt: skip
    state = {k: v for k, v in replay.state_dict().items() if k not in ("written", "queue")}
    other = Replay(capacity=40, n_envs=2, online_len=4)
    other.load_state_dict(state)
    assert other.written.tolist() == [1, 1] and not other.queue


def test_context_hands_back_the_latent_and_action_of_the_row_before(tmp_path) -> None:
    replay = Replay(capacity=2 * 30, n_envs=2, seed=0, latent=(3, 2))
    for t in range(10):
        deter = np.full((2, 3), t, np.float16)
        stoch = np.full((2, 2), t % 4, np.uint8)
        action = np.full((2, 4), t / 10, np.float32)
        replay.add(np.full((2, 18), t, np.float32), action, np.zeros(2), np.array([t == 0, t == 0]), np.zeros(2, bool),
                   deter=None if t == 3 else deter, stoch=stoch)  # fmt: skip
    batch = replay.sample(64, 4, context=True)
    first_obs = batch["obs"][:, 0, 0]
    assert first_obs.min() >= 1  # a sequence needs the row before it
    with_latent = first_obs != 4  # row 3 was stored without a latent
    np.testing.assert_array_equal(batch["start_deter"][with_latent, 0], first_obs[with_latent] - 1)
    np.testing.assert_array_equal(batch["start_stoch"][with_latent, 0], (first_obs[with_latent] - 1) % 4)
    np.testing.assert_allclose(batch["start_action"][with_latent, 0], (first_obs[with_latent] - 1) / 10)
    assert not batch["is_first"][with_latent, 0].any() and batch["is_first"][~with_latent, 0].all()
    assert (batch["start_deter"][~with_latent] == 0).all()
    replay.update_latents(batch["game"][:1], batch["first"][:1], np.full((1, 4, 3), 99, np.float16),
                          np.full((1, 4, 2), 1, np.uint8))  # fmt: skip
    rows = (batch["first"][0] + np.arange(4)) % replay.capacity
    assert (replay.deter[batch["game"][0], rows] == 99).all() and replay.has_latent[batch["game"][0], rows].all()
    copy = Replay(capacity=2 * 30, n_envs=2, seed=0, latent=(3, 2))
    copy.load_state_dict(replay.state_dict())
    assert np.array_equal(copy.deter, replay.deter) and np.array_equal(copy.has_latent, replay.has_latent)
    plain = Replay(capacity=2 * 30, n_envs=2, seed=0)
    with pytest.raises(ValueError, match="no latent states"):
        plain.sample(2, 4, context=True)
    plain.load_state_dict({k: v for k, v in replay.state_dict().items() if k not in ("deter", "stoch", "has_latent")})
    with pytest.raises(ValueError, match="replay_context"):
        copy.load_state_dict(plain.state_dict())
