"""The hockey game: `HockeyEnv`, `BasicOpponent`, `Mode` (docs/game.md has the facts).

`agent.game.rules` holds the game's public facts (sizes, modes, mirror, the action
rule, who starts and who wins) and needs numpy alone; the game itself needs Box2D and
is imported on first use of one of its names, so the torch-free client can read the
rules without it. `load_game('reference')` gives the same three names from the
reference package `hockey` when it is installed, so a check can run against both.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

from agent.game.rules import Mode, parse_mode

__all__ = ["HockeyEnv", "BasicOpponent", "Mode", "load_game", "parse_mode", "scripted_action", "GAMES"]

GAMES = ("bundled", "reference")
_LAZY = {
    "HockeyEnv": "agent.game.hockey",
    "BasicOpponent": "agent.game.opponent",
    "scripted_action": "agent.game.opponent",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent.game' has no attribute {name!r}")


def load_game(name: str = "bundled") -> SimpleNamespace:
    """The game implementation `name` as a namespace with HockeyEnv, BasicOpponent and Mode."""
    if name == "bundled":
        from agent.game.hockey import HockeyEnv
        from agent.game.opponent import BasicOpponent

        return SimpleNamespace(HockeyEnv=HockeyEnv, BasicOpponent=BasicOpponent, Mode=Mode)
    if name == "reference":
        try:
            module = importlib.import_module("hockey.hockey_env")
        except ModuleNotFoundError as exc:
            raise ImportError(
                "the reference hockey package is not installed (module 'hockey.hockey_env' not found); "
                "install it or use the bundled game: load_game('bundled')"
            ) from exc
        return SimpleNamespace(HockeyEnv=module.HockeyEnv, BasicOpponent=module.BasicOpponent, Mode=module.Mode)
    raise ValueError(f"unknown game {name!r}; choices: {', '.join(repr(g) for g in GAMES)}")
