"""Tournament client figures: Step round trip, games per minute, installed size.

    python benchmarks/bench_client.py [--agent AGENT.onnx] [--steps 2000] [--games 4] [--skip-install]

1. Step round trip on loopback: a bare AMP caller (this process) sends `--steps`
   observations from recorded games to a real `hockey-agent client` process and times
   each answer (median, p99), agent inference included.
2. Games per minute: `hockey-agent serve --games G` with two clients (the agent and the
   scripted keeper) on loopback.
3. Installed size of the client extra: a fresh venv, `pip install '.[client]'`, du of
   its site-packages (with and without pip/setuptools, which the venv brings itself).

Without --agent a synthetic graph of a DreamerV3-sized acting step (deter 512, stoch
32x32) is used: it follows the export contract, its weights are random. Figures on a
shared CPU are noisy; the script prints them, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
# the test suite's helpers: contract graphs, the serve/client command lines
from helpers import (  # noqa: E402
    ENV,
    client_command,
    contract_metadata,
    contract_model,
    copy_sources,
    free_port,
    start_server,
)

TOKENS = ("bench-token-a", "bench-token-b")


def synthetic_agent(path: Path, deter: int = 512, stoch: int = 32 * 32, hidden: int = 512) -> Path:
    """A contract-following graph with the matrix sizes of a DreamerV3 acting step."""
    import onnx
    from onnx import helper, numpy_helper

    size = deter + stoch
    rng = np.random.default_rng(0)
    shapes = {
        "enc": (18, hidden),
        "img": (size + 4 + hidden, hidden),
        "gru": (hidden, 3 * deter),
        "gru_out": (3 * deter, deter),
        "post": (deter + hidden, stoch),
        "act1": (size, hidden),
        "act2": (hidden, 4),
    }
    inits = [
        numpy_helper.from_array((rng.normal(0, 1, shape) / np.sqrt(shape[0])).astype(np.float32), name=name)
        for name, shape in shapes.items()
    ]
    inits.append(numpy_helper.from_array(np.array([-1.0, 1.0], dtype=np.float32), name="bounds"))
    n = helper.make_node
    nodes = [
        n("MatMul", ["obs", "enc"], ["e0"]),
        n("Tanh", ["e0"], ["e"]),
        n("Concat", ["state", "prev_action", "e"], ["x"], axis=1),
        n("MatMul", ["x", "img"], ["h0"]),
        n("Tanh", ["h0"], ["h"]),
        n("MatMul", ["h", "gru"], ["g0"]),
        n("Sigmoid", ["g0"], ["g"]),
        n("MatMul", ["g", "gru_out"], ["d0"]),
        n("Tanh", ["d0"], ["d"]),
        n("Concat", ["d", "e"], ["de"], axis=1),
        n("MatMul", ["de", "post"], ["z0"]),
        n("Softmax", ["z0"], ["z"], axis=1),
        n("Concat", ["d", "z"], ["next_state"], axis=1),
        n("MatMul", ["next_state", "act1"], ["a0"]),
        n("Tanh", ["a0"], ["a1"]),
        n("MatMul", ["a1", "act2"], ["a2"]),
        n("Tanh", ["a2"], ["action"]),
    ]
    metadata = contract_metadata(size, deter, stoch, preset="synthetic", exporter_version="bench")
    onnx.save(contract_model("synthetic_agent", nodes, inits, size, metadata), path)
    return path


def client_process(agent: list[str], port: int, token: str, log: Path, games: int) -> subprocess.Popen:
    command = client_command(port, token, log, *agent, "--games", str(games))
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=ENV)


def recorded_observations(steps: int) -> list[list[float]]:
    data = np.load(REPO / "tests" / "data" / "vectors.npz")
    stream = np.concatenate([data[f"ep{i:03d}/obs"][:-1] for i in range(12)])
    return [[float(v) for v in stream[i % len(stream)]] for i in range(steps)]


def step_round_trip(agent: Path, steps: int, workdir: Path) -> np.ndarray:
    """Seconds per Step call, timed by a bare AMP caller against a client process."""
    from twisted.internet import defer, protocol, reactor
    from twisted.protocols import amp

    from export.protocol import Auth, EndGame, Ready, StartGame, Step

    observations = recorded_observations(steps)
    times: list[float] = []

    class Caller(amp.AMP):
        def connectionMade(self) -> None:
            super().connectionMade()
            self.play()

        @defer.inlineCallbacks
        def play(self):  # type: ignore[no-untyped-def]
            yield self.callRemote(Auth)
            yield self.callRemote(Ready)
            yield self.callRemote(StartGame, game_id=bytes(16))
            for obs in observations:
                start = time.perf_counter()
                yield self.callRemote(Step, obv=obs)
                times.append(time.perf_counter() - start)
            yield self.callRemote(EndGame, result=False, stats=[0.0, 0.0])
            reactor.callLater(0.2, reactor.stop)

    port = reactor.listenTCP(0, protocol.ServerFactory.forProtocol(Caller), interface="127.0.0.1")
    client = client_process([str(agent)], port.getHost().port, TOKENS[0], workdir / "rtt.jsonl", 1)
    reactor.callLater(600, reactor.stop)
    reactor.run()
    client.wait(timeout=30)
    return np.array(times)


def act_times(agent: Path, steps: int) -> np.ndarray:
    """Seconds per OnnxAgent.act call without the network, to split the round trip."""
    from export.runtime import OnnxAgent

    player = OnnxAgent(agent)
    times = []
    for obs in recorded_observations(steps):
        start = time.perf_counter()
        player.act(np.asarray(obs))
        times.append(time.perf_counter() - start)
    return np.array(times)


def games_per_minute(agent: Path, games: int, workdir: Path) -> tuple[float, float, int]:
    """(games per minute over the whole run, per minute of pure game time, steps played)."""
    port = free_port()
    log = workdir / "server.jsonl"
    tokens = ("--token", TOKENS[0], "--token", TOKENS[1])
    server = start_server(port, log, "--games", str(games), *tokens, "--seed", "0")
    start = time.perf_counter()
    clients = [
        client_process([str(agent)], port, TOKENS[0], workdir / "a.jsonl", games),
        client_process(["--scripted", "keeper"], port, TOKENS[1], workdir / "b.jsonl", games),
    ]
    for process in clients:
        process.wait(timeout=60 * games + 60)
    server.wait(timeout=30)
    wall = time.perf_counter() - start
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    played = [row for row in rows if row["event"] == "game"]
    game_time = sum(row["duration_s"] for row in played)
    return 60 * len(played) / wall, 60 * len(played) / game_time, sum(row["steps"] for row in played)


def installed_size(workdir: Path) -> tuple[float, float]:
    """MiB of site-packages after `pip install '.[client]'` in a fresh venv (all, without pip/setuptools)."""
    source = copy_sources(workdir / "src")
    env_dir = workdir / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            f"{source}[client]",
        ],
        check=True,
    )
    (site,) = (env_dir / "lib").glob("python*/site-packages")

    def mib(paths: list[Path]) -> float:
        out = subprocess.run(["du", "-sk", *map(str, paths)], capture_output=True, text=True, check=True).stdout
        return sum(int(line.split()[0]) for line in out.splitlines()) / 1024

    everything = list(site.iterdir())
    own = [
        p
        for p in everything
        if not p.name.lower().startswith(("pip", "setuptools", "_distutils_hack", "distutils-precedence"))
    ]
    return mib(everything), mib(own)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", type=Path, help="an exported agent (default: a synthetic DreamerV3-sized graph)")
    parser.add_argument("--steps", type=int, default=2000, help="Step calls to time")
    parser.add_argument("--games", type=int, default=4, help="games for the games-per-minute figure")
    parser.add_argument("--skip-install", action="store_true", help="skip the venv size measurement (~1 min)")
    args = parser.parse_args()
    if args.steps < 1 or args.games < 1:
        parser.error("--steps and --games must be positive")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        agent = args.agent or synthetic_agent(workdir / "synthetic.onnx")
        print(f"agent: {agent if args.agent else 'synthetic (deter 512, stoch 32x32)'}; cores: {os.cpu_count()}")
        acting = act_times(agent, min(args.steps, 1000)) * 1e3
        print(
            f"agent act() alone, in process: median {np.median(acting):.3f} ms, p99 {np.percentile(acting, 99):.3f} ms"
        )
        times = step_round_trip(agent, args.steps, workdir) * 1e3
        print(
            f"Step round trip over loopback ({len(times)} calls): median {np.median(times):.3f} ms, "
            f"p99 {np.percentile(times, 99):.3f} ms, max {times.max():.3f} ms"
        )
        overall, pure, steps = games_per_minute(agent, args.games, workdir)
        print(
            f"games per minute ({args.games} games, {steps} steps, agent vs keeper on the local server): "
            f"{overall:.1f} including start-up, {pure:.1f} of game time"
        )
        if not args.skip_install:
            total, own = installed_size(workdir)
            print(f"client extra installed size: site-packages {total:.0f} MiB, {own:.0f} MiB without pip/setuptools")


if __name__ == "__main__":
    main()
