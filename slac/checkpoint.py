"""Atomic, pickle-free checkpoints, written as one consistent snapshot with their replay buffer.

A checkpoint is one ``.pt`` file written with ``torch.save`` and read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects: it holds only tensors,
numbers, strings, lists and dicts (network and optimiser states, counters, RNG states, the
config as a dict). The replay buffer, needed only to resume, goes beside it as
``replay_<step>.npz`` (read with ``allow_pickle=False``), and ``latest.pt`` names the replay file
it belongs to. Every file is written to a temporary name, fsynced, then renamed over the target;
a snapshot writes its replay first and ``latest.pt`` second, and deletes older replays last, so
a kill at any moment leaves a ``latest.pt`` whose replay exists and matches it.

An exported agent (``scripts/export_agent.py``, ``agents/<name>/agent.pt``) is a checkpoint of the
same format with only what evaluation and fine-tuning need (:func:`agent_state`): no optimiser,
RNG, logger or replay state, so it can be evaluated and fine-tuned but not resumed.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tokenize
import zipfile
from pathlib import Path

import numpy as np
import torch

from slac.config import upgrade_saved
from slac.errors import InputError
from slac.rundir import CHECKPOINTS, LATEST, latest_path, replay_name, replay_step

BEST = "best.pt"  # train.keep_best_feasible: the kept checkpoint with the best evaluation within the budget
AGENT = "agent.pt"  # an exported agent's weights, in its folder agents/<name>/
FORMAT_VERSION = 1
REPLAY_KEYS = ("frames", "action", "reward", "cost", "terminated", "first", "cursor", "size")


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


def save_snapshot(ckpt_dir: Path, state: dict, replay, keep: bool, best: bool = False) -> Path:
    """Write ``latest.pt`` and its replay (``replay()`` gives the arrays; a replay of this step already
    written is reused) as one snapshot, plus a kept copy ``step_<step>.pt`` if ``keep`` and ``best.pt``
    if ``best``. ``best.pt`` goes before ``latest.pt``: a kill between them resumes from the older
    snapshot, which replays the same steps and writes the same ``best.pt`` again."""
    step = int(state["counters"]["step"])
    name = replay_name(step)
    if not (ckpt_dir / name).is_file():
        save_replay(ckpt_dir / name, replay())
    state = {**state, "replay_file": name}
    if best:
        save(ckpt_dir / BEST, state)
    latest = ckpt_dir / LATEST
    save(latest, state)
    if keep:
        save(ckpt_dir / f"step_{step:09d}.pt", state)
    clean_stale(ckpt_dir, name)
    return latest


def clean_stale(ckpt_dir: Path, replay_in_use: str | None) -> None:
    """Delete temp files left by killed writers and replays (files named as ``replay_name`` writes them)
    that no longer belong to ``latest.pt`` (only while the run directory is locked: no other writer can be
    at work). Any other file is left alone."""
    if not ckpt_dir.is_dir():
        return
    for path in ckpt_dir.iterdir():
        stale_replay = replay_step(path.name) is not None and path.name != replay_in_use
        if stale_replay or (path.name.startswith(".") and ".tmp" in path.name):
            path.unlink(missing_ok=True)


def resolve_path(run_dir_or_file: str | Path, latest: bool = False) -> Path:
    """A run directory means its ``checkpoints/best.pt`` if it kept one (``train.keep_best_feasible``),
    else its ``checkpoints/latest.pt`` (always that with ``latest``: the snapshot a resume continues);
    an exported agent's folder means its ``agent.pt``; a file is taken as is."""
    p = Path(run_dir_or_file)
    if p.is_dir():
        candidates = (latest_path(p), p / LATEST, p / AGENT)
        for candidate in candidates if latest else (p / CHECKPOINTS / BEST, *candidates):
            if candidate.is_file():
                return candidate
        raise InputError(f"no checkpoint in run directory {str(p)!r} (looked for {CHECKPOINTS}/{LATEST}, {LATEST} "
                         f"and an exported agent's {AGENT})")
    if not p.is_file():
        raise InputError(f"checkpoint {str(p)!r} does not exist (give a run directory or a .pt file)")
    return p


def load(run_dir_or_file: str | Path, map_location="cpu", latest: bool = False) -> dict:
    """Load a checkpoint (:func:`resolve_path`) without executing pickled code; corrupt files raise InputError."""
    path = resolve_path(run_dir_or_file, latest)
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; torch.load would try it as a raw pickle
        raise InputError(f"checkpoint {str(path)!r} is corrupt or not a checkpoint of this project: it is not "
                         "a zip archive as torch.save writes")
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
    _check_entries(state)
    state["config"] = upgrade_saved(state["config"])  # keys added since it was written: as its code did
    return state


# entries every checkpoint has, and what they must be
_ENTRIES = {"phase": str, "config": dict, "env_spec": dict, "counters": dict, "model": dict, "agent": dict}
_SPEC = {"obs_shape": list, "action_dim": int, "action_repeat": int, "episode_steps": int}
_COUNTERS = {"step": int, "env_steps": int, "episodes": int, "updates": int, "model_updates": int,
             "lifetime_cost": (int, float), "pretrained": bool, "zero_shot_done": bool}
# entries only resuming needs (a checkpoint without them can be evaluated and fine-tuned)
RESUME_ENTRIES = {"model_optimizer": dict, "agent_optimizers": dict, "rng": dict, "update_credit": (int, float),
                  "episode": dict, "policy_state": dict, "logger": dict, "replay_file": str}


# what an exported agent keeps beside the entries every checkpoint has: where its weights come from
AGENT_PROVENANCE = ("architecture", "code_version", "source_checkpoint")


def agent_state(state: dict) -> dict:
    """What an exported agent keeps of a loaded checkpoint: the entries every checkpoint has (phase,
    config, env spec, counters, the model's and the agent's networks, target critics, α and λ among them)
    and its provenance; none of ``RESUME_ENTRIES`` nor a randomised env's state. The tensors are the
    checkpoint's own (float32 as trained): evaluating the agent is evaluating the checkpoint."""
    return {key: state[key] for key in (*_ENTRIES, *AGENT_PROVENANCE) if key in state}


def _bad(state: dict, what: str) -> InputError:
    return InputError(f"checkpoint {state['path']!r} is damaged or not this project's: {what}")


def _check_types(state: dict, entries: dict, where: dict, label: str) -> None:
    for key, kind in entries.items():
        if key not in where:
            raise _bad(state, f"{label}{key!r} is missing")
        if not isinstance(where[key], kind) or (kind is int and isinstance(where[key], bool)):
            raise _bad(state, f"{label}{key!r} is a {type(where[key]).__name__}")


def _check_entries(state: dict) -> None:
    _check_types(state, _ENTRIES, state, "")
    _check_types(state, _SPEC, state["env_spec"], "env_spec ")
    _check_types(state, _COUNTERS, state["counters"], "counter ")
    if any(state["counters"][k] < 0 for k in ("step", "env_steps", "episodes", "updates", "model_updates")):
        raise _bad(state, f"negative counters {state['counters']}")
    if not all(isinstance(v, torch.Tensor) for part in ("model", "agent") for v in state[part].values()):
        raise _bad(state, "its model or agent holds entries that are not tensors")


def check_resumable(state: dict) -> None:
    """The entries a resume needs beyond what evaluation needs; InputError if any is missing."""
    missing = [k for k in RESUME_ENTRIES if k not in state]
    if missing:
        raise InputError(f"checkpoint {state['path']!r} cannot be resumed exactly: it lacks {', '.join(missing)} "
                         "(an older format, or not a training checkpoint); it can still be evaluated or "
                         "fine-tuned with --phase target")
    _check_types(state, RESUME_ENTRIES, state, "")


def load_replay(path: Path) -> dict[str, np.ndarray]:
    """The replay arrays of a snapshot, checked for completeness and types; InputError if damaged."""
    if not path.is_file():
        raise InputError(f"cannot resume: replay buffer {str(path)!r}, written with the checkpoint, is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    # numpy parses an array's header with ast, then tokenize: damaged bytes there raise their errors
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, SyntaxError, tokenize.TokenError) as e:
        reason = "an array header cannot be parsed" if isinstance(e, (SyntaxError, tokenize.TokenError)) else \
            str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"replay buffer {str(path)!r} is damaged ({reason}); the run cannot be resumed "
                         "(start a new run, or fine-tune from its checkpoint)") from None
    missing = [k for k in REPLAY_KEYS if k not in arrays]
    if missing:
        raise InputError(f"replay buffer {str(path)!r} is damaged: it lacks {', '.join(missing)}")
    return arrays


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
