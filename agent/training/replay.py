"""Replay buffer for n parallel games, in the row convention `DreamerAgent.update` reads.

Row t of a game holds obs_t, the reward_t and is_terminal_t that came with it, is_first_t,
and action_t, the action taken after seeing obs_t. Each game has its own ring buffer
(capacity // n rows), because a game that ends writes one extra row (its final
observation) and the games therefore fill at different rates. Sequences never cross
from one game's buffer into another and never wrap over the write position, so every
sampled sequence is a run of consecutive rows of one game.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np

from agent.atomic import atomic_write

OBS_DIM = 18
ACT_DIM = 4
_FIELDS = ("obs", "action", "reward", "is_first", "is_terminal")
_LATENT_FIELDS = ("deter", "stoch", "has_latent")


class Replay:
    """Uniform sequence replay; owns its numpy Generator so a resume samples the same batches."""

    def __init__(
        self, capacity: int, n_envs: int, seed: int = 0, online_len: int = 0, latent: tuple[int, int] | None = None
    ) -> None:
        """`online_len` > 0 queues every new stretch of that many rows per game; `latent`
        (deter size, number of categorical latents) keeps each row's latent state (see above)."""
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        if capacity < n_envs:
            raise ValueError(f"capacity ({capacity}) must be at least n_envs ({n_envs})")
        self.n_envs = n_envs
        self.capacity = capacity // n_envs  # rows per game
        c = self.capacity
        self.obs = np.zeros((n_envs, c, OBS_DIM), np.float32)
        self.action = np.zeros((n_envs, c, ACT_DIM), np.float32)
        self.reward = np.zeros((n_envs, c), np.float32)
        self.is_first = np.zeros((n_envs, c), bool)
        self.is_terminal = np.zeros((n_envs, c), bool)
        self.ptr = np.zeros(n_envs, np.int64)  # next write position per game
        self.size = np.zeros(n_envs, np.int64)  # filled rows per game
        self.written = np.zeros(n_envs, np.int64)  # rows ever written per game
        self.online_len = online_len
        self.queue: deque[tuple[int, int]] = deque()  # (game, first row as a count of rows written)
        self.rng = np.random.default_rng(seed)
        self.latent = latent
        if latent is not None:
            self.deter = np.zeros((n_envs, c, latent[0]), np.float16)
            self.stoch = np.zeros((n_envs, c, latent[1]), np.uint8)
            self.has_latent = np.zeros((n_envs, c), bool)

    @property
    def _fields(self) -> tuple[str, ...]:
        return _FIELDS + (_LATENT_FIELDS if self.latent is not None else ())

    def __len__(self) -> int:
        return int(self.size.sum())

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        is_first: np.ndarray,
        is_terminal: np.ndarray,
        envs: np.ndarray | None = None,
        deter: np.ndarray | None = None,
        stoch: np.ndarray | None = None,
    ) -> None:
        """Append one row to each game in `envs` (all games when None), in the given order;
        with latents kept, `deter` [n, D] and `stoch` [n, L] class indices are the rows'
        latent states (None: the rows have none)."""
        idx = np.arange(self.n_envs) if envs is None else np.asarray(envs, np.int64)
        if idx.size == 0:
            return
        if np.unique(idx).size != idx.size:
            raise ValueError("add() got the same game twice in one call")
        pos = self.ptr[idx]
        self.obs[idx, pos] = obs
        self.action[idx, pos] = action
        self.reward[idx, pos] = reward
        self.is_first[idx, pos] = is_first
        self.is_terminal[idx, pos] = is_terminal
        if self.latent is not None:
            self.has_latent[idx, pos] = deter is not None
            if deter is not None:
                self.deter[idx, pos] = deter
                self.stoch[idx, pos] = stoch
        self.ptr[idx] = (pos + 1) % self.capacity
        self.size[idx] = np.minimum(self.size[idx] + 1, self.capacity)
        self.written[idx] += 1
        if self.online_len:
            for g in idx[self.written[idx] % self.online_len == 0]:
                self.queue.append((int(g), int(self.written[g]) - self.online_len))

    def num_starts(self, seq_len: int) -> np.ndarray:
        """Number of valid sequence starts per game (0 while a game has fewer than seq_len rows)."""
        return np.maximum(self.size - seq_len + 1, 0)

    def can_sample(self, seq_len: int) -> bool:
        return bool(self.num_starts(seq_len).sum() > 0)

    def sample(self, batch_size: int, seq_len: int, context: bool = False) -> dict[str, np.ndarray]:
        """Draw batch_size sequences uniformly over all valid (game, start) pairs.

        Without context, is_first is set on the first row of each sequence: the model
        starts every sequence from its initial state, so that row is a start for it.
        With context (latents kept), each sequence comes with the row before it:
        `start_deter` [B, D] (float32), `start_stoch` [B, L] (class indices) and
        `start_action` [B, 4] are that row's latent and action, and is_first is set on
        the first row only where that row had no latent. `game` and `first` say where
        the sequence lies, for `update_latents`.
        """
        if context and self.latent is None:
            raise ValueError("this replay keeps no latent states to give a context")
        if seq_len + context > self.capacity:
            raise ValueError(f"seq_len {seq_len} exceeds the per-game capacity {self.capacity}")
        if context:
            return self._sample_with_context(batch_size, seq_len)
        env, first = self._draw(batch_size, seq_len)
        for i, (game, start) in enumerate(self._take_queued(batch_size, seq_len)):
            env[i], first[i] = game, start % self.capacity
        rows = (first[:, None] + np.arange(seq_len)[None, :]) % self.capacity
        envs = env[:, None]
        batch = {
            "obs": self.obs[envs, rows],
            "action": self.action[envs, rows],
            "reward": self.reward[envs, rows],
            "is_first": self.is_first[envs, rows].copy(),
            "is_terminal": self.is_terminal[envs, rows],
        }
        batch["is_first"][:, 0] = True
        return batch

    def _draw(self, batch_size: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform (game, ring position of the first row) over all runs of `rows` consecutive rows."""
        starts = self.num_starts(rows)
        total = int(starts.sum())
        if total == 0:
            raise ValueError(f"replay holds no sequence of {rows} rows yet (sizes {self.size.tolist()})")
        k = self.rng.integers(0, total, size=batch_size)
        bounds = np.cumsum(starts)
        env = np.searchsorted(bounds, k, side="right")
        offset = k - (bounds[env] - starts[env])  # chronological start within that game
        oldest = (self.ptr[env] - self.size[env]) % self.capacity
        return env, (oldest + offset) % self.capacity

    def _sample_with_context(self, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
        env, ctx_first = self._draw(batch_size, seq_len + 1)
        first = (ctx_first + 1) % self.capacity  # the row after the context row
        has_context = np.ones(batch_size, bool)
        for i, (game, start) in enumerate(self._take_queued(batch_size, seq_len)):
            env[i], first[i] = game, start % self.capacity
            has_context[i] = start - 1 >= self.written[game] - self.size[game]
        rows = (first[:, None] + np.arange(seq_len)[None, :]) % self.capacity
        ctx = (first - 1) % self.capacity
        envs = env[:, None]
        batch = {name: getattr(self, name)[envs, rows] for name in _FIELDS}
        batch["is_first"] = batch["is_first"].copy()
        valid = has_context & self.has_latent[env, ctx]
        batch["is_first"][:, 0] |= ~valid
        batch["start_deter"] = np.where(valid[:, None], self.deter[env, ctx], 0).astype(np.float32)
        batch["start_stoch"] = self.stoch[env, ctx] * valid[:, None]
        batch["start_action"] = self.action[env, ctx] * valid[:, None]
        batch["game"], batch["first"] = env, first
        return batch

    def update_latents(self, game: np.ndarray, first: np.ndarray, deter: np.ndarray, stoch: np.ndarray) -> None:
        """Overwrite the latents of sampled sequences (`game`, `first` from `sample`) with
        newer ones: deter [B, T, D], stoch [B, T, L] class indices."""
        rows = (np.asarray(first)[:, None] + np.arange(deter.shape[1])[None, :]) % self.capacity
        envs = np.asarray(game)[:, None]
        self.deter[envs, rows] = deter
        self.stoch[envs, rows] = stoch
        self.has_latent[envs, rows] = True

    def _take_queued(self, batch_size: int, seq_len: int) -> list[tuple[int, int]]:
        """Up to batch_size queued sequences still held whole (oldest first), as (game, first row written)."""
        taken: list[tuple[int, int]] = []
        while self.queue and len(taken) < batch_size:
            game, start = self.queue.popleft()
            if start >= self.written[game] - self.size[game] and start + seq_len <= self.written[game]:
                taken.append((game, start))
        return taken

    def state_dict(self) -> dict[str, np.ndarray]:
        """The filled rows only: rows past every game's size are still zero, and a
        buffer of a million rows would otherwise be written whole at every checkpoint."""
        rows = int(self.size.max())
        state = {name: getattr(self, name)[:, :rows] for name in self._fields}
        state.update(ptr=self.ptr, size=self.size, capacity=np.int64(self.capacity), written=self.written)
        state["queue"] = np.array(list(self.queue), np.int64).reshape(-1, 2)
        state["rng"] = np.array(json.dumps(self.rng.bit_generator.state))
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if int(state["capacity"]) != self.capacity or state["obs"].shape[0] != self.n_envs:
            raise ValueError(
                f"replay file holds {state['obs'].shape[0]} games x {int(state['capacity'])} rows, "
                f"this run expects {self.n_envs} x {self.capacity}"
            )
        rows = state["obs"].shape[1]
        if rows > self.capacity or any(state[name].shape[:2] != (self.n_envs, rows) for name in _FIELDS):
            raise ValueError(f"replay file fields disagree in shape: {[state[n].shape for n in _FIELDS]}")
        if self.latent is not None and "deter" not in state:
            raise ValueError("the replay file keeps no latent states; was train.replay_context changed?")
        for name in self._fields:
            field = getattr(self, name)
            field[:, :rows] = state[name]
            field[:, rows:] = 0
        self.ptr[...] = state["ptr"]
        self.size[...] = state["size"]
        # files written before these existed: no queue, and the rows written are the rows held
        self.written[...] = state["written"] if "written" in state else state["size"]
        self.queue = deque((int(g), int(r)) for g, r in state.get("queue", np.zeros((0, 2), np.int64)))
        self.rng.bit_generator.state = json.loads(str(state["rng"]))

    def save(self, path: str | Path) -> None:
        """Write atomically (tmp file, then os.replace) so a kill never leaves half a file."""
        with atomic_write(path, "wb") as f:  # a file object: np.savez adds no ".npz" suffix
            np.savez(f, **self.state_dict())

    def load(self, path: str | Path, rows_only: bool = False) -> None:
        """Restore a saved replay. rows_only (a new run starting from another run's replay):
        take its rows but keep this replay's own generator and start with an empty queue."""
        try:
            with np.load(path, allow_pickle=False) as data:
                state = {k: data[k] for k in data.files}
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"cannot read replay file {path}: {exc}") from exc
        missing = [k for k in (*_FIELDS, "ptr", "size", "capacity", "rng") if k not in state]
        if missing:
            raise ValueError(f"replay file {path} lacks {missing}")
        if rows_only:  # a run's samples follow its own seed, and its queue holds its own fresh rows
            state = {**state, "rng": np.array(json.dumps(self.rng.bit_generator.state))}
            state.pop("queue", None)
        self.load_state_dict(state)
