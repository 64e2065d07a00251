"""`hockey-agent play A B`: tournament games between two players, tabulated from A's side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from agent.game import GAMES
from agent.game.rules import MODE_NAMES

RENDER_SUFFIXES = (".gif", ".mp4")


class _FrameWriter:
    """Streams every `stride`-th frame to a GIF or MP4, so a game never sits in memory."""

    def __init__(self, path: Path, stride: int) -> None:
        import imageio.v2 as imageio

        self.stride = stride
        self.count = 0
        fps = 50 / stride
        try:
            if path.suffix.lower() == ".gif":
                self._writer = imageio.get_writer(path, mode="I", duration=1000 / fps, loop=0)
            else:
                self._writer = imageio.get_writer(path, fps=fps, macro_block_size=8)  # 600 x 480 as is
        except OSError as exc:
            raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
        except (ImportError, ValueError, RuntimeError) as exc:
            raise click.ClickException(
                f"cannot write {path}: {exc}. MP4 needs an ffmpeg backend: pip install imageio-ffmpeg"
            ) from exc

    def append(self, frame: Any) -> None:
        if self.count % self.stride == 0:
            self._writer.append_data(frame)
        self.count += 1

    def close(self) -> None:
        self._writer.close()


def _load(spec: str, param: str, seed: int | None) -> Any:
    from league.members import load_player

    try:
        return load_player(spec, seed=seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from exc


def _check_render(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if path.suffix.lower() not in RENDER_SUFFIXES:
        raise click.BadParameter(f"{value!r} must end in one of: {', '.join(RENDER_SUFFIXES)}")
    # asked before any game is played; the writer does not make missing folders
    directory = path.absolute().parent
    if not directory.is_dir():
        raise click.BadParameter(f"cannot write {path}: no directory {directory}")
    if not os.access(directory, os.W_OK):
        raise click.BadParameter(f"cannot write {path}: the directory {directory} is read-only")
    return path


@click.command()
@click.argument("player_a", metavar="A")
@click.argument("player_b", metavar="B")
@click.option("--games", "-n", default=10, show_default=True, type=click.IntRange(min=1), help="Games to play.")
@click.option("--mode", type=click.Choice(MODE_NAMES), default="normal", show_default=True, help="Game mode.")
@click.option("--seed", type=int, default=None, help="Seed for the games and the scripted players.")
@click.option("--swap-sides", is_flag=True, help="Alternate sides: A is player 2 in every second game.")
@click.option(
    "--render", type=str, default=None, callback=_check_render, help="Write the first game to out.gif or out.mp4."
)
@click.option(
    "--render-stride", default=2, show_default=True, type=click.IntRange(min=1), help="Keep every k-th frame."
)
@click.option("--game", type=click.Choice(GAMES), default="bundled", show_default=True, help="Game implementation.")
def play(
    player_a: str,
    player_b: str,
    games: int,
    mode: str,
    seed: int | None,
    swap_sides: bool,
    render: Path | None,
    render_stride: int,
    game: str,
) -> None:
    """Play GAMES tournament games (4 rounds each) between A and B; A is player 1
    (player 2 in every second game with --swap-sides).

    A and B are scripted names (still, random, weak, strong, shooter, keeper), an
    exported .onnx file, or a run directory / checkpoint.
    """
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from agent.game import load_game
    from agent.players.match import Tally, play_games
    from agent.players.policy import per_game

    try:
        load_game(game)
    except ImportError as exc:
        raise click.BadParameter(str(exc), param_hint="--game") from exc
    a = _load(player_a, "A", seed)
    b = _load(player_b, "B", None if seed is None else seed + 1)
    console = Console()
    tally = Tally(())
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{player_a} vs {player_b}", total=games)
        for index in range(games):
            # one game at a time: A and B are single players whose state runs on from game to game
            writer = _FrameWriter(render, render_stride) if render is not None and index == 0 else None
            try:
                tally += play_games(
                    per_game([a]),
                    per_game([b]),
                    1,
                    a_side="p2" if swap_sides and index % 2 == 1 else "p1",
                    seed=None if seed is None else seed + index,
                    mode=mode,
                    game=game,
                    frames=writer,
                )
            finally:
                if writer is not None:
                    writer.close()
            progress.advance(task)
    wins, draws, losses = Tally.counts(tally.game_outcomes())
    rounds_a, rounds_b = tally.score()
    table = Table(title=f"{player_a} (A) vs {player_b} (B), mode {mode}, game {game}")
    for column in ("games", "A wins", "draws", "A losses", "rounds A:B", "mean score A:B", "steps"):
        table.add_column(column, justify="right")
    table.add_row(
        str(games),
        str(wins),
        str(draws),
        str(losses),
        f"{rounds_a}:{rounds_b}",
        f"{rounds_a / games:.2f}:{rounds_b / games:.2f}",
        str(tally.steps),
    )
    console.print(table)
    if render is not None:
        console.print(f"first game written to {render}")
