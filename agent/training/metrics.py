"""Run metrics: JSON lines in <run>/metrics.jsonl plus TensorBoard event files.

Every update's metrics enter the statistics, but a row is written every `log_every`
updates holding the MEAN over the updates since the previous row (lists such as
`actor/entropy_step` are averaged element-wise; `n_updates` says how many were
averaged). Writing a row and a TensorBoard point per update would cost more than a
small model's update. Episode, drill, evaluation and league rows are written as they
come. Each row has `kind` ("update" or one of ROW_KINDS), `step` (env steps), `update`
and `time` (seconds since the run started, summed over resumed sessions); update rows
after the first also carry the loop's speed since the previous one, `speed/updates_s`
and `speed/env_steps_s`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"

ROW_KINDS = ("episode", "drill", "eval", "league")


def _jsonable(value: Any) -> Any:
    """Floats (NaN/inf become strings "nan"/"inf": valid JSON that diagnose reads back)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in np.asarray(value, np.float64).ravel().tolist()]
    value = float(value)
    return value if math.isfinite(value) else str(value)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl file (a run dir or the file), with "nan"/"inf" strings as floats."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            for k, v in row.items():
                if isinstance(v, str) and k != "kind":
                    row[k] = float(v)
                elif isinstance(v, list):
                    row[k] = [float(x) for x in v]
            rows.append(row)
    return rows


class MetricsLogger:
    """Aggregates update metrics and writes rows to metrics.jsonl and TensorBoard."""

    def __init__(
        self, run_dir: str | Path, log_every: int = 1, resume_step: int | None = None, tensorboard: bool = True
    ) -> None:
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE
        self.log_every = log_every
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a", buffering=1)
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed session wrote after the checkpoint
            self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=resume_step)
        self._sums: dict[str, Any] = {}
        self._count = 0
        self._last_flush: tuple[int, int, float] | None = None  # (step, update, time) of the last update row

    def _truncate_after(self, step: int) -> None:
        """On resume keep only rows up to the checkpoint's env step (later ones get re-made)."""
        kept = [json.dumps(r) for r in self._raw_rows() if r.get("step", 0) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(self.path)

    def _raw_rows(self) -> list[dict[str, Any]]:
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def log_update(self, step: int, update: int, time_s: float, metrics: dict[str, Any]) -> None:
        """Add one update's metrics; every log_every-th call writes the mean row.

        Values are numbers, lists or tensors; tensors are summed where they live (on a
        GPU, without waiting for it) and read once per row.
        """
        for k, v in metrics.items():
            if hasattr(v, "detach"):
                value = v.detach()
            else:
                value = np.asarray(v, np.float64)
            old = self._sums.get(k)
            if old is not None and tuple(old.shape) != tuple(value.shape):
                raise ValueError(f"metric {k} changed shape from {tuple(old.shape)} to {tuple(value.shape)}")
            if old is None:
                self._sums[k] = value.clone() if hasattr(value, "clone") else value
            elif hasattr(old, "add_"):
                old.add_(value)
            else:
                self._sums[k] = old + value
        self._count += 1
        if self._count >= self.log_every:
            self.flush_updates(step, update, time_s)

    def flush_updates(self, step: int, update: int, time_s: float) -> None:
        """Write the mean of the pending updates (nothing if none are pending)."""
        if self._count == 0:
            return
        sums = {k: np.asarray(v.double().cpu() if hasattr(v, "cpu") else v, np.float64) for k, v in self._sums.items()}
        row = {"kind": "update", "step": step, "update": update, "time": time_s, "n_updates": self._count}
        if self._last_flush is not None and time_s > self._last_flush[2]:
            seconds = time_s - self._last_flush[2]
            row["speed/updates_s"] = (update - self._last_flush[1]) / seconds
            row["speed/env_steps_s"] = (step - self._last_flush[0]) / seconds
        row.update(
            {k: _jsonable((v / self._count).tolist() if v.ndim else float(v) / self._count) for k, v in sums.items()}
        )
        self._write(row, step)
        self._sums, self._count = {}, 0
        self._last_flush = (step, update, time_s)

    def log_row(self, kind: str, step: int, update: int, time_s: float, values: dict[str, Any]) -> None:
        """An episode, drill, evaluation or league (self-play snapshot) row, written at once."""
        if kind not in ROW_KINDS:
            raise ValueError(f"unknown row kind {kind!r}; choices: {', '.join(ROW_KINDS)}")
        row = {"kind": kind, "step": step, "update": update, "time": time_s}
        row.update({k: _jsonable(v) for k, v in values.items()})
        self._write(row, step)

    def _write(self, row: dict[str, Any], step: int) -> None:
        self._file.write(json.dumps(row) + "\n")
        if self._writer is None:
            return
        for k, v in row.items():
            if k in ("kind", "step", "update", "time", "n_updates"):
                continue
            if isinstance(v, list):
                for i, x in enumerate(v):  # one curve per imagined step
                    self._writer.add_scalar(f"{k}/{i:02d}", float(x), step)
            else:
                self._writer.add_scalar(k, float(v), step)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()
