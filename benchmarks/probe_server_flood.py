"""Server memory while peers stream endless AMP boxes, and whether a real game still gets played.

    python benchmarks/probe_server_flood.py [--attackers 4] [--seconds 20]

Starts `hockey-agent serve --games 1` and `--attackers` raw TCP peers that never log in:
each streams one box that never ends (distinct keys, 64 KiB values) as fast as the
server reads, and connects again whenever the server cuts it off. Meanwhile two
scripted clients play one game. Every 50 ms the server's resident memory (VmRSS in
/proc) is read; the script prints the peak, the bytes the attackers got through and how
often they were cut off, and whether the game finished. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
TOKENS = ("probe-token-a", "probe-token-b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Flood(threading.Thread):
    """One peer streaming an unterminated box; reconnects when cut off."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.sent = 0
        self.cuts = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    index = 0
                    while not self.stop.is_set():
                        key = b"k%06d" % index
                        sock.sendall(b"\x00" + bytes([len(key)]) + key + b"\xff\xff" + b"v" * 65535)
                        self.sent += 65535 + len(key) + 4
                        index += 1
            except OSError:  # cut off (reset, broken pipe) or refused: count it and come back
                self.cuts += 1
                time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="How long the attack lasts at least.")
    args = parser.parse_args()

    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="flood-probe-"))
    log = tmp / "server.jsonl"
    command = [sys.executable, "-m", "agent.cli"]
    server = subprocess.Popen(
        [*command, "serve", "--port", str(port), "--games", "1", "--log", str(log)]
        + [arg for token in TOKENS for arg in ("--token", token)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        cwd=REPO,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    assert "listening on" in line, line
    stop = threading.Event()
    floods = [Flood(port, stop) for _ in range(args.attackers)]
    for flood in floods:
        flood.start()
    start = time.monotonic()
    peak = 0.0
    time.sleep(1.0)  # the attack first, then the players
    clients = [
        subprocess.Popen(
            [*command, "client", "--scripted", name, "--games", "1", "--server-url", "127.0.0.1"]
            + ["--server-port", str(port), "--token", token],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd=REPO,
        )
        for name, token in zip(("keeper", "shooter"), TOKENS)
    ]
    while time.monotonic() - start < args.seconds or any(c.poll() is None for c in clients):
        peak = max(peak, rss_mib(server.pid))
        if time.monotonic() - start > args.seconds + 120:
            break
        time.sleep(0.05)
    stop.set()
    for client in clients:
        if client.poll() is None:
            client.kill()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    games = [json.loads(row) for row in log.read_text().splitlines() if '"event": "game"' in row]
    dropped = sum('"event": "dropped"' in row for row in log.read_text().splitlines())
    sent = sum(f.sent for f in floods)
    print(f"attackers {args.attackers}, {time.monotonic() - start:.1f} s, {sent / 2**20:.0f} MiB sent")
    print(f"server peak RSS {peak:.0f} MiB, {dropped} connections cut for an oversized box")
    print(f"game: {games[0]['reason'] if games else 'none'}; server exit code {server.returncode}")


if __name__ == "__main__":
    main()
