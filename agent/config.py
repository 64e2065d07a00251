"""One typed configuration per run: nested dataclasses, named presets, overrides, JSON.

A run is fully described by a `Config`; `make_config("small", ["actor.eta=1e-3"])`
builds one from a preset plus "section.field=value" overrides, each value parsed to
the field's declared type so a typo fails loudly instead of training the wrong thing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.atomic import atomic_write

# the scripted players (agent/players/scripted.py), named here once for the choices below
SCRIPTED_PLAYERS = ("still", "random", "weak", "strong", "shooter", "keeper")

# ---- seeds -------------------------------------------------------------------------
# One run seed (train.seed) spreads over the run's random streams: each stream is seeded
# with the run seed plus an offset of its own, so that no two streams share a seed.
SEED_PREFILL = 1  # the trainer's uniform prefill actions
SEED_SCRIPTED_STEP = 7919  # the scripted player of game i: seed + 7919 * (i + 1)
SEED_GAMES_STEP = 1009  # the k-th set of training games (rebuilt on a mode change): seed + 1009 * (k + 1)
SEED_EVAL = 1_000_003  # the evaluation games
SEED_LEAGUE = 4243  # the self-play league's opponent draws
SEED_POLICY_SAMPLES = 15_485_863  # the sampled policy's own generator in `hockey-agent eval --seed S`: S + this
SEED_LEARNER_STEP = 104_729  # learner k of a self-play league (main-0 first): seed + 104729 * k
SEED_LEAGUE_RESET = 7_368_787  # a league exploiter's reset draws


def scripted_seed(seed: int, game_index: int) -> int:
    """The seed of the scripted player in game `game_index` of a run (or a match) seeded `seed`."""
    return seed + SEED_SCRIPTED_STEP * (game_index + 1)


def learner_seed(seed: int, learner_index: int) -> int:
    """The seed of learner `learner_index` of a self-play league seeded `seed` (learner 0: `seed` itself)."""
    return (seed + SEED_LEARNER_STEP * learner_index) % 2**31


@dataclass
class ModelConfig:
    """World-model sizes and losses (DreamerV3 paper / official configs.yaml)."""

    deter: int = 512  # GRU state size
    hidden: int = 64  # width of the RSSM's small MLPs (GRU inputs, prior, posterior)
    stoch: int = 32  # number of categorical latents
    classes: int = 4  # classes per latent
    blocks: int = 8  # groups of the block-diagonal GRU (1 = one dense group)
    units: int = 64  # MLP width of encoder, decoder, heads, actor and critic
    layers: int = 3  # hidden layers of encoder, decoder, actor and critic
    head_layers: int = 1  # hidden layers of the reward and continue heads
    unimix: float = 0.01  # uniform mix in every categorical
    bins: int = 255  # two-hot bins of the reward head and the critic
    free_nats: float = 1.0
    dyn_scale: float = 1.0
    rep_scale: float = 0.1
    rec_scale: float = 1.0
    rew_scale: float = 1.0
    con_scale: float = 1.0
    # weight initialisation: 'torch' (PyTorch's defaults) or 'official' (truncated normal
    # scaled by fan-in, zero biases, the official output scales)
    init: str = "torch"
    # matmul precision of imagination and the actor-critic passes: 'float32', or
    # 'bfloat16' autocast (the official code computes in bfloat16; here parameters, the
    # GRU state and every distribution stay float32), or 'auto': bfloat16 on a CPU with
    # AMX (its bfloat16 products run 5-7x faster), float32 elsewhere. The world model's
    # sequential pass over 16 rows stays float32, and so does acting.
    compute_dtype: str = "auto"


@dataclass
class ActorConfig:
    """Policy distribution, entropy bonus and the imagination that trains the actor."""

    dist: str = "bounded_normal"  # 'bounded_normal' | 'tanh_normal' | 'discrete'
    min_std: float = 0.1  # std bounds of the continuous distributions (unused by 'discrete')
    max_std: float = 1.0
    action_set: str = "bins3"  # dist 'discrete' only: 'bins3' | 'joint25' (agent/dreamer/nets.py, ACTION_SETS)
    unimix: float = 0.01  # dist 'discrete' only: uniform mix in the action categoricals (official actor: 1%)
    eta: float = 3e-4  # entropy scale (at update 0 when a schedule is used)
    eta_schedule: str = "constant"  # 'constant' | 'linear' | 'exp'
    eta_final: float = 3e-5  # eta reached after eta_decay_steps updates (linear / exp)
    eta_decay_steps: int = 100_000  # in updates
    horizon: int = 15  # imagined steps
    imag_fraction: float = 1.0  # share of the replayed posterior states imagination starts from (official: all)
    lam: float = 0.95
    discount_horizon: float = 333.0  # gamma = 1 - 1 / discount_horizon
    retnorm_decay: float = 0.99
    retnorm_limit: float = 1.0  # floor of the return scale S
    retnorm_low: float = 5.0  # percentiles that define S
    retnorm_high: float = 95.0
    pg_scale: float = 1.0


@dataclass
class CriticConfig:
    """Two-hot critic with a slow EMA copy as a regulariser."""

    slow_rate: float = 0.02
    slow_reg: float = 1.0
    scale: float = 1.0
    # the replay value loss (official 0.3): the critic also learns on the replayed posterior
    # states, toward lambda-returns of the real rewards bootstrapped from imagination, its
    # gradient reaching the world model; > 0 also makes the update one joint loss
    repval_scale: float = 0.0


@dataclass
class OptimConfig:
    """The optimiser: 'adam' as in the 2023 paper (one per module: learning rates, eps and
    global-norm clipping below), or 'laprop' as in the current official code (one over
    the world model, actor and critic: lr, eps, adaptive clipping agc / pmin, warm-up)."""

    name: str = "adam"
    wm_lr: float = 1e-4
    actor_lr: float = 3e-5
    critic_lr: float = 3e-5
    wm_eps: float = 1e-8
    ac_eps: float = 1e-5
    wm_clip: float = 1000.0
    actor_clip: float = 100.0
    critic_clip: float = 100.0
    lr: float = 4e-5  # laprop
    eps: float = 1e-20  # laprop
    agc: float = 0.3  # laprop: a tensor's update is clipped to agc * max(pmin, its norm); 0 = off
    pmin: float = 1e-3  # laprop
    warmup: int = 1000  # laprop: updates of the linear warm-up from lr 0
    beta1: float = 0.9  # laprop
    beta2: float = 0.999  # laprop


@dataclass
class ExploreConfig:
    """Intrinsic reward in imagination: ensemble disagreement (agent/dreamer/explore.py)."""

    scale: float = 0.0  # weight of the bonus added to imagined rewards; 0 = off (official)
    members: int = 5
    layers: int = 2  # hidden layers of each member (width: model.units)
    lr: float = 1e-4
    clip: float = 100.0


@dataclass
class TrainConfig:
    """The training loop, replay, evaluation and self-play (owned by the trainer)."""

    steps: int = 1_000_000  # env steps of the learner (game frames)
    updates: int = 0  # and at most this many updates (0: no limit): a budget in updates
    envs: int = 8  # games stepped in a batch
    # game frames each learner decision is held for (1: it acts every frame); env steps,
    # `steps` and every schedule in env steps count frames, the train ratio counts decisions
    action_repeat: int = 1
    train_ratio: float = 512.0  # replayed rows per collected row (one row per decision)
    batch_size: int = 16
    seq_len: int = 64
    replay_capacity: int = 1_000_000
    prefill: int = 5_000  # env steps collected before the first update
    prefill_policy: str = "random"  # who acts during the prefill: 'random' (uniform actions) or 'agent'
    online: bool = False  # train on every new sequence first (the official replay's queue), then uniformly
    replay_context: bool = False  # start each replayed sequence from the latent state stored with it (official)
    # with --init: also take the source's optimiser moments (Adam's averages and step counts),
    # keeping this run's learning rates; False: the optimisers start fresh
    init_optimizer: bool = False
    # with --init: also start from the replay the source's checkpoint names (same train.envs and
    # replay_capacity); the prefill then adds train.prefill new env steps on top of it
    init_replay: bool = False
    # with init_replay: take the rows of this replay file (.npz) instead of the one the source's
    # checkpoint names, for an agent shipped without its replay (models/champion and a leg's
    # replay kept apart under models/resume/)
    init_replay_file: str = ""
    opponent: str = "weak"
    mode: str = "normal"
    drill_envs: int = 0  # of the `envs` games, how many play `drill_mode` rounds throughout
    drill_mode: str = "defense"  # 'defense' | 'shooting' | 'mixed' (drill games alternate defense, shooting)
    reward: str = "sparse"  # 'sparse' | 'shaped' | 'mix'
    eval_every: int = 50_000
    eval_rounds: int = 100  # rounds per eval opponent, rounded up to whole 4-round games
    eval_opponents: tuple[str, ...] = ("weak", "strong")
    checkpoint_every: int = 50_000
    # also keep every checkpoint as <run dir>/checkpoints/ckpt-<env steps>.pt (weights,
    # optimiser and counters, no replay; ~8 MB each for small): the candidates to screen with
    # `hockey-agent eval <run dir>/checkpoints/*.pt --opponent ... --brief` when picking a champion
    keep_checkpoints: bool = False
    log_every: int = 1_000
    seed: int = 0
    device: str = "auto"
    # the CPU: threads 0 = one per core; share_cpu = True leaves the cores to other jobs as
    # well (threads sleep while they wait) instead of keeping them busy-waiting (fastest alone)
    threads: int = 0
    share_cpu: bool = False
    cuda_graph: bool = True  # on a GPU, replay the update from a CUDA graph (same maths, far fewer launches)
    # on a CPU, torch.compile the imagination step and the actor-critic losses (their elementwise
    # work fused: the small update ~1.1-1.2x faster; compiling takes 15-30 s at the start)
    compile: bool = True
    snapshot_every: int = 100_000
    pfsp: str = "squared"  # 'squared' | 'variance'
    latest_share: float = 0.5
    scripted_share: float = 0.2
    # the scripted players that share draws from by PFSP (every scripted player stays a league
    # member, rated with the rest); a subset keeps the scripted rounds on the players named
    scripted_opponents: tuple[str, ...] = SCRIPTED_PLAYERS
    league_dir: str = ""  # self-play league; empty: <run dir>/league
    snapshot_games: int = 2  # games per pair when a new snapshot is rated
    # -- league roles (selfplay/roles.py). lineages = 1 and no exploiters: self-play trains one
    # main agent (selfplay/loop.py); otherwise the learners below take turns in one process
    lineages: int = 1  # main agents, each a lineage of its own: seed and reward differ
    lineage_rewards: tuple[str, ...] = ("sparse", "mix")  # in a league, main agent i trains on reward [i % len]
    main_exploiters: int = 0  # each plays only the latest snapshot of main agent (i % lineages)
    league_exploiters: int = 0  # each plays the whole league by PFSP, without its latest self
    main_share: float = 0.5  # shares of the league's env steps by role (renormalised over the roles present)
    main_exploiter_share: float = 0.25
    league_exploiter_share: float = 0.25
    turn_steps: int = 4_000  # env steps of one learner's turn
    exploiter_win: float = 0.7  # an exploiter is snapshotted once it wins this share of its recent rounds ...
    exploiter_games: int = 20  # ... over its last this many rounds against each opponent it must beat
    exploiter_steps: int = 100_000  # ... or after this many env steps without a snapshot (0: never)
    league_exploiter_reset: float = 0.25  # chance that a league exploiter is reset after a snapshot
    worst_min_games: int = 2  # games a pair needs to count in the worst-case win rate (fewer: left out)


@dataclass
class Config:
    """Everything that defines a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---- choices and ranges: every named choice and every allowed range, written once ----

TRAIN_MODES = ("normal", "shooting", "defense", "curriculum")
CURRICULUM = ("shooting", "defense", "normal")  # 'curriculum': these modes by thirds of train.steps
MIX = ("weak", "strong")  # opponent 'mix': one of these drawn per round
DEVICES = ("auto", "cpu", "cuda")

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("model", "compute_dtype"): ("auto", "float32", "bfloat16"),
    ("model", "init"): ("torch", "official"),
    ("optim", "name"): ("adam", "laprop"),
    ("actor", "dist"): ("bounded_normal", "tanh_normal", "discrete"),
    ("actor", "action_set"): ("bins3", "joint25"),
    ("actor", "eta_schedule"): ("constant", "linear", "exp"),
    ("train", "opponent"): (*SCRIPTED_PLAYERS, "mix"),
    ("train", "mode"): TRAIN_MODES,
    ("train", "reward"): ("sparse", "shaped", "mix"),
    ("train", "prefill_policy"): ("random", "agent"),
    ("train", "drill_mode"): ("shooting", "defense", "mixed"),
    ("train", "device"): DEVICES,
    ("train", "pfsp"): ("squared", "variance"),
}
# each eval opponent is one of these
ITEM_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("train", "eval_opponents"): SCRIPTED_PLAYERS,
    ("train", "lineage_rewards"): CHOICES["train", "reward"],
    ("train", "scripted_opponents"): SCRIPTED_PLAYERS,
}

_POS = (0.0, None, False)  # > 0
_NONNEG = (0.0, None, True)  # >= 0
_ONE_UP = (1, None, True)  # >= 1
_UNIT = (0.0, 1.0, True)  # in [0, 1]
# the longest action repeat; the torch-free runtime refuses an agent file claiming more
MAX_ACTION_REPEAT = 2**31 - 1
# (section, field) -> (low, high, low included); high is always included. Every float must
# also be finite; a field without a range here takes any finite value.
RANGES: dict[tuple[str, str], tuple[float | None, float | None, bool]] = {
    **{("model", f): _ONE_UP for f in ("deter", "hidden", "stoch", "blocks", "units", "layers")},
    ("model", "classes"): (2, None, True),
    ("model", "head_layers"): _NONNEG,
    ("model", "unimix"): (0.0, 0.5, True),
    ("model", "bins"): (2, None, True),
    **{("model", f): _NONNEG for f in ("free_nats", "dyn_scale", "rep_scale", "rec_scale", "rew_scale", "con_scale")},
    ("actor", "min_std"): _POS,
    ("actor", "max_std"): _POS,
    ("actor", "unimix"): (0.0, 0.5, False),  # > 0: the log-probabilities and the entropy stay finite
    ("actor", "eta"): _NONNEG,
    ("actor", "eta_final"): _NONNEG,
    ("actor", "eta_decay_steps"): _ONE_UP,
    ("actor", "horizon"): _ONE_UP,
    ("actor", "imag_fraction"): (0.0, 1.0, False),
    ("actor", "lam"): _UNIT,
    ("actor", "discount_horizon"): (1.0, None, True),
    ("actor", "retnorm_decay"): (0.0, 1.0, True),
    ("actor", "retnorm_limit"): _POS,
    ("actor", "retnorm_low"): (0.0, 100.0, True),
    ("actor", "retnorm_high"): (0.0, 100.0, True),
    ("actor", "pg_scale"): _NONNEG,
    ("critic", "slow_rate"): (0.0, 1.0, False),
    ("critic", "slow_reg"): _NONNEG,
    ("critic", "scale"): _NONNEG,
    **{("optim", f): _POS for f in ("wm_lr", "actor_lr", "critic_lr", "wm_eps", "ac_eps")},
    **{("optim", f): _POS for f in ("wm_clip", "actor_clip", "critic_clip", "lr", "eps", "pmin")},
    ("optim", "agc"): _NONNEG,
    ("optim", "warmup"): _NONNEG,
    ("optim", "beta1"): (0.0, 0.999999, True),
    ("optim", "beta2"): (0.0, 0.999999, True),
    ("critic", "repval_scale"): _NONNEG,
    ("explore", "scale"): _NONNEG,
    ("explore", "members"): _ONE_UP,
    ("explore", "layers"): _NONNEG,
    ("explore", "lr"): _POS,
    ("explore", "clip"): _POS,
    **{("train", f): _ONE_UP for f in ("steps", "envs", "batch_size", "seq_len", "replay_capacity", "log_every")},
    ("train", "train_ratio"): _POS,
    ("train", "action_repeat"): (1, MAX_ACTION_REPEAT, True),
    ("train", "prefill"): _NONNEG,
    ("train", "eval_every"): _NONNEG,
    ("train", "eval_rounds"): _ONE_UP,
    ("train", "checkpoint_every"): _NONNEG,
    ("train", "seed"): (0, 2**31 - 1, True),
    ("train", "threads"): _NONNEG,
    ("train", "updates"): _NONNEG,
    ("train", "snapshot_every"): _NONNEG,
    ("train", "latest_share"): _UNIT,
    ("train", "scripted_share"): _UNIT,
    ("train", "snapshot_games"): _ONE_UP,
    ("train", "lineages"): _ONE_UP,
    ("train", "main_exploiters"): _NONNEG,
    ("train", "league_exploiters"): _NONNEG,
    ("train", "main_share"): _UNIT,
    ("train", "main_exploiter_share"): _UNIT,
    ("train", "league_exploiter_share"): _UNIT,
    ("train", "turn_steps"): _ONE_UP,
    ("train", "exploiter_win"): (0.0, 1.0, False),
    ("train", "exploiter_games"): _ONE_UP,
    ("train", "exploiter_steps"): _NONNEG,
    ("train", "league_exploiter_reset"): _UNIT,
    ("train", "worst_min_games"): _ONE_UP,
}
# fields a config saved by an earlier version may hold: renamed (old -> new) or dropped
_RENAMED = {("train", "eval_games"): "eval_rounds"}
_DROPPED = {("train", "selfplay")}

# ---- presets: overrides on top of the defaults (the defaults are 'small') ------------

_TINY = {
    "model": {"deter": 64, "hidden": 32, "stoch": 8, "classes": 4, "blocks": 4, "units": 32},
    "train": {
        "batch_size": 8,
        "seq_len": 32,
        "train_ratio": 64.0,
        "prefill": 500,
        "replay_capacity": 100_000,
        "envs": 4,
        "compile": False,  # compiling would take longer than a smoke run's updates
    },
}
_PRESET_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    # CPU smoke runs: everything tiny, short sequences, a small replay.
    "tiny": _TINY,
    # ~ official size1m, the paper's preset for proprioceptive control.
    "small": {},
    # ~ official size12m.
    "medium": {
        "model": {"deter": 2048, "hidden": 256, "classes": 16, "units": 256},
    },
    # `hockey-agent train --selfplay` without --preset, the main job: the `small` model with the
    # recipe that taught models/weak-s1-145k to beat `weak` (three of eight games on the mixed
    # drills, the `mix` reward: docs/results.md), in a league: half the full-game rounds against
    # every scripted player by PFSP (from the first step; `keeper`, `shooter` and `strong`, which
    # the best agent loses to, get most), a quarter against its latest self, a quarter against
    # its frozen snapshots. It runs until stopped or 1,000,000 env steps (days on 2 CPU cores):
    # a snapshot, rated and written as agent.onnx, every 30-60 minutes there; the same command
    # continues it.
    "selfplay": {
        "train": {
            "drill_envs": 3,
            "drill_mode": "mixed",
            "reward": "mix",
            "scripted_share": 0.5,
            "latest_share": 0.25,
            "snapshot_every": 10_000,
            # 8 games per new pair (2 by default) so the worst case that picks champion.onnx is
            # read from 8 games, not 2 (8 games against one member take 1-2 s on 2 cores)
            "snapshot_games": 8,
            "eval_every": 10_000,
            "eval_rounds": 52,
            "checkpoint_every": 2_500,
            "log_every": 500,
            "turn_steps": 10_000,
            "exploiter_steps": 50_000,
        },
    },
}


def _preset(name: str) -> Config:
    cfg = Config()
    for section, values in _PRESET_OVERRIDES[name].items():
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **values))
    return cfg


PRESETS: dict[str, Config] = {name: _preset(name) for name in _PRESET_OVERRIDES}


def _sections() -> dict[str, type]:
    return {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


def _field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def _parse_value(text: str, typ: Any, where: str) -> Any:
    """Parse an override string to `typ` (bool, int, float, str or tuple[...])."""
    if typ is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{where}: expected a bool (true/false), got {text!r}")
    if typ is int:
        try:
            number = float(text.replace("_", ""))
        except ValueError:
            raise ValueError(f"{where}: expected an int, got {text!r}") from None
        if not number.is_integer():
            raise ValueError(f"{where}: expected an int, got {text!r}")
        return int(number)
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{where}: expected a float, got {text!r}") from None
    if typ is str:
        return text
    if typing.get_origin(typ) is tuple:
        (item,) = {a for a in typing.get_args(typ) if a is not Ellipsis}
        parts = [p.strip() for p in text.strip().strip("()[]").split(",") if p.strip()]
        return tuple(_parse_value(p, item, where) for p in parts)
    raise ValueError(f"{where}: unsupported field type {typ}")


def _check_value(value: Any, typ: Any, where: str) -> Any:
    """Coerce a JSON value to `typ`, rejecting values of the wrong kind."""
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ in (bool, int, str):
        ok = isinstance(value, typ) and (typ is bool or not isinstance(value, bool))
        if not ok:
            raise ValueError(f"{where}: expected {typ.__name__}, got {value!r}")
        return value
    if typing.get_origin(typ) is tuple and isinstance(value, (list, tuple)):
        (item,) = {a for a in typing.get_args(typ) if a is not Ellipsis}
        return tuple(_check_value(v, item, where) for v in value)
    raise ValueError(f"{where}: expected {typ}, got {value!r}")


def _range_text(low: float | None, high: float | None, low_in: bool) -> str:
    if high is None:
        return f"{'>=' if low_in else '>'} {low}"
    return f"in {'[' if low_in else '('}{low}, {high}]"


def validate(cfg: Config) -> Config:
    """Check every field: names against CHOICES, numbers finite and inside RANGES, and the
    rules that tie fields together. The first problem is a ValueError naming the field."""
    for section in dataclasses.fields(Config):
        values = getattr(cfg, section.name)
        for f in dataclasses.fields(values):
            key, value = (section.name, f.name), getattr(values, f.name)
            where = f"{section.name}.{f.name}"
            label = f.name.replace("_", " ")
            if key in CHOICES and value not in CHOICES[key]:
                raise ValueError(f"unknown {label} {value!r}; choices: {', '.join(CHOICES[key])} ({where})")
            if key in ITEM_CHOICES:
                for item in value:
                    if item not in ITEM_CHOICES[key]:
                        choices = ", ".join(ITEM_CHOICES[key])
                        raise ValueError(f"unknown {label.rstrip('s')} {item!r}; choices: {choices} ({where})")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{where}={value!r}: must be a finite number")
            if key in RANGES:
                low, high, low_in = RANGES[key]
                ok = (value >= low if low_in else value > low) and (high is None or value <= high)
                if not ok:
                    raise ValueError(f"{where}={value!r}: must be {_range_text(low, high, low_in)}")
    m, a, t = cfg.model, cfg.actor, cfg.train
    if not a.min_std < a.max_std:
        raise ValueError("actor.min_std and actor.max_std need 0 < min_std < max_std")
    if not a.retnorm_low < a.retnorm_high:
        raise ValueError("actor.retnorm_low must be below actor.retnorm_high")
    if m.deter % m.blocks:
        raise ValueError(f"model.deter={m.deter} is not divisible by model.blocks={m.blocks}")
    if cfg.explore.scale > 0 and cfg.explore.members < 2:
        raise ValueError("an enabled bonus (explore.scale > 0) needs explore.members >= 2")
    if a.eta_schedule == "exp" and (a.eta <= 0 or a.eta_final <= 0):
        raise ValueError("actor.eta_schedule=exp needs actor.eta > 0 and actor.eta_final > 0")
    if not 0 <= t.drill_envs < t.envs:
        raise ValueError(
            f"train.drill_envs must be in [0, envs={t.envs}), got {t.drill_envs}: "
            "at least one game plays the run's mode"
        )
    if t.replay_capacity // t.envs < t.seq_len:
        raise ValueError(
            f"train.replay_capacity={t.replay_capacity} leaves fewer than seq_len={t.seq_len} "
            f"rows per game for {t.envs} games"
        )
    if t.latest_share + t.scripted_share > 1.0:
        raise ValueError("train.latest_share + train.scripted_share must be <= 1")
    if not t.eval_opponents:
        raise ValueError("train.eval_opponents needs at least one opponent")
    if t.init_replay_file and not t.init_replay:
        raise ValueError("train.init_replay_file is read only with train.init_replay=true")
    if t.scripted_share > 0 and not t.scripted_opponents:
        raise ValueError("train.scripted_share > 0 needs at least one player in train.scripted_opponents")
    if len(set(t.scripted_opponents)) != len(t.scripted_opponents):
        raise ValueError(f"train.scripted_opponents names a player twice: {', '.join(t.scripted_opponents)}")
    if not t.lineage_rewards:
        raise ValueError("train.lineage_rewards needs at least one reward")
    for count, share in (("main_exploiters", "main_exploiter_share"), ("league_exploiters", "league_exploiter_share")):
        if getattr(t, count) > 0 and getattr(t, share) <= 0:
            raise ValueError(f"train.{count}={getattr(t, count)} needs train.{share} > 0")
    if league_roles(cfg) and t.main_share <= 0:
        raise ValueError("a league (train.lineages > 1 or exploiters) needs train.main_share > 0")
    return cfg


def league_roles(cfg: Config) -> bool:
    """Whether self-play runs a league of roles (several lineages or any exploiter), not one main agent."""
    t = cfg.train
    return t.lineages > 1 or t.main_exploiters > 0 or t.league_exploiters > 0


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """Return a copy of cfg with "section.field=value" overrides applied."""
    cfg = config_from_dict(config_to_dict(cfg))
    sections = _sections()
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"override {item!r} is not of the form section.field=value")
        if section not in sections:
            raise ValueError(f"unknown config section {section!r}; choices: {', '.join(sections)}")
        types = _field_types(sections[section])
        if name not in types:
            raise ValueError(f"unknown field {name!r} in section {section!r}; choices: {', '.join(types)}")
        setattr(getattr(cfg, section), name, _parse_value(text.strip(), types[name], key))
    return validate(cfg)


def make_config(preset: str, overrides: Sequence[str] = ()) -> Config:
    """Build a run's config from a named preset and "section.field=value" overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choices: {', '.join(PRESETS)}")
    return apply_overrides(PRESETS[preset], overrides)


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict (tuples become lists), ready for JSON."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(data: dict[str, Any]) -> Config:
    """Strict inverse of `config_to_dict`: unknown sections or fields raise ValueError.

    Missing fields take their defaults, so configs saved before a field existed load.
    """
    sections = _sections()
    unknown = set(data) - set(sections)
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)}; choices: {', '.join(sections)}")
    built = {}
    for section, cls in sections.items():
        values = data.get(section, {})
        if not isinstance(values, dict):
            raise ValueError(f"config section {section!r} is a {type(values).__name__}, not a mapping of fields")
        values = dict(values)
        for (sec, old), new in _RENAMED.items():
            if sec == section and old in values and new not in values:
                values[new] = values.pop(old)
        for sec, old in _DROPPED:
            if sec == section:
                values.pop(old, None)
        types = _field_types(cls)
        bad = set(values) - set(types)
        if bad:
            raise ValueError(f"unknown fields {sorted(bad)} in section {section!r}; choices: {', '.join(types)}")
        built[section] = cls(**{k: _check_value(v, types[k], f"{section}.{k}") for k, v in values.items()})
    return validate(Config(**built))


def save_config(cfg: Config, path: str | Path) -> None:
    """Write `cfg` as JSON atomically (tmp file, fsync, os.replace): a kill never leaves half a file."""
    with atomic_write(path) as f:
        f.write(json.dumps(config_to_dict(cfg), indent=2) + "\n")


def load_config(path: str | Path) -> Config:
    """Read a config.json; an unreadable or invalid file is a ValueError naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except ValueError as exc:  # not UTF-8 or not JSON (e.g. cut short)
        raise ValueError(f"{path} is not a readable config file: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a config file: it holds no JSON object of sections")
    try:
        return config_from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
