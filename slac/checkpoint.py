"""Atomic, pickle-free checkpoints.

A checkpoint is one ``.pt`` file written with ``torch.save`` and read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects: it holds only tensors,
numbers, strings, lists and dicts (network and optimiser states, counters, RNG states, the
config as a dict). The replay buffer, needed only to resume, goes beside it as ``replay.npz``
(read with ``allow_pickle=False``). Every file is written to a temporary name, fsynced, then
renamed over the target, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import torch

from slac.errors import InputError

LATEST = "latest.pt"
REPLAY = "replay.npz"
FORMAT_VERSION = 1


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(file_object)`` on a temp file in the same folder, fsync, rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(path: str | Path, state: dict) -> None:
    state = {"format_version": FORMAT_VERSION, **state}
    atomic_write(path, lambda f: torch.save(state, f))


def save_replay(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def resolve_path(run_dir_or_file: str | Path) -> Path:
    """A run directory means its ``checkpoints/latest.pt``; a file is taken as is."""
    p = Path(run_dir_or_file)
    if p.is_dir():
        for candidate in (p / "checkpoints" / LATEST, p / LATEST):
            if candidate.is_file():
                return candidate
        raise InputError(f"no checkpoint in run directory {str(p)!r} (looked for checkpoints/{LATEST})")
    if not p.is_file():
        raise InputError(f"checkpoint {str(p)!r} does not exist (give a run directory or a .pt file)")
    return p


def load(run_dir_or_file: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint without executing pickled code; corrupt files raise InputError."""
    path = resolve_path(run_dir_or_file)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, io.UnsupportedOperation) as e:
        raise InputError(f"checkpoint {str(path)!r} is corrupt or not a checkpoint of this project: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    except Exception as e:  # the weights_only unpickler rejects foreign objects with various types
        raise InputError(f"checkpoint {str(path)!r} could not be loaded safely: "
                         f"{str(e).splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise InputError(f"checkpoint {str(path)!r} is not a checkpoint of this project "
                         f"(format {state.get('format_version') if isinstance(state, dict) else None!r}, "
                         f"expected {FORMAT_VERSION})")
    state["path"] = str(path)
    return state


def load_replay(path: str | Path) -> dict[str, np.ndarray] | None:
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def architecture(model: torch.nn.Module, agent: torch.nn.Module) -> str:
    """A fingerprint of the networks' structure (layers, sizes, activations), stored in checkpoints.

    Parameter shapes alone do not pin a network down: a code change of an activation keeps every
    shape, and such a checkpoint would load silently and compute something else.
    """
    return hashlib.sha256((repr(model) + repr(agent)).encode()).hexdigest()[:16]


def code_version() -> str:
    """The git commit of this checkout (with '+changes' if the tree is dirty), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+changes" if dirty else "")) if commit else "unknown"
