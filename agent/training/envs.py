"""Learning environments: one learner against any Policy, alone or batched.

`HockeyLearnerEnv` is a gymnasium env where the learner plays player 1 or player 2
(chosen per episode); as player 2 it sees `obs_agent_two()` and gets player 2's info
and reward, so one policy learns both sides of the tournament. An episode is one
round. A goal ends it with `terminated`; the time-out (a round nobody won, 251 steps
in NORMAL) ends it with `truncated`, because the observation carries no clock, and a
learner bootstrapping through the time limit is the standard gymnasium choice.

With `action_repeat` k one env step plays k game frames with the same learner action
(the opponent still acts every frame, on its own observation), sums the learner's
rewards over them and stops early when the round ends inside it; info['frames'] says
how many frames it played.

`VectorHockey` steps n such games for data collection, auto-resets finished ones and
asks `opponent_fn(env_index)` for the opponent of every new episode (self-play).

Importing this module registers 'HockeyAgent-v0' (NORMAL, random side),
'HockeyAgentShooting-v0' and 'HockeyAgentDefense-v0' (the training drills, learner
as player 1, the side the drills train) with gymnasium.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from agent.config import CHOICES, scripted_seed
from agent.game.rules import SPARSE_REWARD, check_action, clip_action, parse_mode
from agent.players.match import make_env
from agent.players.policy import Policy
from agent.players.scripted import make_scripted

REWARD_KINDS = CHOICES["train", "reward"]
SIDES = ("random", "p1", "p2")

OpponentSpec = Policy | str
OpponentFn = Callable[[int], Policy]


@dataclass(frozen=True)
class RewardConfig:
    """How the learner's reward is made from the game's.

    kind 'sparse': +10 / -10 when the learner's side wins / loses a round, else 0.
    kind 'shaped': the reference game's reward (sparse + closeness to the puck).
    kind 'mix': sparse + closeness * reward_closeness_to_puck + touch *
    reward_touch_puck + direction * reward_puck_direction (the game's info terms,
    from the learner's side). direction's default of 50 makes the summed term about
    0.4 per unit the puck travels towards the other goal.
    """

    kind: str = "shaped"
    closeness: float = 1.0
    touch: float = 1.0
    direction: float = 50.0

    def __post_init__(self) -> None:
        if self.kind not in REWARD_KINDS:
            raise ValueError(f"unknown reward kind {self.kind!r}; choices: {', '.join(REWARD_KINDS)}")

    def __call__(self, sparse: float, shaped: float, info: dict) -> float:
        """The learner's reward from its sparse part, its game reward and its info."""
        if self.kind == "sparse":
            return sparse
        if self.kind == "shaped":
            return shaped
        return (
            sparse
            + self.closeness * info["reward_closeness_to_puck"]
            + self.touch * info["reward_touch_puck"]
            + self.direction * info["reward_puck_direction"]
        )


def _as_opponent(opponent: OpponentSpec, seed: int | None) -> Policy:
    if isinstance(opponent, str):
        return make_scripted(opponent, seed=seed)
    if callable(getattr(opponent, "act", None)) and callable(getattr(opponent, "reset", None)):
        return opponent
    raise TypeError(f"opponent must be a Policy or a scripted name, got {opponent!r}")


class HockeyLearnerEnv(gym.Env):
    """One learner against `opponent` (a Policy or scripted name) for one round per episode.

    side 'p1' / 'p2' fixes the learner's side; 'random' draws it every episode. info
    carries `winner` (+1 the learner won), the game's three proxy terms from the
    learner's side, `side` ('p1' or 'p2'), `sparse` (the learner's +-10 part) and
    `frames` (the game frames the step played: `action_repeat`, fewer when the round
    ended inside it); the proxy terms are those of the step's last frame, the reward is
    the sum over its frames. `game` is None or 'bundled' (this project's game), 'reference' (the installed
    reference package), or a game object to play on.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        opponent: OpponentSpec = "weak",
        mode: Any = "normal",
        side: str = "random",
        reward: RewardConfig = RewardConfig(),
        seed: int | None = None,
        game: Any = None,
        render_mode: str | None = None,
        action_repeat: int = 1,
    ) -> None:
        if isinstance(action_repeat, bool) or not isinstance(action_repeat, int) or action_repeat < 1:
            raise ValueError(f"action_repeat must be an integer >= 1, got {action_repeat!r}")
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r}; choices: {', '.join(SIDES)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unknown render_mode {render_mode!r}; choices: rgb_array")
        self.mode = parse_mode(mode)
        self.side = side
        self.reward_config = reward
        self.render_mode = render_mode
        self.action_repeat = action_repeat
        self.set_opponent(opponent, seed)
        self.game = make_env(game, self.mode)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(18,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self._learner_p2 = False
        self._opp_obs: np.ndarray | None = None
        self._done = True
        if seed is not None:
            self.np_random, _ = gym.utils.seeding.np_random(seed)

    @property
    def learner_side(self) -> str:
        """'p1' or 'p2' in the current episode."""
        return "p2" if self._learner_p2 else "p1"

    def set_opponent(self, opponent: OpponentSpec, seed: int | None = None) -> None:
        """Change the opponent; takes effect at once (use between episodes).

        A scripted name is remembered, so `reset(seed=...)` can rebuild the player with
        a seed drawn from the env's generator and replay the same episode (exactly when
        the keep counters match: the game carries them over from the previous round).
        """
        self._opponent_name = opponent if isinstance(opponent, str) else None
        self.opponent = _as_opponent(opponent, seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        rng = self.np_random
        if seed is not None and self._opponent_name is not None:
            self.opponent = make_scripted(self._opponent_name, seed=int(rng.integers(2**31)))
        self._learner_p2 = self.side == "p2" or (self.side == "random" and bool(rng.integers(2)))
        obs1, _ = self.game.reset(one_starting=bool(rng.integers(2)), seed=int(rng.integers(2**31)))
        obs2 = self.game.obs_agent_two()
        self.opponent.reset()
        self._done = False
        if self._learner_p2:
            self._opp_obs = obs1
            return obs2, {"side": "p2"}
        self._opp_obs = obs2
        return obs1, {"side": "p1"}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self._step(clip_action(action, "the learner's action"))

    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Step with an already checked and clipped learner action: `action_repeat` frames
        (fewer when the round ends), rewards summed."""
        if self._done:
            raise RuntimeError("the round is over: call reset() first")
        total, frames = 0.0, 0
        while True:
            obs, reward, terminated, truncated, info = self._frame(action)
            total, frames = total + reward, frames + 1
            if self._done or frames == self.action_repeat:
                break
        return obs, total, terminated, truncated, dict(info, frames=frames)

    def _frame(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One game frame: the learner's `action` against the opponent's answer to its own observation."""
        other = check_action(self.opponent.act(self._opp_obs), "the opponent")
        game = self.game
        if self._learner_p2:
            obs1, _, done, _, info1 = game.step(np.concatenate([other, action]))
            obs = game.obs_agent_two()
            info = game.get_info_agent_two()
            shaped = game.get_reward_agent_two(info)
            self._opp_obs = obs1
        else:
            obs, shaped, done, _, info = game.step(np.concatenate([action, other]))
            self._opp_obs = game.obs_agent_two()
        winner = int(info["winner"])
        sparse = SPARSE_REWARD * winner if done else 0.0
        info = dict(info, winner=winner, side=self.learner_side, sparse=sparse)
        reward = float(self.reward_config(sparse, float(shaped), info))
        self._done = bool(done)
        terminated = self._done and winner != 0
        truncated = self._done and winner == 0
        return obs, reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self.game.render(mode="rgb_array")

    def close(self) -> None:
        close = getattr(self.game, "close", None)
        if close is not None:
            close()


def _opponent_fn(opponent: OpponentSpec | OpponentFn, seed: int | None) -> OpponentFn:
    """Normalise the opponent argument of VectorHockey to `index -> Policy`.

    A name makes one scripted player per game (seeded from `seed` and the index); a
    fixed Policy is shared by every game, so it must keep no per-game state.
    """
    if isinstance(opponent, str):
        players: dict[int, Policy] = {}

        def scripted(index: int) -> Policy:
            if index not in players:
                players[index] = make_scripted(opponent, seed=None if seed is None else scripted_seed(seed, index))
            return players[index]

        make_scripted(opponent)  # fail now on an unknown name
        return scripted
    if callable(getattr(opponent, "act", None)):
        fixed = opponent
        return lambda index: fixed  # type: ignore[return-value]
    if callable(opponent):
        return opponent
    raise TypeError(f"opponent must be a Policy, a scripted name or a function index -> Policy, got {opponent!r}")


def _per_game(value: Any, n: int, name: str) -> list[Any]:
    """One value per game: a list or tuple is taken as given (its length must be n)."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries for {n} games")
        return list(value)
    return [value] * n


class VectorHockey:
    """n learner games stepped together; finished games restart on their own.

    `step(actions [n, 4])` returns obs [n, 18], reward [n], terminated [n],
    truncated [n] and one info dict per game. When a game's episode ends, its row of
    obs is already the first observation of the next episode; the last observation of
    the finished one is in that game's info['final_obs'] (and its info in
    info['final_info']). `opponent_fn(env_index)` is called at every episode start;
    a scripted name or a fixed Policy is accepted too. `mode` and `side` are as in
    HockeyLearnerEnv ('random': data from both sides), one for all games or a list
    with one per game (drills beside full games); `game` is None or a name. With
    `action_repeat` k every step holds each game's action for k frames (fewer when its
    round ends); each game's info['frames'] says how many it played.
    """

    def __init__(
        self,
        n: int,
        opponent_fn: OpponentSpec | OpponentFn = "weak",
        mode: Any = "normal",
        reward: RewardConfig = RewardConfig(),
        seed: int | None = None,
        side: str | Sequence[str] = "random",
        game: Any = None,
        action_repeat: int = 1,
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if game is not None and not isinstance(game, str):
            raise TypeError("VectorHockey makes one game per env: pass a game name ('bundled', 'reference') or None")
        self.n = n
        self._opponent_fn = _opponent_fn(opponent_fn, seed)
        seeds: list[int | None]
        if seed is None:
            seeds = [None] * n
        else:
            seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]
        # the opponent given here is replaced at every episode start by _start
        modes, sides = _per_game(mode, n, "mode"), _per_game(side, n, "side")
        self.envs = [
            HockeyLearnerEnv(
                opponent="still", mode=m, side=d, reward=reward, seed=s, game=game, action_repeat=action_repeat
            )
            for m, d, s in zip(modes, sides, seeds)
        ]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self._obs = np.zeros((n, 18))

    def _start(self, index: int) -> tuple[np.ndarray, dict]:
        env = self.envs[index]
        env.set_opponent(self._opponent_fn(index))
        return env.reset()

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, list[dict]]:
        """Start a new episode in every game; a seed reseeds all of them."""
        infos = []
        if seed is not None:
            for index, s in enumerate(np.random.SeedSequence(seed).generate_state(self.n)):
                self.envs[index].np_random, _ = gym.utils.seeding.np_random(int(s))
        for index in range(self.n):
            self._obs[index], info = self._start(index)
            infos.append(info)
        return self._obs.copy(), infos

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        actions = clip_action(actions, "actions", batch=self.n)
        rewards = np.zeros(self.n)
        terminated = np.zeros(self.n, dtype=bool)
        truncated = np.zeros(self.n, dtype=bool)
        infos: list[dict] = []
        for index, env in enumerate(self.envs):
            obs, rewards[index], terminated[index], truncated[index], info = env._step(actions[index])
            if terminated[index] or truncated[index]:
                final_obs, final_info = obs, info
                obs, info = self._start(index)
                info = dict(info, final_obs=final_obs, final_info=final_info, frames=final_info["frames"])
            self._obs[index] = obs
            infos.append(info)
        return self._obs.copy(), rewards, terminated, truncated, infos

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _register() -> None:
    """Register the learner envs with gymnasium (once, however often this runs)."""
    ids = {
        "HockeyAgent-v0": {"mode": "normal"},
        "HockeyAgentShooting-v0": {"mode": "shooting", "side": "p1"},
        "HockeyAgentDefense-v0": {"mode": "defense", "side": "p1"},
    }
    for env_id, kwargs in ids.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="agent.training.envs:HockeyLearnerEnv", kwargs=kwargs)


_register()
