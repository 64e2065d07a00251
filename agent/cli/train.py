"""`hockey-agent train`: train a DreamerV3 agent against scripted players (or a league)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

SELFPLAY_RUN_DIR = Path("runs") / "selfplay"  # where `hockey-agent train --selfplay` trains by default


def build_config(
    preset: str | None,
    options: dict[str, Any],
    overrides: tuple[str, ...],
    resume_dir: Path | None,
) -> Any:
    """The run's Config: the preset (or the config in the resumed run's checkpoint), then
    the options and --set, each overriding the ones before.

    A resumed run reads its config from checkpoint.pt, not config.json: the checkpoint
    is written atomically with the state it describes, and the trainer rewrites
    config.json from it."""
    from agent.config import PRESETS, apply_overrides, config_from_dict, make_config
    from agent.training import checkpoint as ckpt

    items = [*(f"train.{k}={v}" for k, v in options.items() if v is not None), *overrides]
    try:
        if resume_dir is not None:
            try:
                data = _saved_league(resume_dir) or ckpt.load(resume_dir)
            except FileNotFoundError:
                raise click.BadParameter(
                    f"{resume_dir} has no checkpoint to resume from", param_hint="--run-dir"
                ) from None
            try:
                saved = config_from_dict(data["config"])
            except (ValueError, TypeError) as exc:
                raise ValueError(f"the config in {ckpt.resolve(resume_dir)}: {exc}") from exc
            cfg = apply_overrides(saved, items)
        else:
            name = preset or "small"
            if name not in PRESETS:
                raise click.BadParameter(
                    f"unknown preset {name!r}; choices: {', '.join(PRESETS)}", param_hint="--preset"
                )
            cfg = make_config(name, items)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return cfg


def _saved_league(run_dir: Path) -> dict[str, Any] | None:
    """A self-play league's saved state (its config under "config"), or None when `run_dir` holds none.

    A league of roles keeps its config in <run dir>/league.json, its learners' checkpoints
    in subdirectories (selfplay/league_loop.py)."""
    from selfplay.roles import read_state

    return read_state(run_dir) if _holds_league(run_dir) else None


@click.command()
@click.option(
    "--opponent",
    default=None,
    help="weak | strong | mix (weak or strong per round) | any scripted player (still, random, "
    "shooter, keeper). Default: the preset's (weak).",
)
@click.option(
    "--mode",
    default=None,
    help="normal | shooting | defense | curriculum (shooting, defense, normal by thirds of --steps). Default: normal.",
)
@click.option(
    "--drills",
    type=int,
    default=None,
    help="How many of the train.envs games play defense drills throughout, beside the mode's "
    "rounds (train.drill_envs; --set train.drill_mode=shooting|mixed for shooting drills or "
    "defense and shooting in turn). Default 0.",
)
@click.option("--preset", default=None, help="Model and loop sizes: tiny | small | medium | selfplay (default small).")
@click.option("--steps", type=int, default=None, help="Env steps (game frames) of the learner (default: the preset's).")
@click.option(
    "--action-repeat",
    type=int,
    default=None,
    help="Game frames each learner action is held for (train.action_repeat; default 1, every frame; 2 acts "
    "every second frame). Evaluation, the exported agent and the league play it the same way.",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where config, checkpoint, replay and metrics go (default runs/<preset>-<opponent>-<mode>-...).",
)
@click.option("--device", default=None, help="auto | cpu | cuda (default auto).")
@click.option("--seed", type=int, default=None, help="Seed of every generator of the run.")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its checkpoint.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.FIELD=VALUE",
    help="Override any config field, e.g. --set actor.eta=1e-3 (repeatable).",
)
@click.option(
    "--selfplay",
    is_flag=True,
    help="Train against a league of frozen snapshots and the scripted players (PFSP), snapshot "
    "every train.snapshot_every env steps, rate them and write each as <run dir>/agent.onnx. Without "
    "--preset: the selfplay preset, the main job (the small model, mixed drills, the mix reward, half "
    "the rounds against the scripted players; a snapshot every 10,000 env steps, 30-60 minutes on 2 cores; "
    "it runs until Ctrl-C, and the same command continues it in runs/selfplay). "
    "With --set train.lineages=N, train.main_exploiters=N or train.league_exploiters=N: a league of "
    "main agents and exploiters taking turns in one process (selfplay/roles.py), champion.onnx the "
    "main agents' snapshot with the best worst-case win rate.",
)
@click.option(
    "--share-cpu",
    is_flag=True,
    default=None,
    help="Share the CPU with other jobs: OpenMP threads sleep while they wait (train.share_cpu). Without it a "
    "training job takes the machine to itself, one thread per core, threads spinning while they wait: about "
    "twice as fast alone, several times slower when two such jobs share the cores.",
)
@click.option("--threads", type=int, default=None, help="CPU threads (train.threads; default 0: one per core).")
@click.option(
    "--init",
    "init",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Start a new run from the weights of another run directory or checkpoint of the same model "
    "size (the shipped models/champion among them); the replay starts empty unless --set "
    "train.init_replay=true takes the source's replay (or --set train.init_replay_file=FILE.npz one kept "
    "apart), and the optimisers start fresh unless --set train.init_optimizer=true takes the source's moments.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def train(
    opponent: str | None,
    mode: str | None,
    drills: int | None,
    preset: str | None,
    steps: int | None,
    action_repeat: int | None,
    run_dir: Path | None,
    device: str | None,
    seed: int | None,
    resume: bool,
    overrides: tuple[str, ...],
    selfplay: bool,
    share_cpu: bool | None,
    threads: int | None,
    init: Path | None,
    no_progress: bool,
) -> None:
    """Train a DreamerV3 agent; Ctrl-C saves a checkpoint, and the same command (or --resume)
    continues it: a run directory that holds a checkpoint is continued, never overwritten."""
    if selfplay and run_dir is None:
        run_dir = SELFPLAY_RUN_DIR  # one place, so that running the main job again continues it
    holds_league = selfplay and run_dir is not None and _holds_league(run_dir)
    if not resume and run_dir is not None and ((run_dir / "checkpoint.pt").is_file() or holds_league):
        if init is not None:
            raise click.BadParameter(f"{run_dir} already holds a run; --init starts a new one", param_hint="--init")
        click.echo(f"{run_dir} holds a run: continuing it")
        resume, preset = True, None
    if resume:
        if run_dir is None:
            raise click.BadParameter("--resume needs the --run-dir of the run to continue", param_hint="--resume")
        if preset is not None:
            raise click.BadParameter("a resumed run keeps the preset of its checkpoint", param_hint="--preset")
    options = {
        "opponent": opponent, "mode": mode, "drill_envs": drills, "steps": steps, "action_repeat": action_repeat,
        "device": device, "seed": seed, "share_cpu": share_cpu, "threads": threads,
    }  # fmt: skip
    if selfplay and preset is None and not resume:
        preset = "selfplay"
    cfg = build_config(preset, options, overrides, run_dir if resume else None)
    from agent.training import cpu

    cpu_line = cpu.configure(cfg.train.share_cpu, cfg.train.threads)  # before torch loads
    name = preset or "small"
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kind = "selfplay" if selfplay else f"{cfg.train.opponent}-{cfg.train.mode}"
        label = name if name == kind else f"{name}-{kind}"
        run_dir = Path("runs") / f"{label}-s{cfg.train.seed}-{stamp}"

    from agent.training.trainer import check_run_dir, resolve_device

    try:
        resolve_device(cfg.train.device)  # a device the machine lacks: refused before the run directory exists
        check_run_dir(run_dir)  # before anything is written, self-play's league included
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc

    if selfplay:
        _selfplay(cfg, run_dir, resume, "" if resume else name, not no_progress, init)
        return

    from rich.console import Console

    from agent.training.trainer import Trainer, TrainingError

    console = Console()
    try:
        trainer = Trainer(
            cfg, run_dir, resume=resume, preset="" if resume else name, progress=not no_progress, init=init
        )
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write the run directory {run_dir}: {exc}") from exc
    from agent.dreamer.agent import describe_update

    repeat = f", action repeat {cfg.train.action_repeat}" if cfg.train.action_repeat != 1 else ""
    console.print(
        f"run dir [bold]{run_dir}[/] on {trainer.device}: {trainer.preset or name} preset, "
        f"opponent {cfg.train.opponent}, mode {cfg.train.mode}{repeat}, from env step {trainer.env_steps}; {cpu_line}; "
        f"{describe_update(trainer.cfg, trainer.device)}"
    )
    try:
        result = trainer.train()
    except TrainingError as exc:
        raise click.ClickException(stopped_by_error(exc, f"hockey-agent train --resume --run-dir {run_dir}")) from exc
    finally:
        trainer.close()
    state = "interrupted" if result["interrupted"] else "finished"
    console.print(
        f"{state} at env step {result['env_steps']}, {result['updates']} updates, "
        f"{result['episodes']} rounds, {result['time']:.0f} s; checkpoint saved in {run_dir}"
    )
    for key, value in sorted(trainer.last_eval.items()):
        console.print(f"  {key}: {value:.2f}")
    if result["interrupted"]:
        console.print(f"continue with: hockey-agent train --resume --run-dir {run_dir}")
    console.print(f"diagnose with: hockey-agent diagnose {run_dir}")


def _holds_league(run_dir: Path) -> bool:
    """Whether `run_dir` holds a self-play league of roles, which `train --selfplay` continues."""
    from selfplay.roles import LEAGUE_STATE

    return (run_dir / LEAGUE_STATE).is_file()


def stopped_by_error(exc: Any, resume: str) -> str:
    """One line for a TrainingError: what broke, what was saved, how to continue, where the traceback is."""
    text = str(exc)
    if exc.checkpoint_step is not None:
        text += f", continue with: {resume}"
    if exc.log is not None:
        text += f" (traceback in {exc.log})"
    return text


def _selfplay(cfg: Any, run_dir: Path, resume: bool, preset: str, progress: bool, init: Path | None = None) -> None:
    """Run self-play and print where the league and the exported agent are."""
    from rich.console import Console

    from agent.dreamer.agent import describe_update
    from agent.training.trainer import TrainingError, resolve_device
    from league.cli import print_leaderboard
    from league.members import LeagueError
    from selfplay.loop import league_dir_for
    from selfplay.run import run_selfplay

    console = Console()
    console.print(
        f"self-play run dir [bold]{run_dir}[/], league {league_dir_for(cfg, run_dir)}; "
        f"{describe_update(cfg, resolve_device(cfg.train.device))}"
    )
    try:
        result = run_selfplay(cfg, run_dir, resume, preset=preset, progress=progress, init=init)
    except TrainingError as exc:
        resume_command = f"hockey-agent train --selfplay --run-dir {run_dir}"
        raise click.ClickException(stopped_by_error(exc, resume_command)) from exc
    except (ValueError, FileNotFoundError, LeagueError) as exc:
        raise click.ClickException(str(exc)) from exc
    state = "interrupted" if result["interrupted"] else "finished"
    console.print(f"{state} at env step {result['env_steps']}, {result['updates']} updates, {result['time']:.0f} s")
    for learner, steps in result.get("learners", {}).items():  # a league of roles
        console.print(f"  {learner}: {steps} env steps")
    print_leaderboard(result["league"], min_games=cfg.train.worst_min_games)
    if "agent" in result:
        console.print(f"exported agent: {result['agent']} (hockey-agent client {result['agent']} ...)")
    if "champion" in result and result["champion"] != result.get("agent"):
        console.print(f"champion candidate (best worst case): {result['champion']}")
    if result["interrupted"]:
        console.print(f"continue with: hockey-agent train --selfplay --run-dir {run_dir}")
