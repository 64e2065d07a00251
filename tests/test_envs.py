"""The learner environments: sides, rewards, episode ends, batching and auto-reset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from agent.players.scripted import make_scripted
from agent.training.envs import HockeyLearnerEnv, RewardConfig, VectorHockey


def test_reset_gives_an_observation_in_the_space() -> None:
    env = HockeyLearnerEnv(opponent="weak", side="p1", seed=0)
    obs, info = env.reset()
    assert obs.shape == (18,) and obs.dtype == np.float64
    assert env.observation_space.contains(obs)
    assert info["side"] == "p1"
    assert obs[0] == pytest.approx(-3.0)
    assert env.action_space.shape == (4,)


def test_player_two_learner_sees_the_mirror_and_gets_player_two_reward() -> None:
    env = HockeyLearnerEnv(opponent="weak", side="p2", seed=1, reward=RewardConfig("shaped"))
    obs, info = env.reset()
    assert info["side"] == "p2"
    np.testing.assert_array_equal(obs, env.game.obs_agent_two())
    rng = np.random.default_rng(0)
    for _ in range(60):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 4))
        np.testing.assert_array_equal(obs, env.game.obs_agent_two())
        info2 = env.game.get_info_agent_two()
        assert reward == pytest.approx(env.game.get_reward_agent_two(info2))
        assert info["reward_closeness_to_puck"] == pytest.approx(info2["reward_closeness_to_puck"])
        assert info["winner"] == info2["winner"]
        assert info["side"] == "p2"
        if terminated or truncated:
            break


def test_player_one_learner_gets_the_game_reward() -> None:
    env = HockeyLearnerEnv(opponent="weak", side="p1", seed=2)
    env.reset()
    _, reward, _, _, info = env.step(np.zeros(4))
    assert reward == pytest.approx(info["sparse"] + info["reward_closeness_to_puck"])


def test_random_side_uses_both_sides_and_is_reproducible() -> None:
    def sides(seed: int) -> list[str]:
        env = HockeyLearnerEnv(opponent="still", seed=seed)
        return [env.reset()[1]["side"] for _ in range(20)]

    assert set(sides(3)) == {"p1", "p2"}
    assert sides(3) == sides(3)


def test_time_out_truncates_and_the_env_must_be_reset() -> None:
    env = HockeyLearnerEnv(opponent="still", side="p1", mode="normal", seed=0, reward=RewardConfig("sparse"))
    env.reset()
    steps, total = 0, 0.0
    while True:
        _, reward, terminated, truncated, info = env.step(np.zeros(4))
        steps, total = steps + 1, total + reward
        if terminated or truncated:
            break
    assert (steps, terminated, truncated, info["winner"], total) == (251, False, True, 0, 0.0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(4))


def test_a_goal_terminates_with_the_sparse_reward() -> None:
    shooter = make_scripted("shooter")
    env = HockeyLearnerEnv(opponent="still", mode="shooting", side="p1", seed=4, reward=RewardConfig("sparse"))
    goals = 0
    for _ in range(6):
        obs, _ = env.reset()
        shooter.reset()
        while True:
            obs, reward, terminated, truncated, info = env.step(shooter.act(obs))
            if terminated or truncated:
                break
            assert reward == 0.0
        assert terminated == (info["winner"] != 0)
        assert reward == 10.0 * info["winner"]
        goals += terminated
    assert goals > 0


def test_mix_reward_weights_the_info_terms() -> None:
    config = RewardConfig("mix", closeness=2.0, touch=3.0, direction=5.0)
    info = {"reward_closeness_to_puck": -0.5, "reward_touch_puck": 1.0, "reward_puck_direction": 0.1}
    assert config(10.0, 99.0, info) == pytest.approx(10.0 - 1.0 + 3.0 + 0.5)
    assert RewardConfig("sparse")(-10.0, 99.0, info) == -10.0
    assert RewardConfig("shaped")(-10.0, 99.0, info) == 99.0
    with pytest.raises(ValueError, match="sparse, shaped, mix"):
        RewardConfig("dense")


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="random, p1, p2"):
        HockeyLearnerEnv(side="left")
    with pytest.raises(ValueError, match="still, random, weak"):
        HockeyLearnerEnv(opponent="goalie")
    env = HockeyLearnerEnv(seed=0)
    env.reset()
    with pytest.raises(ValueError, match="4 finite"):
        env.step(np.zeros(3))


def test_registered_ids_play_rounds_of_their_mode() -> None:
    for env_id, length in (("HockeyAgent-v0", 251), ("HockeyAgentShooting-v0", 81), ("HockeyAgentDefense-v0", 81)):
        env = gym.make(env_id, opponent="still")
        obs, info = env.reset(seed=0)
        assert obs.shape == (18,)
        if env_id != "HockeyAgent-v0":
            assert info["side"] == "p1"
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, info = env.step(np.zeros(4, dtype=np.float32))
            steps, done = steps + 1, terminated or truncated
        assert steps == length or info["winner"] != 0
        env.close()


class CountingOpponent:
    """A still player that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.zeros(4)


def test_action_repeat_holds_the_action_for_its_frames_and_the_opponent_acts_every_frame() -> None:
    opponent = CountingOpponent()
    env = HockeyLearnerEnv(opponent=opponent, side="p1", seed=0, action_repeat=2)
    played: list[np.ndarray] = []
    step = env.game.step
    env.game.step = lambda both: played.append(np.array(both)) or step(both)
    env.reset()
    rng = np.random.default_rng(0)
    for n in range(1, 11):
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        *_, info = env.step(action)
        assert info["frames"] == 2 and opponent.calls == len(played) == 2 * n
        np.testing.assert_array_equal(played[-2][:4], action)
        np.testing.assert_array_equal(played[-1][:4], action)


def test_a_round_of_251_frames_takes_126_steps_at_repeat_2() -> None:
    env = HockeyLearnerEnv(opponent="still", side="p1", seed=0, reward=RewardConfig("sparse"), action_repeat=2)
    env.reset()
    frames: list[int] = []
    while True:
        _, _, terminated, truncated, info = env.step(np.zeros(4))
        frames.append(info["frames"])
        if terminated or truncated:
            break
    assert (len(frames), sum(frames), frames[-1], truncated, info["winner"]) == (126, 251, 1, True, 0)


@pytest.mark.parametrize("repeat,side", [(2, "p1"), (3, "p2")])
def test_action_repeat_sums_rewards_and_ends_early_when_the_round_ends(repeat: int, side: str) -> None:
    """Repeat k against repeat 1 with every action given k times: the same frames, the rewards
    of each step summed, the step cut short by a goal or the time-out."""
    shooter = make_scripted("shooter")
    kwargs = dict(opponent="weak", mode="shooting", side=side, reward=RewardConfig("shaped"))
    held = HockeyLearnerEnv(**kwargs, seed=5, action_repeat=repeat)
    single = HockeyLearnerEnv(**kwargs, seed=5)
    short = goals = 0
    for _ in range(4):
        obs, _ = held.reset()
        np.testing.assert_array_equal(obs, single.reset()[0])
        shooter.reset()
        done = False
        while not done:
            action = shooter.act(obs)
            obs, reward, terminated, truncated, info = held.step(action)
            total, frames = 0.0, 0
            for _ in range(repeat):
                obs1, reward1, terminated1, truncated1, info1 = single.step(action)
                total, frames = total + reward1, frames + 1
                if terminated1 or truncated1:
                    break
            np.testing.assert_array_equal(obs, obs1)
            assert reward == pytest.approx(total, abs=1e-12) and info["frames"] == frames
            assert (terminated, truncated, info["winner"]) == (terminated1, truncated1, info1["winner"])
            done = terminated or truncated
        short += info["frames"] < repeat
        goals += terminated
    assert goals > 0 and short > 0


def test_action_repeat_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="action_repeat must be an integer >= 1, got 0"):
        HockeyLearnerEnv(action_repeat=0)


def test_vector_action_repeat_reports_frames_per_game() -> None:
    vec = VectorHockey(2, "still", mode="shooting", side="p1", seed=0, action_repeat=2)
    vec.reset()
    frames = 0
    ends = 0
    for _ in range(100):
        _, _, terminated, truncated, infos = vec.step(np.zeros((2, 4)))
        for index, info in enumerate(infos):
            frames += info["frames"]
            if terminated[index] or truncated[index]:
                ends += 1
                assert info["frames"] == info["final_info"]["frames"]
                assert info["frames"] in (1, 2)
            else:
                assert info["frames"] == 2
    assert ends >= 2 and 2 * 100 < frames <= 2 * 2 * 100


def test_vector_auto_reset_and_opponent_per_episode() -> None:
    calls: list[int] = []

    def opponent_fn(index: int):
        calls.append(index)
        return make_scripted("still")

    vec = VectorHockey(3, opponent_fn, mode="shooting", seed=0, reward=RewardConfig("sparse"))
    obs, infos = vec.reset()
    assert obs.shape == (3, 18) and len(infos) == 3
    assert sorted(calls) == [0, 1, 2]
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(200):
        obs, reward, terminated, truncated, infos = vec.step(rng.uniform(-1, 1, (3, 4)))
        assert obs.shape == (3, 18) and reward.shape == terminated.shape == truncated.shape == (3,)
        for index in np.flatnonzero(terminated | truncated):
            ends += 1
            info = infos[index]
            assert info["final_obs"].shape == (18,)
            assert info["final_info"]["winner"] == int(np.sign(reward[index]))
            assert obs[index][0] == pytest.approx(-3.0) or info["side"] == "p2"
            assert not np.array_equal(obs[index], info["final_obs"])
    assert ends >= 3  # shooting rounds last at most 81 steps
    assert len(calls) == 3 + ends


def test_vector_with_a_name_or_fixed_policy_and_bad_actions() -> None:
    vec = VectorHockey(2, "weak", seed=1)
    vec.reset()
    obs, *_ = vec.step(np.zeros((2, 4)))
    assert obs.shape == (2, 18)
    shared = VectorHockey(2, make_scripted("still"), seed=1)
    shared.reset()
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        shared.step(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="finite"):
        shared.step(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="still, random"):
        VectorHockey(2, "nobody")


def test_vector_modes_and_sides_per_game() -> None:
    vec = VectorHockey(2, "still", mode=["normal", "defense"], side=["p2", "p1"], seed=4)
    vec.reset()
    ends = np.zeros(2, int)
    for _ in range(100):
        _, _, terminated, truncated, _ = vec.step(np.zeros((2, 4)))
        ends += terminated | truncated
    assert ends[0] == 0 and ends[1] >= 1  # normal rounds last 250 steps, defense drills at most 81
    assert [env.side for env in vec.envs] == ["p2", "p1"]
    with pytest.raises(ValueError, match="mode has 1 entries for 2 games"):
        VectorHockey(2, "still", mode=["normal"])


def test_vector_same_seed_same_data() -> None:
    def run() -> np.ndarray:
        vec = VectorHockey(2, "weak", seed=9)
        first, _ = vec.reset()
        rows = [first]
        for _ in range(30):
            rows.append(vec.step(np.full((2, 4), 0.3))[0])
        return np.stack(rows)

    np.testing.assert_array_equal(run(), run())


def test_gymnasium_env_checker_passes_and_reset_seed_replays_the_episode() -> None:
    from gymnasium.utils.env_checker import check_env

    with pytest.warns(UserWarning):  # the checker warns about the unbounded observation box
        check_env(HockeyLearnerEnv(opponent="weak", seed=0), skip_render_check=True)

    def episode() -> np.ndarray:
        # a fresh env each time: the game carries the keep counters over between rounds
        env = HockeyLearnerEnv(opponent="strong")
        rows = [env.reset(seed=3)[0]]
        rows += [env.step(np.full(4, 0.5))[0] for _ in range(40)]
        return np.stack(rows)

    np.testing.assert_array_equal(episode(), episode())
