"""The DreamerV3 training loop: collect games, fill the replay, update, evaluate, checkpoint.

Collection: `cfg.train.envs` games are stepped together (VectorHockey); the learner
acts with the stochastic policy (`DreamerAgent.policy_step(deterministic=False)`),
except during the first `prefill` env steps with `prefill_policy` 'random', which use
uniform random actions (the policy still runs, so its recurrent state follows the
actions actually taken); with 'agent' the policy acts from the first step, as in the
official code (which trains from 1,024 steps on).

Action repeat: with `action_repeat` k the learner decides every k-th game frame and
its action is held for k frames (VectorHockey), the opponent acting every frame. The
replay stores one row per decision; env steps (`env_steps`, `steps`, prefill, the
evaluation, checkpoint and snapshot schedules, the metrics' `step`) count game frames,
as the tournament does, and `decisions` counts the rows collected.

Train ratio: replayed rows per collected row. After prefill the loop owes
rows * train_ratio / (batch_size * seq_len) updates, rows being the decisions collected
after prefill, counted as all decisions times the share of the env steps played after
prefill (with repeat 1 exactly env_steps - prefill), and runs them after each batched
env step, so prefill data is not replayed in one burst. Learning per collected row
does not depend on the repeat.

Modes: 'normal', 'shooting', 'defense', or 'curriculum' = shooting for the first third
of `steps`, defense for the second, normal for the last (scoring first, then
defending, then the full game). The learner plays player 1 in the training modes
(their start positions favour player 1) and a random side per round in normal.
Drills: the last `drill_envs` of the games play `drill_mode` rounds throughout, beside
the mode's rounds, so a skill the full game rarely demands is practised all along
('mixed': those games alternate defense, shooting, defense, ...); their outcomes are
logged in 'drill' rows (`train/drill_outcome`, `train/drill_shooting` 1 for a shooting
drill), kept out of the win rate and the opponent sampler.

Opponents: a scripted name, or 'mix' (weak or strong drawn per round). An
`opponent_sampler` (`sample(env_index) -> (name, Policy)`, `report(name, outcome)`
with outcome +1 win / 0 draw / -1 loss from the learner's side; optional
`state_dict()` / `load_state_dict()` saved in checkpoints) replaces that for
self-play, and every callable in `on_env_step` is called as `fn(trainer)` after every
batched env step (snapshots).

Evaluation: every `eval_every` env steps and at the end, `eval_rounds` rounds (whole
4-round games) against each of `eval_opponents`, played as the tournament plays them
(agent.players.match.play_games, all games at once) with the deterministic policy
(actor mean, each action held for `action_repeat` frames) in the training mode (normal
for curriculum), on the same fixed seeds every time so evaluations are comparable.

Resume: a checkpoint holds the model, optimisers, replay (its .npz file), counters
and every generator (python, numpy, torch, the trainer's, the games'). The games'
physics cannot be saved, so a resumed run starts new rounds from the restored
generators; the updates themselves continue bit-identically. Ctrl-C (SIGINT) or
SIGTERM finishes the current step, saves a checkpoint and returns; a second Ctrl-C
stops at once without saving.

Errors: an unexpected exception in a step (collection, an update, an evaluation, a
periodic checkpoint, a callback in `on_env_step`) appends its traceback to
<run dir>/error.log, saves a checkpoint and raises a TrainingError (the exception as
its cause) saying whether the save worked, so at most the failing step is lost. The
checkpoint counts only completed steps: a collection that fails while the games step
has stored nothing in the replay (its rows are stored once the games have stepped),
one whose callbacks fail is complete, and an update cut short is not counted, though
the optimiser steps it already took (the world model's, say) stay in the model:
valid weights, only not bit-identical to any uninterrupted run, since copying the
model before every update to undo them would cost more than they are worth. A model
or optimiser state holding NaN or infinity is never saved: the last checkpoint stays.
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from agent.config import (
    CHOICES,
    CURRICULUM,
    DEVICES,
    MIX,
    SEED_EVAL,
    SEED_GAMES_STEP,
    SEED_PREFILL,
    Config,
    config_from_dict,
    config_to_dict,
    save_config,
    scripted_seed,
    validate,
)
from agent.dreamer.agent import metrics_to_host
from agent.game.rules import ROUNDS_PER_GAME
from agent.players.policy import Policy
from agent.players.scripted import make_scripted, scripted_batch
from agent.training import checkpoint as ckpt
from agent.training import cpu
from agent.training.metrics import METRICS_FILE, MetricsLogger
from agent.training.replay import Replay
from agent.training.signals import install_stop_signals, restore_signals

WIN_WINDOW = 100  # rounds in the recent win rate
GRAPH_AFTER_UPDATES = 2  # eager updates before the update is captured as a CUDA graph


class TrainingError(RuntimeError):
    """An unexpected exception stopped the training loop (see the module docstring).

    `error` is that exception (also the cause), `env_steps` the env steps completed,
    `saved` whether a checkpoint of them was written (else `problem` says why not),
    `checkpoint_step` the env step of the newest checkpoint in the run directory
    (None when there is none) and `log` the error.log holding the traceback (None when
    it could not be written).
    """

    def __init__(
        self,
        error: Exception,
        env_steps: int,
        problem: str | None,
        checkpoint_step: int | None,
        log: Path | None,
    ) -> None:
        self.error, self.env_steps, self.problem = error, env_steps, problem
        self.saved = problem is None
        self.checkpoint_step, self.log = checkpoint_step, log
        text = f"training stopped by an error at env step {env_steps}: {one_line(error)}"
        if self.saved:
            text += "; a checkpoint was saved"
        elif checkpoint_step is None:
            text += f"; no checkpoint was saved ({problem}); no checkpoint exists yet"
        else:
            text += f"; no checkpoint was saved ({problem}); the last checkpoint is at env step {checkpoint_step}"
        super().__init__(text)


def one_line(error: BaseException) -> str:
    """'ExcType: the first line of its message' (the rest, with the traceback, goes to error.log)."""
    lines = str(error).strip().splitlines()
    return type(error).__name__ + (f": {lines[0][:300]}" if lines else "")


def _nonfinite(*states: Any) -> bool:
    """Whether any floating-point tensor in these (nested dicts and lists of) states is NaN or infinite."""
    for state in states:
        if isinstance(state, torch.Tensor):
            if state.is_floating_point() and not bool(torch.isfinite(state).all()):
                return True
        elif isinstance(state, dict):
            if _nonfinite(*state.values()):
                return True
        elif isinstance(state, (list, tuple)) and _nonfinite(*state):
            return True
    return False


def _append(path: Path, text: str) -> bool:
    """Append `text` to `path`; whether that worked."""
    try:
        with open(path, "a") as f:
            f.write(text)
        return True
    except OSError:
        return False


class OpponentSampler(Protocol):
    def sample(self, env_index: int) -> tuple[str, Policy]: ...

    def report(self, name: str, outcome: int) -> None: ...


def resolve_device(name: str) -> str:
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; choices: {', '.join(DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device; use --device cpu or auto")
    return name


def check_run_dir(run_dir: str | Path) -> None:
    """A ValueError naming what is read-only unless a run can be written in `run_dir`.

    Asked of os.access before anything is written: the directory (or, when it does not
    exist yet, its nearest existing parent) and the files a resumed run appends to.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        existing = run_dir.absolute().parent
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(f"cannot create the run directory {run_dir}: {existing} is not a directory")
        if not os.access(existing, os.W_OK):
            raise ValueError(f"cannot create the run directory {run_dir}: {existing} is read-only")
        return
    if not run_dir.is_dir():
        raise ValueError(f"the run directory {run_dir} is not a directory")
    if not os.access(run_dir, os.W_OK):
        raise ValueError(f"cannot write the run directory {run_dir}: it is read-only")
    for name in (METRICS_FILE, "tb"):  # appended to on resume
        path = run_dir / name
        if path.exists() and not os.access(path, os.W_OK):
            raise ValueError(f"cannot write the run directory {run_dir}: {path} is read-only")


def mode_at(mode: str, env_steps: int, total: int) -> str:
    """The game mode at `env_steps` (curriculum: thirds of `total`)."""
    if mode != "curriculum":
        return mode
    return CURRICULUM[min(2, 3 * env_steps // max(total, 1))]


def _side(mode: str) -> str:
    return "random" if mode == "normal" else "p1"


class ScriptedSampler:
    """The default opponents: one scripted player, or weak/strong drawn per round for 'mix'.

    Keeps per-opponent outcome counts (shown in episode rows).
    """

    def __init__(self, opponent: str, seed: int) -> None:
        choices = CHOICES["train", "opponent"]
        if opponent not in choices:
            raise ValueError(f"unknown opponent {opponent!r}; choices: {', '.join(choices)}")
        self.names = MIX if opponent == "mix" else (opponent,)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.players: dict[tuple[int, str], Policy] = {}
        self.outcomes: dict[str, list[int]] = {n: [0, 0, 0] for n in self.names}  # losses, draws, wins

    def sample(self, env_index: int) -> tuple[str, Policy]:
        name = self.names[int(self.rng.integers(len(self.names)))] if len(self.names) > 1 else self.names[0]
        key = (env_index, name)
        if key not in self.players:
            self.players[key] = make_scripted(name, seed=scripted_seed(self.seed, env_index))
        return name, self.players[key]

    def report(self, name: str, outcome: int) -> None:
        self.outcomes[name][int(outcome) + 1] += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": json.dumps(self.rng.bit_generator.state),
            "outcomes": {k: list(v) for k, v in self.outcomes.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.outcomes = {k: list(v) for k, v in state["outcomes"].items()}


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    state: dict[str, Any] = {
        "python": json.dumps(random.getstate()),
        "numpy": json.dumps(np_state),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    np_state = json.loads(state["numpy"])
    np_state["state"]["key"] = np.array(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class Trainer:
    """Trains one DreamerAgent in `run_dir` (config.json, checkpoint.pt, replay-*.npz, metrics)."""

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path,
        opponent_sampler: OpponentSampler | None = None,
        *,
        resume: bool = False,
        preset: str = "",
        progress: bool = True,
        tensorboard: bool = True,
        init: str | Path | None = None,
    ) -> None:
        """`init` (a run directory or checkpoint) gives a new run the weights of another
        agent of the same model configuration to start from; its optimisers start fresh."""
        from agent.dreamer.agent import DreamerAgent

        validate(cfg)
        check_run_dir(run_dir)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.preset = preset
        self.progress = progress
        self.device = resolve_device(cfg.train.device)
        t = cfg.train
        random.seed(t.seed)
        np.random.seed(t.seed)
        torch.manual_seed(t.seed)
        self.agent = DreamerAgent(cfg).to(self.device)
        latent = (self.agent.wm.deter_size, cfg.model.stoch) if t.replay_context else None
        self.replay = Replay(
            t.replay_capacity, t.envs, seed=t.seed, online_len=t.seq_len if t.online else 0, latent=latent
        )
        self.sampler: OpponentSampler = opponent_sampler or ScriptedSampler(t.opponent, t.seed)
        self.rng = np.random.default_rng(t.seed + SEED_PREFILL)  # prefill actions
        self.on_env_step: list[Callable[[Trainer], None]] = []
        self.env_steps = 0  # game frames played by each game, summed over the games
        self.decisions = 0  # the learner's decisions, one replay row each (env_steps at repeat 1)
        self.updates = 0
        self.episodes = 0
        self.recent: deque[int] = deque(maxlen=WIN_WINDOW)
        self._time_offset = 0.0
        self._start: float | None = time.perf_counter()
        self._threads = torch.get_num_threads()  # what the contention guard returns to
        self._stop = False
        self.envs: Any = None
        self.mode = ""
        self._env_builds = 0
        self._env_rng_states: list[str] = []
        self._opponent_names = [""] * t.envs
        self.last_eval: dict[str, float] = {}
        self.status_fields: dict[str, str] = {}  # shown on the progress line (self-play: the league rating)
        self._graph_failed = ""
        self.last_eval_step = -1
        self.checkpoint_step: int | None = None  # env step of the newest checkpoint on disk
        self._kept_updates: int | None = None  # updates of the newest kept checkpoint (train.keep_checkpoints)

        if resume:
            if init is not None:
                raise ValueError("a resumed run continues from its own checkpoint: --init is for new runs")
            self._load()
        elif (self.run_dir / ckpt.CHECKPOINT_FILE).exists():
            raise ValueError(f"{self.run_dir} already holds a checkpoint: pass --resume or choose another --run-dir")
        elif init is not None:
            self._init_from(init)
        save_config(cfg, self.run_dir / ckpt.CONFIG_FILE)
        self.metrics = MetricsLogger(
            self.run_dir, t.log_every, resume_step=self.env_steps if resume else None, tensorboard=tensorboard
        )

    # ----- time and opponents -------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds of training, summed over resumed sessions and over calls of `train`
        (the time between calls, another learner's turn say, does not count)."""
        running = time.perf_counter() - self._start if self._start is not None else 0.0
        return self._time_offset + running

    def _opponent_for(self, index: int) -> Policy:
        name, policy = self.sampler.sample(index)
        self._opponent_names[index] = name
        return policy

    # ----- collection ------------------------------------------------------------------
    def _start_envs(self, mode: str) -> None:
        """(Re)build the games for `mode` and start new rounds everywhere."""
        from agent.training.envs import RewardConfig, VectorHockey

        t = self.cfg.train
        modes = [self._drill_mode(i) if self._is_drill(i) else mode for i in range(t.envs)]
        self.envs = VectorHockey(
            t.envs,
            self._opponent_for,
            mode=modes,
            reward=RewardConfig(kind=t.reward),
            seed=t.seed + SEED_GAMES_STEP * (self._env_builds + 1),
            side=[_side(m) for m in modes],
            action_repeat=t.action_repeat,
        )
        self._env_builds += 1
        if self._env_rng_states:  # restored from a checkpoint
            for env, state in zip(self.envs.envs, self._env_rng_states):
                env.np_random.bit_generator.state = json.loads(state)
            self._env_rng_states = []
        self.mode = mode
        obs, _ = self.envs.reset()
        n = t.envs
        self._obs = obs.astype(np.float32)
        self._is_first = np.ones(n, bool)
        self._reward = np.zeros(n, np.float32)
        self._returns = np.zeros(n)
        self._state = self.agent.initial_state(n)
        self._prev_action = torch.zeros(n, 4, device=self.device)

    def collect(self) -> None:
        """One batched env step (one decision per game, held for its frames): act, store the
        rows, handle finished rounds."""
        t = self.cfg.train
        want = mode_at(t.mode, self.env_steps, t.steps)
        if self.envs is None or want != self.mode:
            self._start_envs(want)
        n = t.envs
        with torch.no_grad():
            action_t, self._state = self.agent.policy_step(
                torch.as_tensor(self._obs, device=self.device),
                self._prev_action,
                self._state,
                torch.as_tensor(self._is_first, device=self.device),
                deterministic=False,
            )
        if self.env_steps < t.prefill and t.prefill_policy == "random":
            action = self.rng.uniform(-1.0, 1.0, (n, 4)).astype(np.float32)
        else:
            action = action_t.detach().cpu().numpy().astype(np.float32)
        self._prev_action = torch.as_tensor(action, device=self.device)
        obs, reward, terminated, truncated, infos = self.envs.step(action)
        # stored once the games have stepped: a step that fails leaves the replay as it was
        self.replay.add(self._obs, action, self._reward, self._is_first, np.zeros(n, bool), **self._latents())
        self._returns += reward
        done = terminated | truncated
        if done.any():
            idx = np.flatnonzero(done)
            final = np.stack([infos[i]["final_obs"] for i in idx]).astype(np.float32)
            self.replay.add(
                final,
                np.zeros((idx.size, 4), np.float32),
                reward[idx],
                np.zeros(idx.size, bool),
                terminated[idx],
                envs=idx,
            )
            for i in idx:
                self._finish_round(int(i), int(infos[i]["final_info"]["winner"]))
        self._obs = obs.astype(np.float32)
        self._reward = np.where(done, 0.0, reward).astype(np.float32)
        self._is_first = done
        self.env_steps += sum(int(info["frames"]) for info in infos)
        self.decisions += n
        for fn in self.on_env_step:
            fn(self)

    def _latents(self) -> dict[str, np.ndarray]:
        """The acting latent states after the current observations, for a replay that keeps them."""
        if self.replay.latent is None:
            return {}
        m = self.cfg.model
        stoch = self._state["stoch"].reshape(-1, m.stoch, m.classes).argmax(-1)
        return {
            "deter": self._state["deter"].cpu().numpy().astype(np.float16),
            "stoch": stoch.cpu().numpy().astype(np.uint8),
        }

    def _drill_number(self, index: int) -> int:
        """Game `index`'s place among the drill games (the last `drill_envs`); negative for a full game."""
        return index - (self.cfg.train.envs - self.cfg.train.drill_envs)

    def _is_drill(self, index: int) -> bool:
        return self._drill_number(index) >= 0

    def _drill_mode(self, index: int) -> str:
        """The drill game `index` plays: `drill_mode`, or for 'mixed' defense and shooting in turn."""
        mode = self.cfg.train.drill_mode
        return ("defense", "shooting")[self._drill_number(index) % 2] if mode == "mixed" else mode

    def _finish_round(self, index: int, outcome: int) -> None:
        self.episodes += 1
        if self._is_drill(index):
            kind = "drill"
            values = {
                "train/drill_return": self._returns[index],
                "train/drill_outcome": outcome,
                "train/drill_shooting": float(self._drill_mode(index) == "shooting"),
            }
        else:
            self.sampler.report(self._opponent_names[index], outcome)
            self.recent.append(outcome)
            kind = "episode"
            values = {
                "train/win_rate": self.win_rate(),
                "train/episode_return": self._returns[index],
                "train/outcome": outcome,
            }
        self.metrics.log_row(kind, self.env_steps, self.updates, self.elapsed(), values)
        self._returns[index] = 0.0

    def status(self) -> str:
        """The progress line's news: the last evaluation's rounds won per opponent, then
        whatever the callbacks put in `status_fields` (self-play: the league rating)."""
        won = [f"{key.split('/')[1]} {value:.0%}" for key, value in sorted(self.last_eval.items())
               if key.endswith("/win")]  # fmt: skip
        parts = ([f"eval won: {', '.join(won)}"] if won else []) + list(self.status_fields.values())
        return "; ".join(parts)

    def win_rate(self) -> float:
        """Share of the last WIN_WINDOW rounds the learner won (NaN before the first)."""
        return float(np.mean(np.array(self.recent) == 1)) if self.recent else float("nan")

    # ----- updates -----------------------------------------------------------------------
    def _updates_left(self) -> int:
        t = self.cfg.train
        return t.updates - self.updates if t.updates > 0 else self.updates_due()

    def budget_spent(self) -> bool:
        """Whether the run has done train.updates updates (when that budget is set)."""
        return 0 < self.cfg.train.updates <= self.updates

    def updates_due(self) -> int:
        """Updates owed for the rows (decisions) collected after prefill (module docstring)."""
        t = self.cfg.train
        after = max(0, self.env_steps - t.prefill)
        rows = self.decisions * after / self.env_steps if after else 0.0
        owed = rows * t.train_ratio / (t.batch_size * t.seq_len)
        return max(0, int(owed) - self.updates)

    def update_once(self) -> dict[str, Any]:
        """One DreamerV3 update on a batch from the replay; logs its metrics and returns
        them as Python numbers (the loop itself never waits for them: `_update`)."""
        return metrics_to_host(self._update())

    def _update(self) -> dict[str, torch.Tensor]:
        """One update; its metrics stay on the device until the logger's next row."""
        t = self.cfg.train
        batch = self.replay.sample(t.batch_size, t.seq_len, context=t.replay_context)
        where = (batch.pop("game", None), batch.pop("first", None))
        tensors = {k: torch.as_tensor(v).to(self.device, non_blocking=True) for k, v in batch.items()}
        if self._capture_due():
            try:
                metrics = self.agent.capture_graph(tensors, update_index=self.updates)
            except RuntimeError as exc:  # a torch that cannot capture this update: stay eager
                self.agent.release_graph()
                self._graph_failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                warnings.warn(
                    f"the update could not be captured as a CUDA graph, training eagerly: {self._graph_failed}",
                    stacklevel=2,
                )
                metrics = self.agent.step(tensors, update_index=self.updates)
        else:
            metrics = self.agent.step(tensors, update_index=self.updates)
        self.updates += 1
        if t.replay_context:  # the refreshed posteriors become the context of later samples
            m = self.cfg.model
            deter, stoch = self.agent.posterior
            stoch = stoch.reshape(*stoch.shape[:2], m.stoch, m.classes).argmax(-1)
            self.replay.update_latents(*where, deter.cpu().numpy().astype(np.float16), stoch.cpu().numpy())
        self.metrics.log_update(self.env_steps, self.updates, self.elapsed(), metrics)
        return metrics

    def _capture_due(self) -> bool:
        """Whether to record the update as a CUDA graph now: on a GPU, when train.cuda_graph
        is on, after a few eager updates have settled the optimiser states."""
        return (
            self.device == "cuda" and self.cfg.train.cuda_graph and not self.agent.graph_captured
            and self.updates >= GRAPH_AFTER_UPDATES and not self._graph_failed
        )  # fmt: skip

    # ----- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """About eval_rounds rounds per eval opponent (whole 4-round games), deterministic policy.

        Played as the tournament plays (agent.players.match.play_games: sides alternate by
        game, the starting side by round) on the same seeds every time, so evaluations
        are comparable; logs an eval row with the shares of rounds won, drawn and lost.
        """
        from agent.dreamer.agent import BatchActingPolicy
        from agent.players.match import play_games

        t = self.cfg.train
        mode = "normal" if t.mode == "curriculum" else t.mode
        games = -(-t.eval_rounds // ROUNDS_PER_GAME)
        seed = t.seed + SEED_EVAL
        result: dict[str, float] = {}
        for opp in t.eval_opponents:
            tally = play_games(
                BatchActingPolicy(self.agent, games, deterministic=True, action_repeat=t.action_repeat),
                scripted_batch(opp, games, seed=seed),
                games,
                a_side="alternate" if mode == "normal" else "p1",
                seed=seed,
                mode=mode,
            )
            result.update({f"eval/{opp}/{key}": value for key, value in tally.rates().items()})
        self.metrics.log_row("eval", self.env_steps, self.updates, self.elapsed(), result)
        self.last_eval, self.last_eval_step = result, self.env_steps
        return result

    # ----- checkpoints ---------------------------------------------------------------------
    def save(self) -> Path:
        """Replay file first (named by step), then the checkpoint naming it, then old replays go."""
        self.metrics.flush_updates(self.env_steps, self.updates, self.elapsed())
        replay_name = f"replay-{self.env_steps}.npz"
        self.replay.save(self.run_dir / replay_name)
        envs = [json.dumps(e.np_random.bit_generator.state) for e in self.envs.envs] if self.envs else []
        rng = _rng_state()
        rng["trainer"] = json.dumps(self.rng.bit_generator.state)
        rng["envs"] = envs
        trainer_state: dict[str, Any] = {"recent": list(self.recent), "env_builds": self._env_builds}
        if hasattr(self.sampler, "state_dict"):
            trainer_state["sampler"] = self.sampler.state_dict()
        payload = {
            "preset": self.preset,
            "config": config_to_dict(self.cfg),
            "model": self.agent.state_dict(),
            "optimizer": self.agent.optimizer_state(),
            "counters": {
                "env_steps": self.env_steps,
                "decisions": self.decisions,
                "updates": self.updates,
                "episodes": self.episodes,
                "time": self.elapsed(),
            },
            "rng": rng,
            "trainer": trainer_state,
        }
        path = ckpt.save(self.run_dir / ckpt.CHECKPOINT_FILE, {**payload, "replay": replay_name})
        if self.cfg.train.keep_checkpoints and self.updates != self._kept_updates:
            # the replay is not kept with it: only the run's newest checkpoint names one; saves
            # without an update since the last kept one (a long prefill) hold the same weights
            self._kept_updates = self.updates
            kept = self.run_dir / ckpt.KEPT_CHECKPOINTS
            kept.mkdir(exist_ok=True)
            ckpt.save(kept / f"ckpt-{self.env_steps:08d}.pt", payload)
        self.checkpoint_step = self.env_steps
        for old in self.run_dir.glob("replay-*.npz"):
            if old.name != replay_name:
                old.unlink()
        return path

    def _init_from(self, source: str | Path) -> None:
        """Start from another agent's weights (refused when its model configuration differs)
        and, with train.init_optimizer, its optimiser moments; with train.init_replay, from the
        rows of the replay its checkpoint names, or of train.init_replay_file (this run's own
        sampling generator kept)."""
        data = ckpt.load(source, device="cpu")
        file = ckpt.resolve(source)
        what = str(file)
        try:
            found = config_from_dict(data["config"])
        except ValueError as exc:
            raise ValueError(f"the config in {what}: {exc}") from exc
        ckpt.check_compatible(self.cfg, found, what)
        ckpt.load_model_state(self.agent, data["model"], what)
        self.agent.to(self.device)
        if self.cfg.train.init_optimizer:
            if not isinstance(data.get("optimizer"), dict):
                raise ValueError(f"{what} holds no optimiser state: leave train.init_optimizer false")
            try:
                self.agent.load_optimizer_moments(data["optimizer"])
            except ValueError as exc:
                raise ValueError(f"{what}: {exc} (train.init_optimizer=false starts the optimisers fresh)") from exc
        if self.cfg.train.init_replay:
            named = self.cfg.train.init_replay_file
            try:
                if named and not Path(named).is_file():
                    raise ValueError(f"train.init_replay_file {named} is not a file")
                self.replay.load(Path(named) if named else ckpt.replay_beside(data, file), rows_only=True)
            except ValueError as exc:
                raise ValueError(f"{exc} (train.init_replay=false starts from an empty replay)") from exc

    def _load(self) -> None:
        data = ckpt.load(self.run_dir, device="cpu")
        file = ckpt.resolve(self.run_dir)
        ckpt.check_resumable(data, file)
        saved = config_from_dict(data["config"])
        ckpt.check_compatible(self.cfg, saved, str(self.run_dir))
        if saved.train.envs != self.cfg.train.envs:
            raise ValueError(f"the checkpoint ran {saved.train.envs} games; train.envs must stay the same on resume")
        ckpt.load_model_state(self.agent, data["model"], str(self.run_dir))
        ckpt.load_optimizer_state(self.agent, data["optimizer"], str(file))
        self.replay.load(ckpt.replay_beside(data, file))
        c = data["counters"]
        self.env_steps, self.updates, self.episodes = int(c["env_steps"]), int(c["updates"]), int(c["episodes"])
        self.decisions = int(c.get("decisions", self.env_steps))  # checkpoints before the repeat: one per env step
        self._time_offset = float(c["time"])
        self.checkpoint_step = self.env_steps
        rng = data["rng"]
        _set_rng_state(rng)
        self.rng.bit_generator.state = json.loads(rng["trainer"])
        self._env_rng_states = list(rng["envs"])
        tr = data["trainer"]
        self.recent.extend(int(x) for x in tr["recent"])
        self._env_builds = int(tr["env_builds"])
        if "sampler" in tr and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(tr["sampler"])
        if not self.preset:
            self.preset = str(data.get("preset", ""))

    # ----- the loop ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to save and return after the current step."""
        self._stop = True

    def _stopped_by(self, error: Exception) -> TrainingError:
        """Keep `error`'s traceback in error.log, save the completed steps unless the model
        diverged, and describe both (see the module docstring)."""
        path = self.run_dir / "error.log"
        header = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}: training stopped at env step {self.env_steps} ---\n"
        log = path if _append(path, header + "".join(traceback.format_exception(error))) else None
        problem = None
        if _nonfinite(self.agent.state_dict(), self.agent.optimizer_state()):
            problem = "the model or its optimiser holds non-finite values"
        else:
            try:
                self.save()
            except Exception as exc:
                problem = f"saving failed: {one_line(exc)}"
                _append(path, "saving a checkpoint failed too:\n" + "".join(traceback.format_exception(exc)))
        return TrainingError(error, self.env_steps, problem, self.checkpoint_step, log)

    def train(self) -> dict[str, Any]:
        """Run until cfg.train.steps env steps (or a stop); returns the final counters.

        An unexpected exception saves a checkpoint and raises a TrainingError. A trainer
        that stopped (`stop`, a signal) trains on when this is called again."""
        t = self.cfg.train
        self._stop = False
        if self._start is None:
            self._start = time.perf_counter()
        previous = install_stop_signals(lambda: self._stop, self.stop)
        next_eval = (self.env_steps // t.eval_every + 1) * t.eval_every if t.eval_every > 0 else None
        next_ckpt = (self.env_steps // t.checkpoint_every + 1) * t.checkpoint_every if t.checkpoint_every > 0 else None
        progress = self._progress() if self.progress else None
        guard = None
        if self.device == "cpu" and not t.share_cpu:
            guard = cpu.ContentionGuard(self._threads)
        saved = failed = False
        try:
            if progress is not None:
                progress.start()
                task = progress.add_task(
                    "train", total=t.steps, completed=self.env_steps, ups=0.0, eps=0.0, win="-", status=""
                )
            rate_t, rate_u, rate_s = time.perf_counter(), self.updates, self.env_steps
            while self.env_steps < t.steps and not self._stop and not self.budget_spent():
                self.collect()
                note = guard.check(time.monotonic()) if guard is not None else None
                if note is not None:
                    (progress.console.print if progress is not None else print)(note)
                for _ in range(min(self.updates_due(), self._updates_left())):
                    if not self.replay.can_sample(t.seq_len + t.replay_context):
                        break
                    self._update()
                if next_eval is not None and self.env_steps >= next_eval:
                    self.evaluate()
                    next_eval += t.eval_every
                if next_ckpt is not None and self.env_steps >= next_ckpt:
                    self.save()
                    next_ckpt += t.checkpoint_every
                if progress is not None:
                    now = time.perf_counter()
                    if now - rate_t > 2.0:
                        ups = (self.updates - rate_u) / (now - rate_t)
                        eps = (self.env_steps - rate_s) / (now - rate_t)
                        rate_t, rate_u, rate_s = now, self.updates, self.env_steps
                        progress.update(task, ups=ups, eps=eps)
                    wr = self.win_rate()
                    progress.update(
                        task, completed=self.env_steps, win="-" if np.isnan(wr) else f"{wr:.0%}", status=self.status()
                    )
            if not self._stop and t.eval_every > 0 and self.last_eval_step != self.env_steps:
                self.evaluate()
            self.save()
            saved = True
        except KeyboardInterrupt:
            if not previous:  # no handler installed: this is the first Ctrl-C, save
                self.save()
                saved = True
            else:
                raise
        except Exception as exc:
            failed = True
            raise self._stopped_by(exc) from exc
        finally:
            if progress is not None:
                progress.stop()
            restore_signals(previous)
            try:
                self.metrics.flush_updates(self.env_steps, self.updates, self.elapsed())
            except Exception:
                if not failed:  # else the TrainingError above already says what broke
                    raise
            self._time_offset, self._start = self.elapsed(), None  # the clock runs only while training
        return {
            "env_steps": self.env_steps,
            "decisions": self.decisions,
            "updates": self.updates,
            "episodes": self.episodes,
            "interrupted": self._stop,
            "saved": saved,
            "time": self.elapsed(),
        }

    def close(self) -> None:
        self.metrics.close()

    @staticmethod
    def _progress(console: Any = None) -> Any:
        """The progress display: the bar on one line; the rates, the rounds won lately and the
        news (`status`) on the next, folded to the terminal's width rather than cut."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        from rich.text import Text

        class TrainingProgress(Progress):
            def get_renderables(self) -> Any:
                yield self.make_tasks_table(self.tasks)
                for task in self.tasks:
                    f = task.fields
                    line = f"{f['ups']:.2f} updates/s, {f['eps']:.1f} env steps/s, rounds won {f['win']}"
                    yield Text(line + (f"; {f['status']}" if f["status"] else ""), overflow="fold")

        return TrainingProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("env steps"),
            TimeRemainingColumn(),
            console=console,
        )
