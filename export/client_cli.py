"""`hockey-agent client` and `hockey-agent serve`.

The client command must run on the base install (no torch, no game): it imports only
numpy, onnxruntime, twisted, click and rich, and those lazily so `--help` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

# Scripted players the client may use for testing.
# 'weak' and 'strong' wrap agent.game.BasicOpponent, which needs the game (Box2D, the
# train extra); the client extra alone plays the others.
_NEEDS_GAME = ("weak", "strong")


def _has_game() -> bool:
    import importlib.util

    return importlib.util.find_spec("Box2D") is not None


def _client_scripted_names() -> list[str]:
    from agent.players.scripted import SCRIPTED

    return [name for name in SCRIPTED if name not in _NEEDS_GAME or _has_game()]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("agent_file", metavar="AGENT.onnx", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--server-url", envvar="COMPRL_SERVER_URL", show_envvar=True, help="Server host name or address.")
@click.option(
    "--server-port",
    envvar="COMPRL_SERVER_PORT",
    show_envvar=True,
    default=65335,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Server TCP port.",
)
@click.option(
    "--token",
    envvar="COMPRL_ACCESS_TOKEN",
    show_envvar=True,
    help="Your access token (never printed or logged).",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append events and game results to this JSON-lines file.",
)
@click.option(
    "--max-retries",
    default=8,
    show_default=True,
    type=click.IntRange(0),
    help="Consecutive failed connections before giving up.",
)
@click.option(
    "--retry-delay",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.01),
    help="First backoff delay in seconds (doubles per retry, at most 30 s).",
)
@click.option(
    "--games",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Stop after this many games (0: play until stopped).",
)
@click.option(
    "--scripted",
    metavar="NAME",
    help="Play a scripted player instead of an agent file (for testing); weak and strong need the game "
    "(the train extra).",
)
def client(
    agent_file: Path | None,
    server_url: str | None,
    server_port: int,
    token: str | None,
    log_path: Path | None,
    max_retries: int,
    retry_delay: float,
    games: int,
    scripted: str | None,
) -> None:
    """Play on a comprl tournament server with an exported ONNX agent.

    The agent file is checked before connecting. Exit codes: 0 after --games games or
    Ctrl-C, 1 when the server stays unreachable or the agent file is unusable,
    2 for bad options, 3 when the server refuses the token.
    """
    from rich.console import Console
    from rich.logging import RichHandler

    console = Console()
    logging.basicConfig(
        level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)]
    )
    if (agent_file is None) == (scripted is None):
        raise click.UsageError("give exactly one of AGENT.onnx or --scripted NAME")
    if not server_url:
        raise click.BadParameter(
            "no server given: pass --server-url or set COMPRL_SERVER_URL", param_hint="--server-url"
        )
    if "://" in server_url or "/" in server_url:
        raise click.BadParameter(
            f"{server_url!r} is not a host name (give e.g. comprl.example.org, no scheme or path)",
            param_hint="--server-url",
        )
    if not token:
        raise click.BadParameter("no access token: pass --token or set COMPRL_ACCESS_TOKEN", param_hint="--token")

    if scripted is not None:
        names = _client_scripted_names()
        if scripted not in names:
            why = (
                f"{scripted!r} needs the game (Box2D), which the client install lacks: pip install '.[train]'; "
                "choices here"
                if scripted in _NEEDS_GAME
                else f"unknown scripted player {scripted!r}; choices"
            )
            raise click.BadParameter(f"{why}: {', '.join(names)}", param_hint="--scripted")
        from agent.players.scripted import make_scripted

        policy = make_scripted(scripted)
        label = f"scripted player '{scripted}'"
        console.print(f"playing {label}")
    else:
        from export.runtime import AgentFileError, OnnxAgent, describe

        try:
            policy = OnnxAgent(agent_file)
        except (AgentFileError, FileNotFoundError) as exc:
            raise click.ClickException(f"cannot use agent file: {exc}") from None
        label = f"agent {describe(policy)}"
        try:
            console.print(label, markup=False)
        except (OSError, SystemExit):  # stdout already gone (rich exits on a broken pipe): play on
            pass

    from export.client import TournamentClient

    try:
        runner = TournamentClient(
            policy,
            token,
            server_url,
            server_port,
            max_retries=max_retries,
            retry_delay=retry_delay,
            games=games,
            log_path=log_path,
            console=console,
        )
    except OSError as exc:
        raise click.BadParameter(f"cannot open the log file: {exc}", param_hint="--log") from None
    runner.log.write("started", player=label, host=server_url, port=server_port)
    raise SystemExit(runner.run())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=65335,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free port, printed).",
)
@click.option(
    "--games",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Stop after this many games (0: run until Ctrl-C).",
)
@click.option(
    "--tokens",
    "tokens_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File of accepted tokens: 'NAME TOKEN' or 'TOKEN' per line.",
)
@click.option(
    "--token",
    "token_list",
    multiple=True,
    help="An accepted token (repeatable). Without any token every client is accepted.",
)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.01),
    help="Seconds each call to a client may take.",
)
@click.option("--seed", type=int, help="Seed the rounds (round r of game g uses seed + 4 g + r).")
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append events and game results to this JSON-lines file.",
)
def serve(
    host: str,
    port: int,
    games: int,
    tokens_file: Path | None,
    token_list: tuple[str, ...],
    timeout: float,
    seed: int | None,
    log_path: Path | None,
) -> None:
    """Run a small local tournament server speaking the comprl protocol."""
    from rich.console import Console
    from rich.table import Table

    from export.server import read_tokens, summary
    from export.server import serve as run_server

    tokens: dict[str, str] | None = None
    if tokens_file is not None:
        try:
            tokens = read_tokens(tokens_file)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--tokens") from None
    if token_list:
        tokens = dict(tokens or {})
        for token in token_list:
            tokens.setdefault(token, f"user{len(tokens) + 1}")
    try:
        from agent.game import HockeyEnv  # noqa: F401  (fail now, not at the first game)
    except ImportError as exc:
        raise click.ClickException(f"serve needs the game ({exc}): pip install 'hockey-agent[train]'") from None

    from twisted.internet.error import CannotListenError

    console = Console()
    try:
        reports = run_server(
            host, port, tokens=tokens, games=games, timeout=timeout, seed=seed, log_path=log_path, console=console
        )
    except CannotListenError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.socketError}") from None
    except OSError as exc:
        raise click.BadParameter(f"cannot open the log file: {exc}", param_hint="--log") from None
    if reports:
        table = Table(title=f"{len(reports)} games")
        for column in ("player", "games", "wins", "draws", "losses", "rounds"):
            table.add_column(column, justify="right")
        for name, row in sorted(summary(reports).items()):
            table.add_row(
                name,
                str(row["games"]),
                str(row["wins"]),
                str(row["draws"]),
                str(row["losses"]),
                f"{row['rounds_won']}:{row['rounds_lost']}",
            )
        console.print(table)
