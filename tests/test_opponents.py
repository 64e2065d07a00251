"""Scripted players: valid actions, reproducibility and the behaviour each one promises."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.game import BasicOpponent, HockeyEnv, Mode
from agent.players.policy import Policy
from agent.players.scripted import SCRIPTED, make_scripted


def _game_observations(n: int = 120) -> list[np.ndarray]:
    """Observations from a real game between two random players (both frames)."""
    env = HockeyEnv(mode=Mode.NORMAL, keep_mode=True)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(n):
        seen += [obs, env.obs_agent_two()]
        obs, _, done, _, _ = env.step(rng.uniform(-1, 1, 8))
        if done:
            obs, _ = env.reset()
    return seen


@pytest.mark.parametrize("name", SCRIPTED)
def test_every_scripted_player_answers_valid_actions(name: str) -> None:
    player = make_scripted(name, seed=0)
    assert isinstance(player, Policy)
    player.reset()
    rng = np.random.default_rng(1)
    for obs in _game_observations() + [rng.normal(0, 3, 18) for _ in range(50)]:
        action = np.asarray(player.act(obs))
        assert action.shape == (4,)
        assert np.all(np.isfinite(action)) and np.all(np.abs(action) <= 1.0)


def test_still_is_zero_and_unknown_names_list_the_choices() -> None:
    np.testing.assert_array_equal(make_scripted("still").act(np.ones(18)), np.zeros(4))
    with pytest.raises(ValueError, match="still, random, weak, strong, shooter, keeper"):
        make_scripted("goalie")


def test_random_is_seeded_and_shoots_only_with_keep_mode() -> None:
    obs = np.zeros(18)
    a = [make_scripted("random", seed=3).act(obs) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    assert not np.array_equal(a[0], make_scripted("random", seed=4).act(obs))
    no_keep = make_scripted("random", seed=3, keep_mode=False)
    assert all(no_keep.act(obs)[3] == 0.0 for _ in range(10))


def test_basic_players_are_reproducible_and_leave_the_global_generator_alone() -> None:
    observations = _game_observations(40)
    np.random.seed(123)
    before = np.random.get_state(legacy=False)
    runs = []
    for _ in range(2):
        weak = make_scripted("weak", seed=11)
        runs.append([weak.act(o) for o in observations])
    np.testing.assert_array_equal(np.array(runs[0]), np.array(runs[1]))
    after = np.random.get_state(legacy=False)
    np.testing.assert_array_equal(before["state"]["key"], after["state"]["key"])
    assert before["state"]["pos"] == after["state"]["pos"]
    strong = [make_scripted("strong", seed=11).act(o) for o in observations]
    assert not np.array_equal(np.array(runs[0]), np.array(strong))


def test_a_seeded_basic_player_acts_like_the_game_opponent_after_np_random_seed() -> None:
    observations = _game_observations(40)
    np.random.seed(21)
    reference = BasicOpponent(weak=True, keep_mode=True)
    expected = [reference.act(o) for o in observations]
    player = make_scripted("weak", seed=21)
    np.testing.assert_array_equal(np.array([player.act(o) for o in observations]), np.array(expected))


def _obs(own=(-3.0, 0.0, 0.0), puck=(0.0, 0.0), puck_v=(0.0, 0.0), other=(3.0, 0.0), holding=0.0) -> np.ndarray:
    obs = np.zeros(18)
    obs[0:3] = own
    obs[6:8] = other
    obs[12:14] = puck
    obs[14:16] = puck_v
    obs[16] = holding
    return obs


def test_shooter_aims_away_from_the_other_player_and_shoots_when_aimed() -> None:
    shooter = make_scripted("shooter")
    # holding the puck, the other player high: aim low, i.e. turn clockwise (negative torque)
    action = shooter.act(_obs(own=(-1.0, 0.0, 0.0), other=(3.5, 1.0), holding=10))
    assert action[2] < 0 and action[3] == 0.0
    aim = math.atan2(-0.6 * 75 / 60 - 0.0, 255 / 60 + 1.0)
    assert shooter.act(_obs(own=(-1.0, 0.0, aim), other=(3.5, 1.0), holding=10))[3] == 1.0
    # the counter about to run out: shoot anyway
    assert shooter.act(_obs(own=(-1.0, 0.0, 0.5), other=(3.5, 1.0), holding=2))[3] == 1.0
    # without the puck it runs at it
    chase = shooter.act(_obs(own=(-3.0, 0.0, 0.0), puck=(-1.0, 1.0)))
    assert chase[0] > 0 and chase[1] > 0 and chase[3] == 0.0


def test_keeper_moves_between_puck_and_its_goal() -> None:
    keeper = make_scripted("keeper")
    # puck high in the other half: the guard spot is above the goal line, close to the goal
    action = keeper.act(_obs(own=(-3.4, 0.0, 0.0), puck=(2.0, 2.5), puck_v=(-5.0, 0.0)))
    assert action[1] > 0
    action = keeper.act(_obs(own=(-3.4, 0.0, 0.0), puck=(2.0, -2.5), puck_v=(-5.0, 0.0)))
    assert action[1] < 0
    # far out of position in front: it falls back towards its goal
    assert keeper.act(_obs(own=(-1.0, 0.0, 0.0), puck=(2.0, 0.0), puck_v=(-5.0, 0.0)))[0] < 0


def test_new_players_beat_the_still_player() -> None:
    from agent.players.match import play_game

    for name in ("shooter", "keeper"):
        result = play_game(make_scripted(name, seed=0), make_scripted("still"), seed=0)
        assert result.score1 > result.score2, name


def test_shooter_outscores_weak_and_keeper_holds_strong_scoreless() -> None:
    from agent.players.match import play_game

    shooter = play_game(make_scripted("weak", seed=1), make_scripted("shooter"), seed=1)
    assert shooter.score2 > shooter.score1
    keeper = play_game(make_scripted("keeper"), make_scripted("strong", seed=2), seed=2)
    assert keeper.score2 == 0


def test_keeper_meets_a_shot_where_it_crosses_its_line_after_bounces() -> None:
    keeper = make_scripted("keeper")
    # a shot from the centre rising towards the upper post: move up to meet it
    assert keeper.act(_obs(own=(-3.35, 0.0, 0.0), puck=(0.0, 0.0), puck_v=(-20.0, 3.0)))[1] > 0.5
    # a steep shot upwards bounces off the top wall and comes in low: move down
    assert keeper.act(_obs(own=(-3.35, 0.0, 0.0), puck=(0.0, 2.5), puck_v=(-10.0, 14.0)))[1] < -0.5
