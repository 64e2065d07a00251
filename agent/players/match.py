"""Tournament games between two players, played the way the comprl server plays them,
and the tally of their rounds: the one place every evaluation plays.

A game is `rounds` (4) rounds of one fresh HockeyEnv, reset between rounds with the
starting side alternating (player 2 starts the first, `rules.player1_starts`); each
player is sent its own observation (player 2 gets `obs_agent_two()`), answers 4 values
in [-1, 1] (`rules.check_action`) and is never told that a round ended, so each
player is reset at the start of every round; the game's winner has more round wins.

`play_games` plays many games in lockstep, so that a learned player acts for all of
them in one batched step (`BatchPolicy`); scripted players are one instance per game
(`per_game`). Player A is player 1 in even-numbered games and player 2 in odd ones
when `a_side` is 'alternate' (as the server assigns sides), always player 1 with
'p1' (the training drills, whose start positions favour player 1), always player 2
with 'p2'. Game g's rounds
are seeded from `seed + g`. The trainer's evaluation, `hockey-agent eval` and
`play`, the league and the ONNX export check all play through here and read the
result as a `Tally`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from agent.game.rules import ROUNDS_PER_GAME, Mode, check_action, from_side, game_winner, parse_mode, player1_starts
from agent.players.policy import BatchPolicy, Policy, per_game

SIDES = ("alternate", "p1", "p2")


class FrameSink(Protocol):
    """Where rendered frames go: a list, or a writer that streams them to a file."""

    def append(self, frame: np.ndarray) -> None: ...


class RoundOutcome(NamedTuple):
    """One round from player A's side: its player number, whether it started, its result."""

    side: int  # 1 or 2
    started: bool  # the round began with the puck in A's half
    outcome: int  # +1 A won, 0 draw, -1 A lost


@dataclass(frozen=True)
class GameRecord:
    """One game: the round winners in the game's terms (+1 player 1, -1 player 2, 0 draw)."""

    rounds: tuple[int, ...]
    a_side: int  # A's player number in this game
    steps: int
    mode: Mode

    @property
    def winner(self) -> int:
        """+1 player 1, -1 player 2, 0 draw."""
        return game_winner(self.rounds)

    @property
    def outcome(self) -> int:
        """The game's result from A's side."""
        return from_side(self.winner, self.a_side)

    def round_outcomes(self) -> list[RoundOutcome]:
        a_first = self.a_side == 1
        return [
            RoundOutcome(
                self.a_side, self.mode == Mode.NORMAL and player1_starts(i) == a_first, from_side(w, self.a_side)
            )
            for i, w in enumerate(self.rounds)
        ]


@dataclass(frozen=True)
class Tally:
    """The games of `play_games`, counted from player A's side."""

    games: tuple[GameRecord, ...]

    def game_outcomes(self) -> list[int]:
        return [g.outcome for g in self.games]

    def rounds(self) -> list[RoundOutcome]:
        return [r for g in self.games for r in g.round_outcomes()]

    def round_outcomes(self) -> list[int]:
        return [r.outcome for r in self.rounds()]

    @staticmethod
    def counts(outcomes: Sequence[int]) -> tuple[int, int, int]:
        """(wins, draws, losses) of a list of outcomes."""
        outcomes = list(outcomes)
        return outcomes.count(1), outcomes.count(0), outcomes.count(-1)

    def rates(self) -> dict[str, float]:
        """Shares of rounds A won, drew and lost."""
        outcomes = self.round_outcomes()
        wins, draws, losses = self.counts(outcomes)
        n = max(1, len(outcomes))
        return {"win": wins / n, "draw": draws / n, "loss": losses / n}

    def rows(self, by_side: bool) -> list[tuple[str, list[int]]]:
        """Table rows of `outcome_rows`."""
        return outcome_rows(self.game_outcomes(), self.rounds(), by_side)

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.games + other.games)

    def score(self) -> tuple[int, int]:
        """Rounds won by A and by B over all games."""
        rounds = self.round_outcomes()
        return rounds.count(1), rounds.count(-1)

    @property
    def steps(self) -> int:
        return sum(g.steps for g in self.games)


def outcome_rows(games: list[int], rounds: list[RoundOutcome], by_side: bool) -> list[tuple[str, list[int]]]:
    """Table rows: games, rounds, and (by_side) the rounds split by A's side and by who started.

    A gap between the sides points at a mirroring bug (player 2 sees `obs_agent_two()`);
    a gap between started and not started shows how much A lives on its serve. Empty
    rows are left out.
    """
    rows = [("games", list(games)), ("rounds", [r.outcome for r in rounds])]
    if by_side:
        rows += [
            ("as p1", [r.outcome for r in rounds if r.side == 1]),
            ("as p2", [r.outcome for r in rounds if r.side == 2]),
            ("starts", [r.outcome for r in rounds if r.started]),
            ("receives", [r.outcome for r in rounds if not r.started]),
        ]
    return [(label, outcomes) for label, outcomes in rows if outcomes]


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (stays inside [0, 1], sane at 0 and n)."""
    if n <= 0:
        raise ValueError("a Wilson interval needs n >= 1")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


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
        from agent.game.hockey import HockeyEnv

        return HockeyEnv(mode=mode, keep_mode=True)
    from agent.game import load_game

    module = load_game(game)
    return module.HockeyEnv(mode=module.Mode(int(mode)), keep_mode=True)


def _round_seeds(seed: int | None, rounds: int) -> list[int | None]:
    if seed is None:
        return [None] * rounds
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(rounds)]


def play_games(
    player_a: BatchPolicy,
    player_b: BatchPolicy,
    games: int,
    *,
    rounds: int = ROUNDS_PER_GAME,
    a_side: str = "alternate",
    seed: int | None = None,
    mode: Mode | str | int = Mode.NORMAL,
    game: Any = None,
    frames: FrameSink | None = None,
    on_game: Callable[[int, GameRecord], None] | None = None,
) -> Tally:
    """Play `games` games of `rounds` rounds between A and B in lockstep (module docstring).

    Both players must be able to act for `games` rows. `game` is None, 'bundled',
    'reference', or a game object (then `games` must be 1). `frames` receives an RGB
    array of game 0 after every reset and step; `on_game(index, record)` is called as
    each game ends.
    """
    if games < 1 or rounds < 1:
        raise ValueError(f"games and rounds must be at least 1, got {games} and {rounds}")
    if a_side not in SIDES:
        raise ValueError(f"unknown a_side {a_side!r}; choices: {', '.join(SIDES)}")
    if game is not None and not isinstance(game, str) and games != 1:
        raise ValueError("a game object can host one game; pass a game name to play several")
    envs = [make_env(game, mode) for _ in range(games)]
    mode = parse_mode(int(getattr(envs[0], "mode", mode)))  # a game object keeps its own mode
    a_first = np.array([a_side == "p1" or (a_side == "alternate" and g % 2 == 0) for g in range(games)])
    seeds = [_round_seeds(None if seed is None else seed + g, rounds) for g in range(games)]
    round_index = np.zeros(games, np.int64)
    winners: list[list[int]] = [[] for _ in range(games)]
    steps = np.zeros(games, np.int64)
    obs1 = np.zeros((games, 18))
    obs2 = np.zeros((games, 18))
    live = np.ones(games, bool)

    def start_round(g: int) -> None:
        obs1[g], _ = envs[g].reset(one_starting=player1_starts(int(round_index[g])), seed=seeds[g][round_index[g]])
        obs2[g] = envs[g].obs_agent_two()
        if frames is not None and g == 0:
            frames.append(envs[0].render(mode="rgb_array"))

    for g in range(games):
        start_round(g)
    everyone = np.arange(games)
    player_a.reset_rows(everyone)
    player_b.reset_rows(everyone)
    records: list[GameRecord | None] = [None] * games
    while live.any():
        rows = np.flatnonzero(live)
        first = a_first[rows]
        obs_a = np.where(first[:, None], obs1[rows], obs2[rows])
        obs_b = np.where(first[:, None], obs2[rows], obs1[rows])
        act_a = player_a.act_rows(rows, obs_a)
        act_b = player_b.act_rows(rows, obs_b)
        restart = []
        for k, g in enumerate(rows):
            a = check_action(act_a[k], "player 1" if first[k] else "player 2")
            b = check_action(act_b[k], "player 2" if first[k] else "player 1")
            action = np.hstack([a, b] if first[k] else [b, a])
            obs1[g], _, done, truncated, info = envs[g].step(action)
            obs2[g] = envs[g].obs_agent_two()
            steps[g] += 1
            if frames is not None and g == 0:
                frames.append(envs[0].render(mode="rgb_array"))
            if not (done or truncated):
                continue
            winners[g].append(int(info["winner"]))
            round_index[g] += 1
            if round_index[g] < rounds:
                start_round(g)
                restart.append(g)
            else:
                live[g] = False
                records[g] = GameRecord(tuple(winners[g]), 1 if a_first[g] else 2, int(steps[g]), mode)
                if on_game is not None:
                    on_game(int(g), records[g])
        if restart:
            player_a.reset_rows(np.array(restart))
            player_b.reset_rows(np.array(restart))
    return Tally(tuple(r for r in records if r is not None))


@dataclass(frozen=True)
class GameResult:
    """The outcome of one game; winners are +1 player 1, -1 player 2, 0 draw."""

    rounds: tuple[int, ...]
    score1: int
    score2: int
    winner: int
    steps: int
    duration: float


def play_game(
    player1: Policy,
    player2: Policy,
    seed: int | None = None,
    mode: Mode | str | int = Mode.NORMAL,
    rounds: int = ROUNDS_PER_GAME,
    game: Any = None,
    frames: FrameSink | None = None,
) -> GameResult:
    """One game between two single-game players, player1 as player 1 (see `play_games`)."""
    start = time.perf_counter()
    tally = play_games(
        per_game([player1]), per_game([player2]), 1, rounds=rounds, a_side="p1", seed=seed, mode=mode, game=game,
        frames=frames,
    )  # fmt: skip
    (record,) = tally.games
    return GameResult(
        rounds=record.rounds,
        score1=record.rounds.count(1),
        score2=record.rounds.count(-1),
        winner=record.winner,
        steps=record.steps,
        duration=time.perf_counter() - start,
    )
