"""The client extra alone (no torch, no game) installs into a fresh venv and plays a game.

This is what the Docker image does (`pip install '.[client]'`); Docker itself is not
available here. The server runs in the main environment; two clients from the venv,
an ONNX agent and a scripted player, play a game on it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import venv
from pathlib import Path

import pytest
from helpers import OTHER_TOKEN, REPO, TOKEN, copy_sources, events, finish, free_port, start_server


@pytest.mark.slow
def test_client_extra_in_fresh_venv_plays_a_game(tmp_path: Path, agent_file: Path) -> None:
    # a copy, so the build leaves no files in the checkout
    source = copy_sources(tmp_path / "src")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{source}[client]"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    for heavy in ("torch", "Box2D", "gymnasium", "onnx"):
        probe = subprocess.run([str(python), "-c", f"import {heavy}"], capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, f"{heavy} is importable in the venv"

    port = free_port()
    server = start_server(port, tmp_path / "server.jsonl", "--games", "1", "--token", TOKEN, "--token", OTHER_TOKEN)

    def venv_client(token: str, log: str, *player: str) -> subprocess.Popen:
        # the token through the environment, as in the Docker image; nothing else inherited
        return subprocess.Popen(
            [
                str(env_dir / "bin" / "hockey-agent"),
                "client",
                *player,
                "--server-url",
                "127.0.0.1",
                "--server-port",
                str(port),
                "--games",
                "1",
                "--log",
                str(tmp_path / log),
            ],
            env={"COMPRL_ACCESS_TOKEN": token, "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    # the ONNX agent, and a scripted player (the --scripted ones need no Box2D either)
    clients = [
        venv_client(TOKEN, "venv.jsonl", str(agent_file)),
        venv_client(OTHER_TOKEN, "scripted.jsonl", "--scripted", "keeper"),
    ]
    for process in (*clients, server):
        code, out = finish(process, timeout=90)
        assert code == 0, out
    (game,) = events(tmp_path / "venv.jsonl", "game")
    assert game["rounds_seen"] == 4 and game["warnings"] == 0


def test_dockerfile_matches_the_repository() -> None:
    """Docker is not available here: check what the image build relies on instead."""
    from agent.cli.main import COMMANDS

    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")  # join continued lines
    instructions = [line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    run = " ".join(args for op, args in instructions if op == "RUN")
    assert "pip install '.[client]'" in run
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for op, args in instructions:
        if op == "COPY":
            *sources, _ = shlex.split(args)
            for source in sources:
                if "$" in source:
                    continue
                assert (REPO / source).exists(), f"Dockerfile copies {source}, which is missing"
                assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, f".dockerignore excludes {source}"
    (default,) = [args.split("=", 1)[1] for op, args in instructions if op == "ARG" and args.startswith("AGENT=")]
    assert (REPO / default).is_file() and default.startswith("models/") and default.endswith(".onnx"), default
    (entry,) = [args for op, args in instructions if op == "ENTRYPOINT"]
    command = json.loads(entry)
    assert command[:2] == ["hockey-agent", "client"] and command[1] in COMMANDS
    assert COMMANDS["client"][0] == "export.client_cli:client"
