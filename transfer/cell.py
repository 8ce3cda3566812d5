"""Run one study cell: its train.py / evaluate.py subprocesses, and its done / failed markers.

Standard library only: Ray sends this module to its workers by value. The file system is the state:
``done.json`` (commands, exit codes, wall times) in the cell's folder marks it finished; a training
stage whose run directory holds ``checkpoints/latest.pt`` continues with ``train.py --resume``; a
failure writes ``failed.json`` with the last line of the command's stderr (the next ``run`` retries).
While a cell runs its task holds a flock on ``STUDY/.running/<cell>.lock`` (how ``status`` sees it).
The commands get SIGTERM when the worker running them dies (Linux PR_SET_PDEATHSIG; they run in
their own session, out of reach of Ray's SIGKILL of a dead worker's process group, and the runner turns
off a local Ray's SIGKILL of a dead worker's children): train.py then saves a checkpoint and exits, so a
stopped (its tasks cancelled) or killed study leaves resumable runs.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from slac import rundir

DONE, FAILED = "done.json", "failed.json"
LOCK_WAIT_S = 300  # an earlier study's train.py may still be saving its checkpoint after a kill


def safe_id(cell_id: str) -> str:
    return cell_id.replace("/", "__")


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _prepare_child() -> None:
    """In the cell's child process: SIGTERM when its parent dies, the stop signals Ray's worker blocks
    unblocked, and Ray's worker niceness undone."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # Ray starts its workers at nice 15; a cell inherits that and, next to any process at nice 0, gets
    # a few per cent of a core (a smoke run measured 396 s instead of 17.5 s beside two training runs).
    # Back to nice 0 where allowed (root, or CAP_SYS_NICE); elsewhere the cell keeps Ray's niceness.
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass


def hold_lock(path: Path, wait: bool = True) -> int | None:
    """Take an exclusive flock on ``path`` (created) and write "HOST PID" in it; returns the descriptor
    (closing it, or the process ending however it ends, lets go). ``wait`` False: None at once if
    another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        if wait:
            raise
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
    return fd


def wait_unlocked(lock: Path, timeout: float = 0.0, poll: float = 0.5) -> bool:
    """True once no process holds ``lock`` (an flock; a missing file is free), False if one still holds it
    after ``timeout`` seconds (0: one look)."""
    if not lock.exists():
        return True
    deadline = time.monotonic() + timeout
    fd = os.open(lock, os.O_RDWR)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(poll)
    finally:
        os.close(fd)


def checkpoint_step(run_dir: Path) -> int | None:
    """The step of the run's latest snapshot (its replay_<step>.npz), None without one."""
    if not rundir.latest_path(run_dir).exists():
        return None
    steps = [rundir.replay_step(p.name) for p in (run_dir / rundir.CHECKPOINTS).iterdir()]
    return max((s for s in steps if s is not None), default=0)


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _run(argv: list[str], cwd: str, log: Path) -> tuple[int, float, str]:
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    env["PYTHONUNBUFFERED"] = "1"
    start = time.monotonic()
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        # its own session: Ray SIGKILLs a dead worker's process group, which would cut a checkpoint short
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, env=env, preexec_fn=_prepare_child,
                                start_new_session=True)
        code = proc.wait()
    return code, time.monotonic() - start, _last_line(log.with_suffix(".err"))


def execute(task: dict, *deps: dict) -> dict:
    """Run ``task`` (grid.Cell.as_task) unless it is done; ``deps`` are the results of the cells it waits
    for (Ray passes them once those finish). Returns {id, ok, ...}; never raises for a failed command."""
    cell_dir, study = Path(task["dir"]), Path(task["study_dir"])
    result = {"id": task["id"], "arm": task["arm"], "ok": False}
    for d in deps:
        if d is not None and not d.get("ok"):
            return {**result, "skipped": True, "error": f"waits for {d['id']}, which did not finish"}
    if (cell_dir / DONE).exists():
        return {**result, "ok": True, "skipped": True}
    (study / ".running").mkdir(parents=True, exist_ok=True)
    (study / "logs").mkdir(parents=True, exist_ok=True)
    running = hold_lock(study / ".running" / f"{safe_id(task['id'])}.lock")  # let go when this process ends
    try:
        commands, start, resumed_from = [], time.monotonic(), None
        for i, stage in enumerate(task["stages"]):
            log = study / "logs" / f"{safe_id(task['id'])}.{i}-{stage['kind']}.log"
            if stage["kind"] == "train":
                run_dir = Path(stage["run_dir"])
                wait_unlocked(run_dir / ".lock", LOCK_WAIT_S)  # still held: train.py reports who holds it
                (run_dir / FAILED).unlink(missing_ok=True)  # a fresh run needs a folder with only run files
                step = checkpoint_step(run_dir)
                argv = stage["new"] if step is None else stage["resume"]
                if step is not None:
                    resumed_from = step
            else:
                cell_dir.mkdir(parents=True, exist_ok=True)
                (cell_dir / FAILED).unlink(missing_ok=True)
                argv = stage["argv"]
            code, wall, last = _run(argv, task["cwd"], log)
            commands.append({"argv": argv, "exit_code": code, "wall_s": round(wall, 3), "log": str(log)})
            if code != 0:
                failure = {"id": task["id"], "command": argv, "exit_code": code, "wall_s": round(wall, 3),
                           "last_error": last or f"exit code {code} (no stderr)", "log": str(log.with_suffix(".err")),
                           "time": time.strftime("%Y-%m-%d %H:%M:%S")}
                cell_dir.mkdir(parents=True, exist_ok=True)
                write_json(cell_dir / FAILED, failure)
                return {**result, "error": failure["last_error"], "wall_s": time.monotonic() - start}
        done = {"id": task["id"], "arm": task["arm"], "commands": commands, "exit_code": 0,
                "wall_s": round(time.monotonic() - start, 3), "resumed_from_step": resumed_from,
                "host": socket.gethostname(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(cell_dir / DONE, done)
        return {**result, "ok": True, "wall_s": done["wall_s"], "resumed_from_step": resumed_from}
    finally:
        os.close(running)
