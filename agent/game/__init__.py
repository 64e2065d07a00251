"""The hockey game: `HockeyEnv`, `BasicOpponent`, `Mode` (see GAME.md for the facts).

`load_game('reference')` gives the same three names from the reference package
`hockey` when it is installed, so a check can run against both implementations.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

from agent.game.hockey import HockeyEnv, Mode, parse_mode
from agent.game.opponent import BasicOpponent, scripted_action

__all__ = ["HockeyEnv", "BasicOpponent", "Mode", "load_game", "parse_mode", "scripted_action", "GAMES"]

GAMES = ("bundled", "reference")


def load_game(name: str = "bundled") -> SimpleNamespace:
    """The game implementation `name` as a namespace with HockeyEnv, BasicOpponent and Mode."""
    if name == "bundled":
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
