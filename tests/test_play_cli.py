"""`hockey-agent play` through click's test runner."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from helpers import MALFORMED_METADATA, build, metadata, one_line_error, run_read_only, simulate_read_only

from agent.cli.main import main

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def _play(*args: str):
    return CliRunner().invoke(main, ["play", *args])


def test_play_tabulates_the_games() -> None:
    result = _play("still", "still", "--games", "2", "--seed", "0", "--mode", "shooting")
    assert result.exit_code == 0, result.output
    assert "games" in result.output and "A wins" in result.output
    assert "0:0" in result.output  # two still players never score
    # the row: 2 games, 0 wins, 2 draws, 0 losses
    assert _row(result.output)[:5] == ["2", "0", "2", "0", "0:0"]


def _row(output: str) -> list[str]:
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if "│" in line][0]


def test_swap_sides_counts_from_a_side() -> None:
    from agent.players.match import play_game
    from agent.players.scripted import make_scripted

    result = _play("shooter", "weak", "--games", "2", "--seed", "5", "--swap-sides")
    assert result.exit_code == 0, result.output
    a, b = make_scripted("shooter"), make_scripted("weak", seed=6)  # the command seeds B with seed + 1
    first = play_game(a, b, seed=5)
    second = play_game(b, a, seed=6)
    rounds_a, rounds_b = first.score1 + second.score2, first.score2 + second.score1
    outcomes = [first.winner, -second.winner]
    row = _row(result.output)
    assert row[1:5] == [
        str(outcomes.count(1)),
        str(outcomes.count(0)),
        str(outcomes.count(-1)),
        f"{rounds_a}:{rounds_b}",
    ]
    assert row[6] == str(first.steps + second.steps)


def test_render_writes_a_gif(tmp_path) -> None:
    import imageio.v3 as iio

    out = tmp_path / "game.gif"
    result = _play(
        "weak",
        "random",
        "--games",
        "1",
        "--seed",
        "0",
        "--mode",
        "defense",
        "--render",
        str(out),
        "--render-stride",
        "20",
    )
    assert result.exit_code == 0, result.output
    frames = iio.imread(out, index=None)
    assert frames.ndim == 4 and frames.shape[0] >= 4 and frames.shape[-1] in (3, 4)


def test_render_writes_an_mp4_with_ffmpeg(tmp_path) -> None:
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "game.mp4"
    result = _play(
        "shooter", "keeper", "--games", "1", "--mode", "shooting", "--render", str(out), "--render-stride", "10"
    )
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("goalie", "weak"), "still, random, weak, strong, shooter, keeper"),
        (("weak", "missing.onnx"), "does not exist"),
        (("weak", "still", "--render", "out.avi"), ".gif, .mp4"),
        (("weak", "still", "--mode", "penalty"), "normal"),
        (("weak", "still", "--game", "other"), "bundled"),
    ],
)
def test_bad_arguments_are_usage_errors(args, message) -> None:
    result = _play(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_a_missing_reference_game_is_a_usage_error() -> None:
    import importlib.util

    if importlib.util.find_spec("hockey") is not None:
        pytest.skip("the reference hockey package is installed here")
    result = _play("weak", "still", "--game", "reference")
    assert result.exit_code == 2
    assert "not installed" in result.output


def test_load_player_resolves_each_kind(tmp_path, monkeypatch) -> None:
    import sys
    import types

    from agent.players.policy import Policy
    from league.members import load_player

    assert isinstance(load_player("keeper"), Policy)
    with pytest.raises(ValueError, match="still, random.*onnx.*run directory"):
        load_player("nobody")
    with pytest.raises(ValueError, match="does not exist"):
        load_player(str(tmp_path / "agent.onnx"))

    loaded = []
    fake = types.ModuleType("agent.training.checkpoint")
    fake.load_policy = lambda path, device="cpu": loaded.append((path, device)) or "policy"
    monkeypatch.setitem(sys.modules, "agent.training.checkpoint", fake)
    assert load_player(str(tmp_path)) == "policy"
    assert loaded == [(tmp_path, "cpu")]


@pytest.mark.parametrize("case", ["strings", "nested", "deep-state", "deep-layout", "huge-state"])
def test_malformed_agent_file_is_one_line_not_a_traceback(tmp_path, case) -> None:
    changes, message = MALFORMED_METADATA[case]
    path = build(tmp_path / "bad.onnx", meta=metadata(**changes))
    result = _play("still", str(path), "--games", "1")
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert message in result.output and "Traceback" not in result.output


def test_render_into_a_read_only_directory_is_one_line(tmp_path, monkeypatch) -> None:
    simulate_read_only(monkeypatch, tmp_path)
    out = tmp_path / "game.gif"
    result = _play("still", "still", "--games", "1", "--render", str(out))
    assert result.exit_code == 2, result.output
    assert f"cannot write {out}: the directory {tmp_path} is read-only" in one_line_error(result)
    assert not out.exists()


def test_render_into_a_really_read_only_directory(tmp_path) -> None:
    import sys

    out = tmp_path / "game.gif"
    command = [sys.executable, "-m", "agent.cli", "play", "still", "still", "--games", "1", "--render", str(out)]
    result = run_read_only(tmp_path, command)
    assert result.returncode == 2 and f"cannot write {out}" in one_line_error(result)
