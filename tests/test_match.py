"""play_game: the tournament game as the comprl server plays it."""

from __future__ import annotations

import numpy as np
import pytest

from agent.game import HockeyEnv, Mode
from agent.players.match import GameResult, check_action, play_game, player1_starts
from agent.players.scripted import make_scripted


class Recorder:
    """Wraps a policy and records every observation and reset it gets."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.resets = 0
        self.first_obs: list[np.ndarray] = []
        self._new_round = False

    def reset(self) -> None:
        self.resets += 1
        self._new_round = True
        self.inner.reset()

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._new_round:
            self.first_obs.append(obs.copy())
            self._new_round = False
        return self.inner.act(obs)


class Constant:
    def __init__(self, action) -> None:
        self.action = action

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray):
        return self.action


def test_still_players_draw_every_round_after_the_time_limit() -> None:
    result = play_game(make_scripted("still"), make_scripted("still"), seed=0)
    assert result.rounds == (0, 0, 0, 0)
    assert (result.score1, result.score2, result.winner) == (0, 0, 0)
    assert result.steps == 4 * 251  # NORMAL rounds end after 251 steps without a goal
    assert result.duration > 0


def test_scores_add_up_and_the_winner_has_more_rounds() -> None:
    for seed in range(3):
        result = play_game(make_scripted("strong", seed=seed), make_scripted("random", seed=seed), seed=seed)
        assert isinstance(result, GameResult)
        assert len(result.rounds) == 4
        assert result.score1 == sum(1 for r in result.rounds if r == 1)
        assert result.score2 == sum(1 for r in result.rounds if r == -1)
        assert result.score1 + result.score2 + result.rounds.count(0) == 4
        assert result.winner == int(np.sign(result.score1 - result.score2))


def test_each_round_resets_players_and_player_two_sees_the_mirror() -> None:
    p1, p2 = Recorder(make_scripted("still")), Recorder(make_scripted("still"))
    play_game(p1, p2, seed=1, rounds=4)
    assert p1.resets == p2.resets == 4
    for o1, o2 in zip(p1.first_obs, p2.first_obs):
        # both start at W/5 - W/2 = -3 in their own frame
        assert o1[0] == pytest.approx(-3.0)
        assert o2[0] == pytest.approx(-3.0)
        np.testing.assert_allclose(o2[12:14], -o1[12:14])  # mirrored puck
    # player 2 starts the first round (the puck on its side), then it alternates
    puck_x = [o[12] for o in p1.first_obs]
    assert [x > 0 for x in puck_x] == [True, False, True, False]
    assert [x < 0 for x in puck_x] == [player1_starts(i) for i in range(4)]


def test_same_seed_same_game() -> None:
    def one() -> GameResult:
        return play_game(make_scripted("weak", seed=5), make_scripted("random", seed=6), seed=7, rounds=2)

    a, b = one(), one()
    assert (a.rounds, a.steps) == (b.rounds, b.steps)


def test_training_mode_rounds_are_short() -> None:
    result = play_game(make_scripted("still"), make_scripted("still"), seed=0, mode="defense", rounds=1)
    assert result.steps <= 81


def test_frames_receive_one_image_per_reset_and_step() -> None:
    class Sink:
        def __init__(self) -> None:
            self.count = 0
            self.shape = None

        def append(self, frame: np.ndarray) -> None:
            self.count += 1
            self.shape = np.asarray(frame).shape

    sink = Sink()
    result = play_game(make_scripted("still"), make_scripted("still"), mode=Mode.TRAIN_SHOOTING, rounds=1, frames=sink)
    assert sink.count == result.steps + 1
    assert sink.shape[-1] == 3


def test_a_learned_player_with_action_repeat_decides_on_the_first_frame_of_every_round(tmp_path) -> None:
    """An agent of repeat 2 (an ONNX file here) runs its graph on frames 0, 2, 4, ... of each
    round of each game, whatever the length of the round before."""
    from helpers import build, metadata

    from agent.players.match import play_games
    from agent.players.scripted import scripted_batch
    from export.runtime import OnnxAgent

    agent = OnnxAgent(build(tmp_path / "repeat2.onnx", meta=metadata(action_repeat="2")))
    agent.reset_batch(2)
    graph_rows: list[int] = []
    run_graph = agent.run_graph
    agent.run_graph = lambda obs, *rest: graph_rows.append(len(obs)) or run_graph(obs, *rest)

    class Watch:
        """Counts each game's frames since its round began and checks the graph ran on the even ones."""

        def __init__(self) -> None:
            self.frame: dict[int, int] = {}
            self.lengths: list[int] = []

        def reset_rows(self, rows: np.ndarray) -> None:
            agent.reset_rows(rows)
            for r in rows:
                self.lengths += [self.frame[int(r)]] if int(r) in self.frame else []
                self.frame[int(r)] = 0

        def act_rows(self, rows: np.ndarray, obs: np.ndarray) -> np.ndarray:
            graph_rows.clear()
            actions = agent.act_rows(rows, obs)
            assert sum(graph_rows) == sum(self.frame[int(r)] % 2 == 0 for r in rows)
            for r in rows:
                self.frame[int(r)] += 1
            return actions

    watch = Watch()
    tally = play_games(watch, scripted_batch("still", 2, seed=0), 2, seed=0)
    assert len(tally.games) == 2 and len(watch.lengths) == 6  # 3 restarts in each game
    assert any(n % 2 for n in watch.lengths)  # an odd round before a restart: the restart matters


@pytest.mark.parametrize(
    ("action", "message"),
    [([0.0, 0.0, 0.0], "3 action values"), ([0.0, np.nan, 0.0, 0.0], "non-finite"), ([0.0, 1.5, 0.0, 0.0], "outside")],
)
def test_bad_actions_name_the_player(action, message) -> None:
    with pytest.raises(ValueError, match=f"player 2.*{message}"):
        play_game(make_scripted("still"), Constant(action), rounds=1)
    with pytest.raises(ValueError, match="player 1"):
        play_game(Constant(action), make_scripted("still"), rounds=1)


def test_check_action_mode_and_rounds() -> None:
    np.testing.assert_array_equal(check_action((1, -1, 0, 0.5), "x"), [1, -1, 0, 0.5])
    with pytest.raises(ValueError, match="not numeric"):
        check_action("left", "x")
    with pytest.raises(ValueError, match="'normal'"):
        play_game(make_scripted("still"), make_scripted("still"), mode="penalty")
    with pytest.raises(ValueError, match="at least 1"):
        play_game(make_scripted("still"), make_scripted("still"), rounds=0)


def test_a_used_env_can_be_passed_in() -> None:
    env = HockeyEnv(mode=Mode.TRAIN_SHOOTING, keep_mode=True)
    result = play_game(make_scripted("still"), make_scripted("still"), rounds=2, game=env)
    assert len(result.rounds) == 2


def test_bad_games_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="'bundled', 'reference'"):
        play_game(make_scripted("still"), make_scripted("still"), game="mine")
    with pytest.raises(TypeError, match="HockeyEnv"):
        play_game(make_scripted("still"), make_scripted("still"), game=42)
