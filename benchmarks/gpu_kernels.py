"""Kernels and GPU time per DreamerV3 update, float32 against bfloat16 products (CUDA).

    python benchmarks/gpu_kernels.py --configs small

Counts the CUDA kernels one update launches and sums their GPU time with the torch
profiler, so a change meant to fuse kernels shows whether it did.
"""

from __future__ import annotations

import argparse

import torch
from bench_update import make_batch
from torch.profiler import ProfilerActivity, profile

from agent.config import make_config
from agent.dreamer import DreamerAgent


def kernels(preset: str, extra: list[str]) -> tuple[int, float]:
    cfg = make_config(preset, extra)
    agent = DreamerAgent(cfg).cuda()
    batch = {k: v.cuda() for k, v in make_batch(cfg).items()}
    for _ in range(3):
        agent.step(batch)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        agent.step(batch)
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return len(events), sum(e.device_time for e in events) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="small")
    args = parser.parse_args()
    for preset in args.configs.split(","):
        for extra in ([], ["model.compute_dtype=bfloat16"]):
            n, ms = kernels(preset, extra)
            print(f"{preset} {' '.join(extra) or 'eager'}: {n} kernels, {ms:.1f} ms of GPU time per update", flush=True)


if __name__ == "__main__":
    main()
