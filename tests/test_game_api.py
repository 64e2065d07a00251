"""Behaviour of the game's public surface beyond the recorded vectors."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from agent.game import BasicOpponent, HockeyEnv, Mode, load_game  # noqa: E402
from agent.game.hockey import MAX_TIME_KEEP_PUCK  # noqa: E402


def _random_actions(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, size))


def _rollout(env: HockeyEnv, actions: np.ndarray, seed: int) -> np.ndarray:
    obs, _ = env.reset(one_starting=True, seed=seed)
    out = [obs]
    for a in actions:
        out.append(env.step(a)[0])
    return np.array(out)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (Mode.TRAIN_DEFENSE, Mode.TRAIN_DEFENSE),
        (1, Mode.TRAIN_SHOOTING),
        (np.int64(2), Mode.TRAIN_DEFENSE),
        ("Shooting", Mode.TRAIN_SHOOTING),
        ("DEFENSE", Mode.TRAIN_DEFENSE),
        ("normal", Mode.NORMAL),
        ("train_shooting", Mode.TRAIN_SHOOTING),
    ],
)
def test_mode_accepts_enum_int_and_name(given: object, expected: Mode) -> None:
    assert HockeyEnv(mode=given).mode is expected


@pytest.mark.parametrize("bad", ["attack", 3, -1, True, 1.0, None])
def test_unknown_mode_lists_choices(bad: object) -> None:
    with pytest.raises(ValueError, match="normal.*shooting.*defense"):
        HockeyEnv(mode=bad)


def test_reset_with_mode_changes_mode_and_length() -> None:
    env = HockeyEnv()
    assert env.max_timesteps == 250
    env.reset(mode="defense", seed=1)
    assert env.mode is Mode.TRAIN_DEFENSE and env.max_timesteps == 80
    env.reset(seed=1)
    assert env.mode is Mode.TRAIN_DEFENSE
    env.reset(mode=Mode.NORMAL)
    assert env.mode is Mode.NORMAL and env.max_timesteps == 250
    with pytest.raises(ValueError, match="choices"):
        env.reset(mode="bogus")
    env.reset(options={"mode": "shooting", "one_starting": True})
    assert env.mode is Mode.TRAIN_SHOOTING
    with pytest.raises(ValueError, match="one_starting"):
        env.reset(options={"colour": "red"})


def test_spaces_follow_keep_mode() -> None:
    keep, plain = HockeyEnv(keep_mode=True), HockeyEnv(keep_mode=False)
    assert keep.action_space.shape == (8,) and keep.observation_space.shape == (18,)
    assert plain.action_space.shape == (6,) and plain.observation_space.shape == (16,)
    obs, info = plain.reset(seed=0)
    assert obs.shape == (16,) and obs.dtype == np.float64
    assert set(info) == {"winner", "reward_closeness_to_puck", "reward_touch_puck", "reward_puck_direction"}
    result = plain.step(np.zeros(6))
    assert len(result) == 5 and result[0].shape == (16,) and result[3] is False


def test_one_starts_toggles_in_normal_mode_only() -> None:
    env = HockeyEnv()
    assert env.one_starts is True
    sides = []
    for _ in range(4):
        obs, _ = env.reset(seed=3)
        sides.append((env.one_starts, obs[12] < 0))
    assert sides == [(False, False), (True, True), (False, False), (True, True)]
    env.reset(one_starting=False)
    assert env.one_starts is False
    env.reset(one_starting=False)
    assert env.one_starts is False
    shooting = HockeyEnv(mode=Mode.TRAIN_SHOOTING)
    before = shooting.one_starts
    obs, _ = shooting.reset()
    assert shooting.one_starts == before and obs[12] < 0


def test_seeding_reproduces_start() -> None:
    env = HockeyEnv(mode=Mode.TRAIN_DEFENSE)
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=5)
    c, _ = env.reset(seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_one_game_object_replays_identically() -> None:
    """The kept Box2D world adds no hidden state: same seed, side and counters, same round."""
    env = HockeyEnv()
    actions = _random_actions(120, 8, seed=9)
    first = _rollout(env, actions, seed=1)
    env.player1_has_puck = env.player2_has_puck = 0
    second = _rollout(env, actions, seed=1)
    np.testing.assert_array_equal(first, second)


def test_counters_carry_over_into_next_reset() -> None:
    env = HockeyEnv()
    env.reset(seed=0)
    env.player1_has_puck, env.player2_has_puck = 7, 3
    obs, _ = env.reset(seed=0)
    assert (obs[16], obs[17]) == (7, 3)
    assert env.obs_agent_two()[16:].tolist() == [3, 7]


def test_puck_is_caught_and_counted_down() -> None:
    """A player driving into a resting puck catches it; the counter then falls every step."""
    env = HockeyEnv()
    env.reset(one_starting=True, seed=0)
    counts, touches = [], []
    for _ in range(60):
        obs, _, _, _, info = env.step(np.array([1, 0, 0, 0, 0, 0, 0, 0]))
        counts.append(obs[16])
        touches.append(info["reward_touch_puck"])
    caught = counts.index(MAX_TIME_KEEP_PUCK)
    assert counts[caught + 1] == MAX_TIME_KEEP_PUCK - 1
    assert touches[caught] == 1.0 and touches[caught + 1] == 0.0


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (np.zeros(7), "8 values"),
        ([0.0] * 9, "8 values"),
        (np.zeros((2, 4)), "flat vector"),
        (np.array([0, 0, np.nan, 0, 0, 0, 0, 0]), "finite"),
        ([0, 0, 0, 0, np.inf, 0, 0, 0], "finite"),
        (["a"] * 8, "not a number"),
        (3.0, "sequence"),
    ],
)
def test_bad_actions_raise(action: object, message: str) -> None:
    env = HockeyEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)
    assert env.time == 0


def test_out_of_range_actions_are_clipped_and_rounded_to_float32() -> None:
    actions = _random_actions(40, 8, seed=1) * 3
    clipped = np.clip(actions, -1, 1).astype(np.float32)
    a = _rollout(HockeyEnv(), actions, seed=2)
    b = _rollout(HockeyEnv(), clipped, seed=2)
    np.testing.assert_array_equal(a, b)
    c = _rollout(HockeyEnv(), clipped.astype(np.float64) * 0.5, seed=2)
    assert not np.array_equal(a, c)


def test_obs_agent_two_is_the_mirror() -> None:
    env = HockeyEnv()
    env.reset(seed=4)
    for a in _random_actions(30, 8, seed=4):
        env.step(a)
    o, o2 = env._get_obs(), env.obs_agent_two()
    np.testing.assert_array_equal(o2[0:2], -o[6:8])
    np.testing.assert_array_equal(o2[2], o[8])
    np.testing.assert_array_equal(o2[3:5], -o[9:11])
    np.testing.assert_array_equal(o2[5], o[11])
    np.testing.assert_array_equal(o2[6:8], -o[0:2])
    np.testing.assert_array_equal(o2[8], o[2])
    np.testing.assert_array_equal(o2[9:11], -o[3:5])
    np.testing.assert_array_equal(o2[11], o[5])
    np.testing.assert_array_equal(o2[12:16], -o[12:16])
    np.testing.assert_array_equal(o2[16:], o[[17, 16]])


def test_player_two_forces_are_negated_by_the_game() -> None:
    """The same x push moves player 1 right and player 2 left (towards the centre)."""
    env = HockeyEnv()
    env.reset(seed=0)
    obs, *_ = env.step(np.array([0.5, 0, 0, 0, 0.5, 0, 0, 0]))
    assert obs[3] > 0 and obs[9] < 0
    assert obs[3] == pytest.approx(-obs[9])


def test_info_two_mirrors_info() -> None:
    env = HockeyEnv()
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.zeros(8))
    info2 = env.get_info_agent_two()
    assert info2["winner"] == -info["winner"]
    assert info2["reward_puck_direction"] == pytest.approx(-info["reward_puck_direction"])
    assert reward == info["reward_closeness_to_puck"]
    assert env.get_reward_agent_two(info2) == info2["reward_closeness_to_puck"]


def test_round_ends_after_251_steps_without_goal_and_stepping_continues() -> None:
    env = HockeyEnv()
    env.reset(seed=0)
    dones = [env.step(np.zeros(8))[2] for _ in range(252)]
    assert dones.index(True) == 250 and all(dones[250:])
    assert env.winner == 0 and env.time == 252


def test_goal_sets_winner_and_reward() -> None:
    env = HockeyEnv(mode=Mode.TRAIN_SHOOTING)
    env.reset(seed=0)
    # Put the puck just in front of player 2's goal, flying into it.
    state = env._get_obs()
    state[12:16] = [4.3, 0.0, 8.0, 0.0]
    env.set_state(state)
    for _ in range(20):
        _, reward, done, _, info = env.step(np.zeros(8))
        if done:
            break
    assert done and env.winner == 1 and info["winner"] == 1 and reward >= 10 - 1
    assert env.get_reward_agent_two(env.get_info_agent_two()) <= -10 + 1


def test_set_state_places_bodies() -> None:
    env = HockeyEnv()
    env.reset(seed=0)
    target = env._get_obs()
    target[0:6] = [-2.0, 1.0, 0.3, 1.5, -0.5, 0.2]
    target[12:16] = [1.0, -1.0, 2.0, 1.0]
    target[16:] = [4, 0]
    env.set_state(target)
    np.testing.assert_allclose(env._get_obs(), target, atol=1e-6)
    with pytest.raises(ValueError, match="16 or 18"):
        env.set_state(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        env.set_state(np.full(18, np.nan))


@pytest.mark.parametrize(
    ("discrete", "expected"),
    [(0, [0, 0, 0, 0]), (1, [-1, 0, 0, 0]), (2, [1, 0, 0, 0]), (3, [0, -1, 0, 0]), (4, [0, 1, 0, 0]),
     (5, [0, 0, -1, 0]), (6, [0, 0, 1, 0]), (7, [0, 0, 0, 1])],
)  # fmt: skip
def test_discrete_actions(discrete: int, expected: list[float]) -> None:
    env = HockeyEnv()
    np.testing.assert_array_equal(env.discrete_to_continous_action(discrete), expected)
    if discrete < 7:
        plain = HockeyEnv(keep_mode=False)
        np.testing.assert_array_equal(plain.discrete_to_continous_action(discrete), expected[:3])


@pytest.mark.parametrize(("keep", "bad"), [(True, 8), (True, -1), (False, 7), (True, 1.5), (True, "2")])
def test_bad_discrete_actions(keep: bool, bad: object) -> None:
    with pytest.raises(ValueError, match="discrete action"):
        HockeyEnv(keep_mode=keep).discrete_to_continous_action(bad)


def test_rgb_array_render_is_headless() -> None:
    env = HockeyEnv()
    env.reset(seed=0)
    image = env.render(mode="rgb_array")
    assert image.shape == (480, 600, 3) and image.dtype == np.uint8
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 3
    with pytest.raises(ValueError, match="rgb_array"):
        env.render(mode="ascii")
    env.close()


def test_basic_opponent_plays_both_sides() -> None:
    np.random.seed(0)
    env = HockeyEnv()
    obs, _ = env.reset(seed=0)
    p1, p2 = BasicOpponent(weak=False), BasicOpponent(weak=True)
    phase = p1.phase
    for _ in range(50):
        a1, a2 = p1.act(obs), p2.act(env.obs_agent_two())
        assert a1.shape == (4,) and np.all(np.abs(a1) <= 1)
        obs, *_ = env.step(np.hstack([a1, a2]))
    assert phase < p1.phase < phase + 50 * 0.2
    assert BasicOpponent(keep_mode=False).act(obs[:16]).shape == (3,)
    with pytest.raises(ValueError, match="18 values"):
        p1.act(obs[:16])


def test_load_game() -> None:
    game = load_game()
    assert game.HockeyEnv is HockeyEnv and game.BasicOpponent is BasicOpponent and game.Mode is Mode
    with pytest.raises(ValueError, match="bundled.*reference"):
        load_game("mine")
    if importlib.util.find_spec("hockey") is None:
        with pytest.raises(ImportError, match="not installed"):
            load_game("reference")
