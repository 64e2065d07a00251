"""One typed configuration per run: nested dataclasses, named presets, overrides, JSON.

A run is fully described by a `Config`; `make_config("small", ["actor.eta=1e-3"])`
builds one from a preset plus "section.field=value" overrides, each value parsed to
the field's declared type so a typo fails loudly instead of training the wrong thing.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    # matmul precision of imagination and the actor-critic passes: 'float32', or
    # 'bfloat16' autocast (the official code computes in bfloat16; here parameters, the
    # GRU state and every distribution stay float32). The world model's sequential
    # pass over 16 rows gains nothing from it on CPU and stays float32; so does acting.
    compute_dtype: str = "float32"


@dataclass
class ActorConfig:
    """Policy distribution, entropy bonus and the imagination that trains the actor."""

    dist: str = "bounded_normal"  # 'bounded_normal' | 'tanh_normal'
    min_std: float = 0.1
    max_std: float = 1.0
    eta: float = 3e-4  # entropy scale (at update 0 when a schedule is used)
    eta_schedule: str = "constant"  # 'constant' | 'linear' | 'exp'
    eta_final: float = 3e-5  # eta reached after eta_decay_steps updates (linear / exp)
    eta_decay_steps: int = 100_000  # in updates
    horizon: int = 15  # imagined steps
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


@dataclass
class OptimConfig:
    """Adam as in the 2023 paper (learning rates, eps and global-norm clipping)."""

    wm_lr: float = 1e-4
    actor_lr: float = 3e-5
    critic_lr: float = 3e-5
    wm_eps: float = 1e-8
    ac_eps: float = 1e-5
    wm_clip: float = 1000.0
    actor_clip: float = 100.0
    critic_clip: float = 100.0


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

    steps: int = 1_000_000  # env steps of the learner
    envs: int = 8  # games stepped in a batch
    train_ratio: float = 512.0  # replayed steps per env step
    batch_size: int = 16
    seq_len: int = 64
    replay_capacity: int = 1_000_000
    prefill: int = 5_000  # env steps collected before the first update
    opponent: str = "weak"
    mode: str = "normal"
    drill_envs: int = 0  # of the `envs` games, how many play `drill_mode` rounds throughout
    drill_mode: str = "defense"  # 'defense' | 'shooting' | 'mixed' (drill games alternate defense, shooting)
    reward: str = "sparse"  # 'sparse' | 'shaped' | 'mix'
    eval_every: int = 50_000
    eval_games: int = 100
    eval_opponents: tuple[str, ...] = ("weak", "strong")
    checkpoint_every: int = 50_000
    log_every: int = 1_000
    seed: int = 0
    device: str = "auto"
    selfplay: bool = False
    snapshot_every: int = 100_000
    pfsp: str = "squared"  # 'squared' | 'variance'
    latest_share: float = 0.5
    scripted_share: float = 0.2
    league_dir: str = ""  # self-play league; empty: <run dir>/league
    snapshot_games: int = 2  # games per pair when a new snapshot is rated


@dataclass
class Config:
    """Everything that defines a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("model", "compute_dtype"): ("float32", "bfloat16"),
    ("actor", "dist"): ("bounded_normal", "tanh_normal"),
    ("actor", "eta_schedule"): ("constant", "linear", "exp"),
    ("train", "reward"): ("sparse", "shaped", "mix"),
    ("train", "drill_mode"): ("shooting", "defense", "mixed"),
    ("train", "pfsp"): ("squared", "variance"),
}

# Preset -> overrides applied on top of the defaults (the defaults are 'small').
_PRESET_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    # CPU smoke runs: everything tiny, short sequences, a small replay.
    "tiny": {
        "model": {"deter": 64, "hidden": 32, "stoch": 8, "classes": 4, "blocks": 4, "units": 32},
        "train": {
            "batch_size": 8,
            "seq_len": 32,
            "train_ratio": 64.0,
            "prefill": 500,
            "replay_capacity": 100_000,
            "envs": 4,
        },
    },
    # ~ official size1m, the paper's preset for proprioceptive control.
    "small": {},
    # ~ official size12m.
    "medium": {
        "model": {"deter": 2048, "hidden": 256, "classes": 16, "units": 256},
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


def validate(cfg: Config) -> Config:
    """Check the fields that take one of a few names and a few ranges; return cfg."""
    for (section, name), choices in CHOICES.items():
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise ValueError(f"{section}.{name}={value!r} is not one of {', '.join(choices)}")
    if not 0 < cfg.actor.min_std < cfg.actor.max_std:
        raise ValueError("actor.min_std and actor.max_std need 0 < min_std < max_std")
    if cfg.model.deter % cfg.model.blocks:
        raise ValueError(f"model.deter={cfg.model.deter} is not divisible by model.blocks={cfg.model.blocks}")
    if cfg.explore.scale < 0 or (cfg.explore.scale > 0 and cfg.explore.members < 2):
        raise ValueError("explore.scale must be >= 0, and an enabled bonus needs explore.members >= 2")
    if cfg.actor.eta_schedule == "exp" and (cfg.actor.eta <= 0 or cfg.actor.eta_final <= 0):
        raise ValueError("actor.eta_schedule=exp needs actor.eta > 0 and actor.eta_final > 0")
    return cfg


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
        types = _field_types(cls)
        bad = set(values) - set(types)
        if bad:
            raise ValueError(f"unknown fields {sorted(bad)} in section {section!r}; choices: {', '.join(types)}")
        built[section] = cls(**{k: _check_value(v, types[k], f"{section}.{k}") for k, v in values.items()})
    return validate(Config(**built))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")


def load_config(path: str | Path) -> Config:
    return config_from_dict(json.loads(Path(path).read_text()))
