"""The run directory: a lock held for a run's life, and the checks before a run writes into it.

A run (new, resumed, or a study's cell) holds an exclusive ``flock`` on ``DIR/.lock`` from before
it reads or writes anything there until it ends; the file holds the holder's PID. The kernel
drops the lock when the process dies, SIGKILL included, so a dead run never blocks its resume.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path

from slac.errors import InputError

LOCK = ".lock"
CHECKPOINTS = "checkpoints"  # the run's snapshots: latest.pt, best.pt, replay_<step>.npz (slac.checkpoint)
LATEST = "latest.pt"
# what a run writes into its directory: --overwrite deletes a directory only if it holds nothing else
RUN_FILES = {LOCK, "config.yaml", "metrics.jsonl", "provenance.jsonl", CHECKPOINTS, "tensorboard"}


def latest_path(run_dir: str | Path) -> Path:
    """Where a run directory keeps the snapshot a resume continues."""
    return Path(run_dir) / CHECKPOINTS / LATEST


def replay_name(step: int) -> str:
    """The file name of the replay buffer saved with the snapshot of ``step``."""
    return f"replay_{step:09d}.npz"


def replay_step(name: str) -> int | None:
    """The step in a replay file's name (``replay_name``'s inverse), None for any other name."""
    stem, dot, suffix = name.partition(".")
    prefix, _, digits = stem.partition("_")
    ok = prefix == "replay" and dot and suffix == "npz" and digits.isdigit()
    return int(digits) if ok else None


class RunLock:
    """An exclusive lock on a run directory (``release`` or process exit frees it)."""

    def __init__(self, out_dir: str | Path):
        self._fd: int | None = None
        self.path = Path(out_dir)
        if str(out_dir).strip() in ("", "."):
            raise InputError("--out is empty; give a directory for the run (it is created if missing)")
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"--out {str(self.path)!r} is a file, not a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise InputError(f"cannot create or write the run directory {str(self.path)!r}: "
                             f"{e.strerror or e}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise InputError(f"run directory {str(self.path)!r} is in use by another run (PID {holder}); "
                                 "wait for it to end or choose another --out") from None
            raise
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            self.release()


def check_new_run(out_dir: Path, overwrite: bool) -> None:
    """A new run needs an empty directory (the lock file apart). Leftovers of a run that never wrote a
    checkpoint are deleted with ``overwrite``, else refused; a directory holding a run is refused."""
    leftovers = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK)
    if not leftovers:
        return
    if latest_path(out_dir).exists() and not overwrite:
        raise InputError(f"{str(out_dir)!r} already holds a run; continue it with --resume {out_dir}, "
                         "replace it with --overwrite, or choose a new --out")
    foreign = [name for name in leftovers if name not in RUN_FILES]
    if foreign:
        raise InputError(f"--out {str(out_dir)!r} holds files that are not a run's ({', '.join(foreign[:5])}); "
                         "choose an empty or new directory")
    if not overwrite:
        raise InputError(f"--out {str(out_dir)!r} holds files of an earlier run that wrote no checkpoint "
                         f"({', '.join(leftovers)}); delete them with --overwrite or choose a new --out")
    for name in leftovers:
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
