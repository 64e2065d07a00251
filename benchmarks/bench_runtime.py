"""Acting latency of the exported agent vs PyTorch eager, and the runtime's start-up cost.

For each preset a freshly initialised agent (weights do not change the cost) is exported
and timed at batch 1 on one thread, the recurrent state fed back every step:
- onnx act: `OnnxAgent.act` (the Policy call the game and the client make),
- onnx graph: the bare `session.run` inside it,
- torch act: `ActingPolicy.act` of the PyTorch agent, `torch.set_num_threads(1)`.
Then, per preset, a fresh subprocess with torch blocked measures import-to-first-action
time and resident memory (current and peak RSS). Figures are noisy on a shared machine.

    python benchmarks/bench_runtime.py [--presets tiny,small,medium] [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

STARTUP_CODE = """
import time
t0 = time.perf_counter()
import sys
sys.modules["torch"] = None  # the runtime must work without torch
import numpy as np
from export.runtime import OnnxAgent
agent = OnnxAgent(sys.argv[1])
agent.act(np.zeros(18))
elapsed = time.perf_counter() - t0
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
kib = lambda key: int(status[key].split()[0])
import json
print(json.dumps({"startup_s": elapsed, "rss_mib": kib("VmRSS") / 1024, "peak_mib": kib("VmHWM") / 1024}))
"""


def timed(fn: Callable[[np.ndarray], object], observations: np.ndarray, warmup: int) -> np.ndarray:
    """Wall and thread-CPU seconds per call of fn, [calls, 2], after `warmup` untimed calls.

    Both runtimes compute in the calling thread when limited to one thread, so the CPU
    time leaves out the waits a busy shared machine adds to the wall time.
    """
    for obs in observations[:warmup]:
        fn(obs)
    times = np.empty((len(observations) - warmup, 2))
    for i, obs in enumerate(observations[warmup:]):
        wall, cpu = time.perf_counter(), time.thread_time()
        fn(obs)
        times[i] = time.perf_counter() - wall, time.thread_time() - cpu
    return times


def startup(path: Path) -> dict[str, float]:
    """Import-to-first-action time and RSS of a fresh interpreter without torch."""
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo))
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", STARTUP_CODE, str(path)], capture_output=True, text=True, env=env, check=True
    )
    result = json.loads(out.stdout)
    result["process_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,small,medium")
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--exporter", default="torchscript", choices=("torchscript", "dynamo"))
    args = parser.parse_args()

    import torch

    from agent.config import PRESETS, make_config
    from agent.dreamer.agent import ActingPolicy, DreamerAgent
    from export.onnx_export import export_agent
    from export.runtime import OnnxAgent

    torch.set_num_threads(1)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown presets {unknown}; choices: {', '.join(PRESETS)}")
    rng = np.random.default_rng(0)
    observations = rng.normal(scale=2.0, size=(args.steps + args.warmup, 18))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            torch.manual_seed(0)
            agent = DreamerAgent(make_config(preset)).eval()
            params = sum(p.numel() for p in agent.parameters())
            path = Path(tmp) / f"{preset}.onnx"
            start = time.perf_counter()
            export_agent(agent, path, preset=preset, train_step=0, exporter=args.exporter)
            export_s = time.perf_counter() - start
            onnx_agent = OnnxAgent(path, threads=1)
            state = np.tile(onnx_agent.initial_state, (1, 1))
            prev = np.zeros((1, 4), np.float32)

            def graph_step(obs: np.ndarray, onnx_agent: OnnxAgent = onnx_agent) -> None:
                nonlocal state, prev
                prev, state = onnx_agent.run_graph(obs[None].astype(np.float32), prev, state)

            torch_player = ActingPolicy(agent, deterministic=True)
            result = {
                "preset": preset,
                "params": params,
                "state": onnx_agent.state_size,
                "file_kib": path.stat().st_size / 1024,
                "export_s": export_s,
                "onnx act": timed(onnx_agent.act, observations, args.warmup),
                "onnx graph": timed(graph_step, observations, args.warmup),
                "torch act": timed(torch_player.act, observations, args.warmup),
            }
            result.update(startup(path))
            rows.append(result)

    for column, clock in enumerate(("wall", "thread CPU")):
        print(
            f"acting latency at batch 1, one thread, {clock} time, {args.steps} steps after "
            f"{args.warmup} warm-up (exporter {args.exporter}); microseconds, median / p99"
        )
        print(
            f"{'preset':<7} {'agent params':>12} {'S':>5} {'onnx act':>15} {'onnx graph':>15} "
            f"{'torch act':>15} {'speed-up':>8}"
        )
        for r in rows:
            cells = []
            for key in ("onnx act", "onnx graph", "torch act"):
                t = r[key][:, column] * 1e6
                cells.append(f"{np.median(t):7.0f}/{np.percentile(t, 99):<7.0f}")
            speedup = np.median(r["torch act"][:, column]) / np.median(r["onnx act"][:, column])
            print(
                f"{r['preset']:<7} {r['params']:>12} {r['state']:>5} {cells[0]:>15} {cells[1]:>15} "
                f"{cells[2]:>15} {speedup:7.1f}x"
            )
        print()
    print("runtime start-up without torch (fresh subprocess: import + load + first action)")
    print(
        f"{'preset':<7} {'file KiB':>9} {'export s':>9} {'start-up s':>11} {'process s':>10} "
        f"{'RSS MiB':>8} {'peak MiB':>9}"
    )
    for r in rows:
        print(
            f"{r['preset']:<7} {r['file_kib']:9.0f} {r['export_s']:9.2f} {r['startup_s']:11.3f} "
            f"{r['process_s']:10.3f} {r['rss_mib']:8.1f} {r['peak_mib']:9.1f}"
        )


if __name__ == "__main__":
    main()
