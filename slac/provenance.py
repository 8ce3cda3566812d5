"""What produced a run: the code, the libraries and the machine, one record per start.

A run resumed on one machine continues bit for bit (slac.trainer); the same command on another
machine does not: a fresh run of a study's cell, on a second machine with the same code and config,
matched the first through its random collection and differed from the first model update on
(docs/notebook.md, "can a lost source be trained again?"). CPUs differ in their kernels (bf16
convolutions run natively only on AVX512/AMX CPUs, slac.networks.native_bf16), so a run directory
keeps ``provenance.jsonl``: one line each time the run starts or resumes.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from slac.networks import native_bf16

FILE = "provenance.jsonl"


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: torch.device) -> dict:
    """The library versions and hardware a run computes with on ``device``."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "cpu": cpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "native_bf16": native_bf16(device.type)}


def record(run_dir: str | Path, step: int, device: torch.device, code_version: str) -> dict:
    """Append this start's record (``step``: where the run starts, 0 unless it resumes;
    ``code_version``: slac.checkpoint.code_version(), which the trainer has already) to the run's
    provenance.jsonl and return it."""
    entry = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "step": int(step), "code_version": code_version,
             **machine(device)}
    path = Path(run_dir) / FILE
    previous = path.read_bytes() if path.exists() else b""
    torn = previous and not previous.endswith(b"\n")
    with open(path, "a") as f:
        f.write(("\n" if torn else "") + json.dumps(entry) + "\n")  # a torn last line stays apart
    return entry


def read(run_dir: str | Path) -> list[dict]:
    """The run's provenance records, oldest first ([] for a run written before they existed); a line
    torn by a kill while it was written is left out."""
    path = Path(run_dir) / FILE
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
