"""One place that decides where metrics go: metrics.jsonl, TensorBoard and the progress bar.

Update functions return ``{name: float}`` dicts with stable, prefixed names (``loss/kl``,
``train/episode_cost``, ``eval/return``, ``target/lifetime_cost``); the logger averages what it
received since the last write and sends the same scalars to every sink.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np


class Logger:
    """``resume`` (a :meth:`state_dict` saved in a checkpoint) continues a run from that checkpoint: the
    records written after it (by the continuation a kill threw away) are cut from ``metrics.jsonl``
    and purged from TensorBoard, and the averages pending at the checkpoint are restored."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, resume: dict | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "metrics.jsonl"
        if resume is not None and path.exists():
            with open(path, "r+b") as f:
                f.truncate(min(int(resume["offset"]), path.stat().st_size))
        self._jsonl = open(path, "a")
        self._sums: dict[str, float] = defaultdict(float, (resume or {}).get("sums", {}))
        self._counts: dict[str, int] = defaultdict(int, (resume or {}).get("counts", {}))
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # events after the checkpoint's step are hidden (TensorBoard's purge_step)
            purge = int(resume["step"]) + 1 if resume is not None else None
            self._writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=purge)

    def state_dict(self, step: int) -> dict:
        """What resuming at ``step`` needs: the metrics file's length and the pending averages."""
        self._jsonl.flush()
        return {"offset": os.fstat(self._jsonl.fileno()).st_size, "step": step, "sums": dict(self._sums),
                "counts": dict(self._counts)}

    def accumulate(self, metrics: dict[str, float]) -> None:
        """Add values to be averaged at the next :meth:`write`."""
        for k, v in metrics.items():
            self._sums[k] += float(v)
            self._counts[k] += 1

    def write(self, step: int, metrics: dict[str, float] | None = None) -> dict[str, float]:
        """Average the accumulated values, add ``metrics``, and write one record at ``step``."""
        record = {k: self._sums[k] / self._counts[k] for k in self._sums}
        record.update({k: float(v) for k, v in (metrics or {}).items()})
        self._sums.clear()
        self._counts.clear()
        self._emit(step, record)
        return record

    def event(self, step: int, metrics: dict[str, float]) -> None:
        """Write one record of ``metrics`` alone (e.g. a finished episode's), leaving the averages pending."""
        self._emit(step, {k: float(v) for k, v in metrics.items()})

    def _emit(self, step: int, record: dict[str, float]) -> None:
        """One record at ``step`` to metrics.jsonl and TensorBoard."""
        line = {"step": step, **{k: _finite_or_str(v) for k, v in record.items()}}
        self._jsonl.write(json.dumps(line) + "\n")
        self._jsonl.flush()
        if self._writer is not None:
            for k, v in record.items():
                self._writer.add_scalar(k, v, step)
            self._writer.flush()

    def image(self, tag: str, image_chw: np.ndarray, step: int) -> None:
        if self._writer is not None:
            self._writer.add_image(tag, image_chw, step, dataformats="CHW")
            self._writer.flush()

    def close(self) -> None:
        self._jsonl.close()
        if self._writer is not None:
            self._writer.close()


def _finite_or_str(v: float):
    return v if math.isfinite(v) else str(v)


def read_metrics(path: str | Path) -> list[dict]:
    """Read a metrics.jsonl file back (for plots and tests), without the records a resumed run replaced.

    A run killed without its final checkpoint resumes from its last periodic one, at an earlier step
    than its last record, and appends records for those steps again. A record whose step is lower
    than the one before it therefore marks such a rewind: the earlier records at that step or later
    belonged to the lost continuation and are dropped. (In every preset a checkpoint falls on a log
    step and no evaluation falls within one log interval after it, so the first record after a
    resume comes before any record the lost continuation wrote.)
    """
    records: list[dict] = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            if records and record["step"] < records[-1]["step"]:
                records = [r for r in records if r["step"] < record["step"]]
            records.append(record)
    return records
