"""One tournament game between two players, played the way the comprl server plays it.

GAME.md, "The tournament": a game is `rounds` (4) rounds of one HockeyEnv, reset
between rounds with the starting side alternating; each player is sent its own
observation (player 2 gets `obs_agent_two()`), answers 4 values in [-1, 1] and is
never told that a round ended, so each player's `reset()` is called at the start of
every round; a round ends when the game says done; the game's winner has more round
wins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from agent.game import HockeyEnv, Mode, parse_mode
from agent.policy import Policy


class FrameSink(Protocol):
    """Where rendered frames go: a list, or a writer that streams them to a file."""

    def append(self, frame: np.ndarray) -> None: ...


@dataclass(frozen=True)
class GameResult:
    """The outcome of one game; winners are +1 player 1, -1 player 2, 0 draw."""

    rounds: tuple[int, ...]
    score1: int
    score2: int
    winner: int
    steps: int
    duration: float


def game_winner(rounds: tuple[int, ...] | list[int]) -> int:
    """+1 / -1 for the player with more round wins (rounds as +1 / -1 / 0), 0 for a draw."""
    return int(np.sign(rounds.count(1) - rounds.count(-1)))


def check_action(action: Any, who: str) -> np.ndarray:
    """The server's rule: exactly 4 finite values in [-1, 1]; otherwise a ValueError."""
    try:
        arr = np.asarray(action, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{who} returned an action that is not numeric: {action!r}") from exc
    if arr.shape != (4,):
        raise ValueError(f"{who} returned {arr.size} action values, expected 4: {arr}")
    x0, x1, x2, x3 = arr.tolist()  # plain floats: the cheapest check on the hot path
    if not (-1.0 <= x0 <= 1.0 and -1.0 <= x1 <= 1.0 and -1.0 <= x2 <= 1.0 and -1.0 <= x3 <= 1.0):  # NaN fails too
        problem = "a non-finite action" if not np.all(np.isfinite(arr)) else "an action outside [-1, 1]"
        raise ValueError(f"{who} returned {problem}: {arr}")
    return arr


def make_env(game: Any = None, mode: Mode | str | int = Mode.NORMAL) -> Any:
    """The game to play on, made fresh unless `game` is already a game object.

    None: the bundled HockeyEnv; 'bundled' / 'reference': the implementation that
    `agent.game.load_game` names; a game object is returned as is (its mode is kept).
    """
    if game is not None and not isinstance(game, str):
        if not callable(getattr(game, "step", None)):
            raise TypeError(f"game must be None, 'bundled', 'reference' or a HockeyEnv; got {game!r}")
        return game
    mode = parse_mode(mode)
    if game is None:
        return HockeyEnv(mode=mode, keep_mode=True)
    from agent.game import load_game

    module = load_game(game)
    return module.HockeyEnv(mode=module.Mode(int(mode)), keep_mode=True)


def _round_seeds(seed: int | None, rounds: int) -> list[int | None]:
    if seed is None:
        return [None] * rounds
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(rounds)]


def player1_starts(round_index: int) -> bool:
    """Whether player 1 starts round `round_index` (0-based) of a NORMAL game: the puck lies in its half.

    A fresh game's own toggle makes player 2 start the first round, then they alternate.
    """
    return round_index % 2 == 1


def play_game(
    player1: Policy,
    player2: Policy,
    seed: int | None = None,
    mode: Mode | str | int = Mode.NORMAL,
    rounds: int = 4,
    game: Any = None,
    frames: FrameSink | None = None,
) -> GameResult:
    """Play one game of `rounds` rounds; `game` is None/'bundled'/'reference' or a HockeyEnv.

    A name or None makes a fresh game, as the server does for every game. Round i
    starts with one_starting = (i odd), which is what a fresh NORMAL game's own toggle
    gives (player 2 starts the first round), and stays so when a used env is passed.
    With a seed, every round's reset gets a seed derived from it (reproducible games);
    without, the game draws fresh entropy. `frames`, when given, receives an RGB array
    after every reset and every step.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    env = make_env(game, mode)
    start = time.perf_counter()
    winners: list[int] = []
    steps = 0
    for index, round_seed in enumerate(_round_seeds(seed, rounds)):
        obs1, _ = env.reset(one_starting=player1_starts(index), seed=round_seed)
        obs2 = env.obs_agent_two()
        player1.reset()
        player2.reset()
        if frames is not None:
            frames.append(env.render(mode="rgb_array"))
        done = False
        info: dict = {}
        while not done:
            a1 = check_action(player1.act(obs1), "player 1")
            a2 = check_action(player2.act(obs2), "player 2")
            obs1, _, done, truncated, info = env.step(np.hstack([a1, a2]))
            done = done or truncated
            obs2 = env.obs_agent_two()
            steps += 1
            if frames is not None:
                frames.append(env.render(mode="rgb_array"))
        winners.append(int(info["winner"]))
    return GameResult(
        rounds=tuple(winners),
        score1=winners.count(1),
        score2=winners.count(-1),
        winner=game_winner(winners),
        steps=steps,
        duration=time.perf_counter() - start,
    )
