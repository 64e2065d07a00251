"""`hockey-agent league`: add members, evaluate them against each other, show ratings.

Only click and the league's light modules load here; the game, torch and matplotlib
are imported when a command needs them.
"""

from __future__ import annotations

import sys

import click

from agent.config import TrainConfig
from league.db import DEFAULT_LEAGUE
from league.members import KINDS, LeagueError
from league.schedule import SCHEDULES

MIN_GAMES = TrainConfig.worst_min_games  # games a pair needs to count in a worst case

LEAGUE_OPTION = click.option(
    "--league",
    "league_dir",
    default=DEFAULT_LEAGUE,
    show_default=True,
    type=click.Path(file_okay=False),
    help="League directory (holds league.db).",
)


@click.group()
def league() -> None:
    """Manage the league: add members, evaluate them, show ratings.

    A league is a directory holding league.db (default ./runs/league). A new league
    starts with every scripted player as a member.
    """


@league.command()
@click.argument("name")
@click.argument("path", type=click.Path(exists=True))
@LEAGUE_OPTION
@click.option(
    "--kind",
    type=click.Choice(KINDS[1:]),
    default="external",
    show_default=True,
    help="'snapshot' for a frozen copy of our learner, 'external' for anyone else's agent.",
)
@click.option("--parent-run", default=None, help="Training run the member comes from.")
@click.option("--step", type=int, default=None, help="Training step of the snapshot.")
def add(name: str, path: str, league_dir: str, kind: str, parent_run: str | None, step: int | None) -> None:
    """Add NAME, the agent at PATH (.onnx file, run directory or checkpoint).

    The file must load and act, and NAME must be new; otherwise nothing is written.
    """
    from league.db import LeagueDB, check_writable
    from league.members import file_member, scripted_members

    try:
        check_writable(league_dir)  # before loading the member, which may take a while
        member = file_member(name, path, kind=kind, parent_run=parent_run, step=step)
        with LeagueDB(league_dir, create=True) as db:
            db.start_with(scripted_members())
            db.add_members([member])
    except LeagueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"added {kind} member {name!r} ({member.path}) to {league_dir}")


@league.command(name="eval")
@LEAGUE_OPTION
@click.option(
    "--games-per-pair",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Round robin: games every pair should have; uncertain: games added per chosen pair.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Worker processes (default: one per CPU; 0 plays in this process). "
    "With --ray auto and no running cluster: the CPUs of the local Ray instance.",
)
@click.option(
    "--ray",
    "ray_address",
    default=None,
    metavar="ADDRESS",
    help="Play on Ray: 'auto' (a running cluster, else a local one) or a cluster address.",
)
@click.option(
    "--schedule",
    type=click.Choice(SCHEDULES),
    default="round-robin",
    show_default=True,
    help="round-robin: every pair up to --games-per-pair; uncertain: the quarter of pairs "
    "with the widest Bradley-Terry intervals.",
)
@click.option(
    "--members",
    "only",
    default=None,
    metavar="NAME,NAME,...",
    help="Only schedule matches among these members (default: everyone).",
)
def eval_cmd(
    league_dir: str, games_per_pair: int, workers: int | None, ray_address: str | None, schedule: str, only: str | None
) -> None:
    """Play the scheduled matches and record them; a new league gets every scripted player.

    Matches are written as they finish, so an interrupted run keeps what it played and
    the next run completes the schedule. Several runs on one league at once split the
    work without playing any match twice.
    """
    from league.runner import evaluate

    try:
        names = None if only is None else [n.strip() for n in only.split(",") if n.strip()]
        summary = evaluate(league_dir, games_per_pair, workers, ray_address, schedule, names)
    except LeagueError as exc:
        raise click.ClickException(str(exc)) from exc
    rate = summary.played / summary.wall_seconds if summary.wall_seconds > 0 else 0.0
    click.echo(
        f"played {summary.played} matches in {summary.wall_seconds:.1f} s ({rate:.2f} games/s)"
        + (f"; {summary.skipped} held by another run" if summary.skipped else "")
    )
    if summary.played or not summary.skipped:
        print_leaderboard(league_dir)


def print_leaderboard(league_dir: str, elo_k: float = 16.0, min_games: int = MIN_GAMES) -> None:
    """The leaderboard as a rich table (also printed at the end of self-play), then one line
    per main agent (its latest snapshot's worst-case win rate) and the champion candidate.

    A member's role is scripted, external, or the role of the learner a snapshot froze
    (main, main-exploiter, league-exploiter); its worst case is its lowest score rate
    against a member it played at least `min_games` games against (league/report.py).
    """
    from rich.console import Console
    from rich.table import Table

    from league.report import choose_champion, leaderboard

    rows = leaderboard(league_dir, elo_k=elo_k, min_games=min_games)
    table = Table(title=f"league {league_dir}")
    headers = (
        "#",
        "member",
        "role",
        "Bradley-Terry [95%]",
        "Elo",
        "OpenSkill mu-3s",
        "games",
        "W/D/L",
        "worst (games) vs",
    )
    for header in headers:
        table.add_column(header, justify="left" if header in ("member", "role", "worst (games) vs") else "right")
    for rank, row in enumerate(rows, start=1):
        if row.games:
            ratings = (f"{row.bt:.0f} [{row.bt_low:.0f}, {row.bt_high:.0f}]", f"{row.elo:.0f}", f"{row.openskill:.2f}")
        else:
            ratings = ("-", "-", "-")  # only the prior speaks for a member without games
        worst = row.worst
        worst_text = (
            "-" if worst is None or worst.opponent is None else f"{worst.win:.2f} ({worst.games}) vs {worst.opponent}"
        )
        table.add_row(
            str(rank), row.name, row.role, *ratings, str(row.games), f"{row.wins}/{row.draws}/{row.losses}", worst_text
        )
    # piped output gets a fixed width so the table is not squeezed into 80 columns
    console = Console(width=None if sys.stdout.isatty() else 180)
    console.print(table)
    latest = {}  # each main agent (its parent run) -> its latest snapshot's row
    for row in sorted((r for r in rows if r.kind == "snapshot" and r.role == "main"), key=lambda r: r.step or 0):
        latest[row.parent_run or row.name] = row
    for lineage, row in sorted(latest.items()):
        console.print(f"main agent {lineage}: latest snapshot {row.name}, worst case {row.worst.describe()}")
    champion = choose_champion(rows)
    if champion is not None:
        console.print(f"champion candidate: {champion.name} ({champion.role}), worst case {champion.worst.describe()}")


@league.command()
@LEAGUE_OPTION
@click.option(
    "--plot",
    "plot_prefix",
    default=None,
    metavar="PREFIX",
    help="Also write the league card: PREFIX_ratings.png (Bradley-Terry now and over time, by role) and "
    "PREFIX_h2h.png (win rates, roles marked, the champion candidate boxed).",
)
@click.option(
    "--elo-k",
    type=click.FloatRange(min=0.0, min_open=True),
    default=16.0,
    show_default=True,
    help="K factor of the online Elo column.",
)
@click.option(
    "--min-games",
    type=click.IntRange(min=1),
    default=MIN_GAMES,
    show_default=True,
    help="Games a pair needs to count in a worst case (train.worst_min_games); fewer are left out and counted.",
)
def show(league_dir: str, plot_prefix: str | None, elo_k: float, min_games: int) -> None:
    """Print the leaderboard: role, Bradley-Terry with 95% interval, Elo, OpenSkill, games,
    W/D/L and the worst case; then each main agent's worst case and the champion candidate.

    Bradley-Terry and Elo are on the Elo scale with the scripted `weak` at 1000;
    OpenSkill is the comprl server's Plackett-Luce rating as mu - 3 sigma. A worst case is
    a member's lowest score rate (draws half) against any member it played --min-games
    games against; the champion candidate is the main agents' snapshot whose worst case is
    highest. --plot writes the league card: ratings with intervals by role, and the
    head-to-head matrix with every role marked and the champion's row boxed.
    """
    try:
        if plot_prefix:  # refuse an unwritable PREFIX before printing anything
            from league.report import plot_paths

            plot_paths(plot_prefix)
        print_leaderboard(league_dir, elo_k, min_games)
        if plot_prefix:
            from league.report import plot

            for path in plot(league_dir, plot_prefix, min_games):
                click.echo(f"wrote {path}")
    except LeagueError as exc:
        raise click.ClickException(str(exc)) from exc
