"""Update speed of the DreamerV3 core: updates/s per preset, where the time goes, GFLOP/s.

Run by hand (figures depend on the machine and on what else runs on it):
    python benchmarks/bench_update.py                      # all configurations, 2 threads
    python benchmarks/bench_update.py --configs peer --updates 5 --profile

The threads are set as `hockey-agent train` sets them (agent/training/cpu.py): OpenMP's
own spinning wait on an idle machine, `--share-cpu` for threads that sleep while they
wait; an OMP_WAIT_POLICY in the environment wins. On a CPU shared with other jobs,
spinning threads that wait for a descheduled sibling make --threads 2 many times
slower than --threads 1. `--graph` (CUDA) replays the update from a CUDA graph.
The CPU time (summed over threads) is less sensitive than wall time to other
processes sharing the cores; with --threads 1 it approximates the work itself.
'peer' is the configuration of the NM512/dreamerv3-torch comparison: deter 512,
hidden 64, 32 x 4 latents, MLP units 64, batch 16 x 64, imagination 15 (which is our
'small' preset). Implied env steps/s = updates/s * batch * seq_len / train_ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

if "--share-cpu" in sys.argv[1:]:  # the wait policy is read when torch loads
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from agent.config import Config, make_config  # noqa: E402
from agent.dreamer import DreamerAgent  # noqa: E402
from agent.training import cpu  # noqa: E402

CONFIGS: dict[str, tuple[str, list[str]]] = {
    "tiny": ("tiny", []),
    "small": ("small", []),
    "medium": ("medium", []),
    "peer": (
        "small",
        [
            "model.deter=512",
            "model.hidden=64",
            "model.stoch=32",
            "model.classes=4",
            "model.units=64",
            "train.batch_size=16",
            "train.seq_len=64",
            "actor.horizon=15",
        ],
    ),
    "peer_dense_gru": ("small", ["model.blocks=1"]),
    "peer_bf16": ("small", ["model.compute_dtype=bfloat16"]),
    "medium_bf16": ("medium", ["model.compute_dtype=bfloat16"]),
}
PHASES = ("dreamer/wm_loss", "dreamer/wm_backward", "dreamer/imagine", "dreamer/ac_loss", "dreamer/ac_backward")


def make_batch(cfg: Config, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, t = cfg.train.batch_size, cfg.train.seq_len
    is_first = torch.rand(b, t, generator=g) < 0.01
    is_first[:, 0] = True
    return {
        "obs": torch.randn(b, t, 18, generator=g),
        "action": torch.rand(b, t, 4, generator=g) * 2 - 1,
        "reward": torch.where(torch.rand(b, t, generator=g) < 0.01, 10.0, 0.0),
        "is_first": is_first,
        "is_terminal": torch.rand(b, t, generator=g) < 0.005,
    }


def bench(
    name: str,
    updates: int,
    warmup: int,
    repeat: int,
    train_ratio: float | None,
    profile_phases: bool,
    device: str,
    peak: float,
    extra: list[str],
    graph: bool = False,
    filter_kind: str = "fused",
) -> dict[str, float]:
    preset, overrides = CONFIGS[name]
    cfg = make_config(preset, [*overrides, *extra])
    agent = DreamerAgent(cfg).to(device)
    agent.wm.fused_filter = filter_kind == "fused"
    batch = {k: v.to(device) for k, v in make_batch(cfg).items()}
    for _ in range(warmup):
        agent.step(batch)
    # the products are counted on an uncompiled copy: a compiled function that once ran under
    # the counter's dispatch mode runs slower from then on
    counted = DreamerAgent(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=False))).to(device)
    counted.wm.fused_filter = agent.wm.fused_filter
    with FlopCounterMode(display=False) as counter:
        counted.step(batch)
    gflop = counter.get_total_flops() / 1e9
    del counted
    if graph:
        agent.capture_graph(batch)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    walls, cpus = [], []
    for _ in range(repeat):  # the median of several timings: shared machines drift
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(updates):
            agent.step(batch)
        sync()
        walls.append((time.perf_counter() - start) / updates)
        cpus.append((time.process_time() - cpu_start) / updates)
    seconds, cpu_seconds = statistics.median(walls), statistics.median(cpus)
    ratio = train_ratio if train_ratio is not None else cfg.train.train_ratio
    replayed = cfg.train.batch_size * cfg.train.seq_len
    params = sum(p.numel() for p in agent.parameters() if p.requires_grad)
    label = " ".join([name, *extra, *(["graph"] if graph else []), *([f"{filter_kind} filter"])])
    print(
        f"{label:15s} params {params / 1e6:6.2f}M  {1 / seconds:6.2f} updates/s  {seconds * 1e3:7.1f} ms/update  "
        f"env steps/s at train ratio {ratio:g}: {replayed / seconds / ratio:8.1f}  "
        f"matmul GFLOP/update {gflop:6.2f}  achieved {gflop / seconds:6.1f} GFLOP/s "
        f"({100 * gflop / seconds / peak:4.1f}% of {peak:g})  "
        f"CPU time {cpu_seconds * 1e3:7.1f} ms/update (all threads)  "
        f"range {1 / max(walls):.2f}-{1 / min(walls):.2f} updates/s over {repeat} timings",
        flush=True,
    )
    if profile_phases and not graph:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            agent.update(batch)
        totals = {e.key: e.cpu_time_total / 1e3 for e in prof.key_averages() if e.key in PHASES}
        whole = sum(totals.values())
        print(
            "    phases (profiled, ms): "
            + "  ".join(
                f"{p.split('/')[1]} {totals.get(p, 0.0):.0f} ({100 * totals.get(p, 0.0) / whole:.0f}%)" for p in PHASES
            )
        )
        top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        print("\n".join("    " + line for line in top.splitlines()))
    return {"updates_s": 1 / seconds, "gflop": gflop, "gflop_s": gflop / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--updates", type=int, default=5, help="timed updates per configuration")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timings of --updates each; the median is reported")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: one per core)")
    parser.add_argument("--share-cpu", action="store_true", help="threads sleep while they wait (PASSIVE)")
    parser.add_argument("--graph", action="store_true", help="replay the update from a CUDA graph (CUDA only)")
    parser.add_argument("--train-ratio", type=float, default=None, help="default: the preset's")
    parser.add_argument("--profile", action="store_true", help="time each phase and list the top ops")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--filter",
        choices=("fused", "reference", "both"),
        default="fused",
        help="the world model's filter: the hand-written backward (what training runs), the autograd-recorded "
        "reference, or both alternating (A B A B) for a before/after ratio",
    )
    parser.add_argument("--peak", type=float, default=75.0, help="peak GFLOP/s of the threads used (2 cores: ~75)")
    parser.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override applied on top of every configuration, e.g. train.batch_size=64",
    )
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {cpu.configure(args.share_cpu, args.threads)}, device {args.device}")
    kinds = ["reference", "fused"] * 2 if args.filter == "both" else [args.filter]
    for name in args.configs:
        rates: dict[str, list[float]] = {}
        for kind in kinds:
            result = bench(
                name,
                args.updates,
                args.warmup,
                args.repeat,
                args.train_ratio,
                args.profile,
                args.device,
                args.peak,
                args.extra,
                args.graph,
                kind,
            )
            rates.setdefault(kind, []).append(result["updates_s"])
        if len(rates) == 2:
            ratio = statistics.median(rates["fused"]) / statistics.median(rates["reference"])
            print(f"{name}: fused filter {ratio:.2f}x the reference (median of A B A B)", flush=True)


if __name__ == "__main__":
    main()
