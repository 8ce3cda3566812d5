"""Schedule a study's cells on Ray, resumably; and the status of a study folder.

``run``: checks everything first (spec, --out, Ray at --address), stores the spec as DIR/spec.yaml
(a different spec for the same DIR is refused, naming what changed), then submits each unfinished cell
as a Ray task (``num_cpus=1``) running ``transfer.cell.execute``; a cell that waits for a source run
gets that run's ObjectRef as an argument. ``--max-parallel N`` keeps at most N cells in flight.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import yaml

from transfer import cell as cellmod
from transfer import grid
from transfer.spec import StudyError, diff

SPEC = "spec.yaml"
RUNNER_LOCK = ".runner.lock"  # held (flock) by the study process running DIR; holds "HOST PID"
STOP_WAIT_S = 600  # how long ``stop`` waits for a runner whose training cells save their checkpoints


def cell_state(c: grid.Cell, study: Path) -> str:
    if (c.dir / cellmod.DONE).exists():
        return "done"
    if not cellmod.wait_unlocked(study / ".running" / f"{cellmod.safe_id(c.id)}.lock"):
        return "running"
    if (c.dir / cellmod.FAILED).exists():
        return "failed"
    return "pending"


def hold_runner_lock(out: Path) -> int:
    """Take DIR's runner lock (one study process per folder); refused, naming who holds it, if taken."""
    fd = cellmod.hold_lock(out / RUNNER_LOCK, wait=False)
    if fd is None:
        holder = (out / RUNNER_LOCK).read_text().strip() or "unknown"
        raise StudyError(f"another study process (host and pid: {holder}) is running {out}; wait for it, or "
                         f"`python study.py stop {out}`")
    return fd


def stop(out: Path, timeout: float = STOP_WAIT_S, echo=print) -> int:
    """SIGTERM the study process running DIR and wait until it has ended: it cancels its running cells,
    whose train.py processes get SIGTERM, save a checkpoint and continue with the next ``run``."""
    out = Path(out).resolve()
    lock = out / RUNNER_LOCK
    if not (out / SPEC).exists():
        raise StudyError(f"{str(out)!r} holds no study (no {SPEC})")
    if cellmod.wait_unlocked(lock):
        echo(f"no study process is running {out}")
        return 0
    host, _, pid = lock.read_text().strip().partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        raise StudyError(f"{out} is run by process {pid or '?'} on host {host or '?'}; stop it there")
    echo(f"stopping the study process {pid} of {out} (its training cells save checkpoints) ...")
    try:
        os.kill(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not cellmod.wait_unlocked(lock, timeout):
        raise StudyError(f"process {pid} still runs {out} after {timeout:.0f} s; look at it with `ps -p {pid}`")
    echo(f"stopped; `study.py status {out}` shows what is left, the same `study.py run` command continues")
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def check_out(out: Path) -> None:
    """--out must be creatable and writable (checked with a probe file)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise StudyError(f"--out {str(out)!r} is not writable: {e.strerror or e}") from None


GROWABLE = ("methods", "seeds")  # what a study may add to: new cells, and every earlier cell means what it did


def check_spec_unchanged(out: Path, spec: dict) -> tuple[bool, list[str]]:
    """(whether DIR/spec.yaml exists, what ``spec`` adds to it). A spec that only adds methods or seeds
    grows the study; any other difference is an error naming it."""
    path = out / SPEC
    if not path.exists():
        return False, []
    old = yaml.safe_load(path.read_text())
    if old == spec:
        return True, []
    same_rest = {k: v for k, v in old.items() if k not in GROWABLE} == \
        {k: v for k, v in spec.items() if k not in GROWABLE}
    kept = all(spec["methods"].get(m) == entry for m, entry in old["methods"].items()) and \
        set(old["seeds"]) <= set(spec["seeds"])
    if not (same_rest and kept):
        changes = diff(old, spec)
        raise StudyError(f"{str(out)!r} holds a study with a different spec ({path}); changed: "
                         + "; ".join(changes[:10]) + ". A study may only add methods or seeds; use a new "
                         "--out, or restore the spec")
    added = [f"method {m}" for m in spec["methods"] if m not in old["methods"]]
    added += [f"seed {s}" for s in spec["seeds"] if s not in old["seeds"]]
    return True, added


# the code a training run depends on: a reused run trained by a commit that differs here is named
TRAINING_CODE = ("slac", "envs", "latent_adversary", "train.py")


def _code_changes_since(version: str) -> list[str] | None:
    """The training-code files that differ between commit ``version`` and this checkout's working tree
    (None where that cannot be told: an unknown version, one with uncommitted changes, no git)."""
    import subprocess

    if not version or version == "unknown" or "+" in version:
        return None
    try:
        result = subprocess.run(["git", "diff", "--name-only", version, "--", *TRAINING_CODE], cwd=grid.REPO,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.split() if result.returncode == 0 else None


REUSABLE_ARMS = ("source", "scratch", "finetune")  # training cells; a fine-tune only with its own source


def _reused_from(cell_dir: Path) -> Path | None:
    """The run a cell here was copied from (its done.json's ``reused_from``), None if it ran here."""
    try:
        origin = json.loads((cell_dir / cellmod.DONE).read_text()).get("reused_from")
    except (OSError, ValueError):
        return None
    return Path(origin) if origin else None


def reuse_runs(cells: list[grid.Cell], out: Path, others: list[Path], echo=print, dry_run: bool = False) -> list[str]:
    """Copy finished source, scratch and fine-tune runs of the studies ``others`` (the first that has a
    match) into this study's unstarted cells of the same arm, method, target and seed whose run would be
    the same: the run's config equals the one the cell's train.py resolves now (preset, config files,
    --set, env, seed, steps, and every default). A source run must hold a checkpoint (the fine-tunes,
    attacks and sweeps read it), its config read from there; a scratch run or a fine-tune is judged by
    its metrics and final evaluation alone, so its config.yaml serves where the checkpoint is gone (an
    exported study), and its final evaluation must have the spec's episodes and seed. A fine-tune is
    copied only from the study its source run here was copied from (now or by an earlier ``run``): two
    trainings of one source config are different agents. Training code changed since the commit that
    wrote the checkpoint is named (and kept in the copy's done.json), not refused: the config is the
    contract. Returns the ids of the cells copied (with ``dry_run``: that would be, copying nothing)."""
    others = [Path(o).resolve() for o in others]
    for other in others:
        if not (other / SPEC).exists():
            raise StudyError(f"--reuse {str(other)!r} holds no study (no {SPEC})")
        if other == out:
            raise StudyError("--reuse names this study's own --out")
    copied, here = [], []
    counts = {other: 0 for other in others}
    origin: dict[str, Path] = {}  # cell id -> the run it is (or, with dry_run, would be) copied from
    for c in cells:
        if c.arm not in REUSABLE_ARMS or cell_state(c, out) == "done" or (c.dir.exists() and any(c.dir.iterdir())):
            continue
        candidates, why, source_run = others, [], None
        if c.arm == "finetune":
            dep = c.deps[0]
            source_run = origin.get(dep) or _reused_from(out / dep)
            candidates = [o for o in others if source_run == o / dep]
            if not candidates:
                why.append(f"its source run here is a copy of {source_run}" if source_run else
                           "its source run is this study's own")
        for other in candidates:
            src = other / c.dir.relative_to(out)
            reason, version = _reusable(c, src, source_run)
            if reason is None:
                break
            why.append(f"{reason} in {other}")
        else:
            echo(f"reuse: {c.id}: " + "; ".join(why) + ": it trains here")
            here.append(c.id)
            continue
        origin[c.id] = src
        changed = _code_changes_since(version)
        code = (f"training code changed since {version}: {', '.join(changed)}" if changed else
                f"training code as at {version}" if changed is not None else
                f"trained by {version}: its code cannot be compared with this checkout")
        counts[other] += 1
        copied.append(c.id)
        if dry_run:
            echo(f"reuse: {c.id}: would be copied from {src} ({code})")
            continue
        _copy_run(c, src, version, changed)
        echo(f"reuse: {c.id}: copied from {src} ({code})")
    would = "would be " if dry_run else ""
    echo(f"reuse: {len(copied)} run(s) {would}copied ("
         + ", ".join(f"{n} from {other}" for other, n in counts.items()) + ")"
         + (f"; {len(here)} train here" if here else ""))
    return copied


def _reusable(c: grid.Cell, src: Path, source_run: Path | None = None) -> tuple[str | None, str]:
    """(None, the code version that trained it) if the finished run at ``src`` can be ``c``'s, else
    (why not, ""). A fine-tune's config is resolved from ``source_run``, the run its source here is a
    copy of (this study's own may not be copied yet)."""
    from latent_adversary.config import RobustConfig
    from slac import checkpoint, config, provenance
    from slac.errors import InputError
    from slac.run import RunRequest, new_run_config

    if not (src / cellmod.DONE).exists():
        return ("unfinished" if src.exists() else "absent"), ""
    try:
        checkpoint.resolve_path(src)  # the agent the later cells take (best.pt or latest.pt)
        state = checkpoint.load(src, latest=True)
    except InputError as e:
        if c.arm == "source" or not (src / "config.yaml").exists():
            return f"not reused, no usable checkpoint ({e})", ""
        trained_by = provenance.read(src)  # the code of the run's last start, where it recorded one
        state = {"config": yaml.safe_load((src / "config.yaml").read_text()),
                 "code_version": trained_by[-1].get("code_version", "unknown") if trained_by else "unknown"}
    request = dict(c.stages[0]["request"])
    if source_run is not None:
        request["checkpoint"] = str(source_run)
    try:
        cfg, _ = new_run_config(RunRequest(**request), RobustConfig)
    except InputError as e:
        return f"not reused, its source's config cannot be read ({e})", ""
    wanted = yaml.safe_load(yaml.safe_dump(config.to_dict(cfg), sort_keys=False))
    saved = yaml.safe_load(yaml.safe_dump(state["config"], sort_keys=False))
    if saved != wanted:
        return "not reused, its config differs: " + "; ".join(diff(saved, wanted)[:3]), ""
    for stage in c.stages[1:]:  # a scratch run's or fine-tune's final evaluation: the spec's episodes and seed
        argv = stage["argv"]
        wanted_eval = {"episodes": int(argv[argv.index("--episodes") + 1]), "seed": int(argv[argv.index("--seed") + 1])}
        try:
            made = json.loads((src / Path(stage["out"]).name).read_text())
        except (OSError, ValueError):
            return f"not reused, no readable {Path(stage['out']).name}", ""
        if {k: made.get(k) for k in wanted_eval} != wanted_eval:
            return f"not reused, its {Path(stage['out']).name} differs: {made.get('episodes')} episodes at " \
                   f"seed {made.get('seed')}, not {wanted_eval['episodes']} at {wanted_eval['seed']}", ""
    return None, state.get("code_version", "unknown")


def _copy_run(c: grid.Cell, src: Path, version: str, changed: list[str] | None) -> None:
    """Copy ``src`` into ``c``'s folder, whole or not at all, with a done.json saying where it came from."""
    import shutil

    if c.dir.exists():
        c.dir.rmdir()  # empty (checked by the caller)
    tmp = c.dir.with_name(f".{c.dir.name}.reuse-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(".lock", cellmod.DONE, cellmod.FAILED))
    done = json.loads((src / cellmod.DONE).read_text())
    cellmod.write_json(tmp / cellmod.DONE, {**done, "id": c.id, "reused_from": str(src),
                                            "reused": time.strftime("%Y-%m-%d %H:%M:%S"),
                                            "code_version": version, "code_changed_since": changed})
    os.sync()  # the copy on disk before the folder (with its done.json) takes the cell's place
    os.replace(tmp, c.dir)


def check_address(address: str | None) -> None:
    """A HOST:PORT must accept a connection before Ray is asked (ray.init would wait a long time)."""
    if address is None or address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise StudyError(f"--address must be auto or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise StudyError(f"Ray is unreachable at --address {address}: {e.strerror or e} (start it with "
                         "`ray start --head`)") from None


def init_ray(address: str | None):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # a local Ray's workers would SIGKILL their cells' processes when they exit; without that, a cell's
    # train.py gets SIGTERM from its dying worker instead (transfer.cell) and saves a checkpoint first
    os.environ.setdefault("RAY_kill_child_processes_on_worker_exit", "false")
    # Ray 2.60 turns on token auth and keeps the token in ~/.ray/auth_token; a driver joining a cluster
    # (`ray start --head`) must use token auth too, set before ray is imported (Ray reads the token itself)
    if address is not None and "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").exists():
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    try:
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False, object_store_memory=100 * 1024**2,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise StudyError(f"cannot connect to Ray at --address {address}: {str(e).splitlines()[0]}") from None
    return ray


def describe(cells: list[grid.Cell], study: Path) -> str:
    lines = [f"{len(cells)} cells:"]
    for c in cells:
        state = cell_state(c, study) if study.exists() else "pending"
        wait = f"  after {', '.join(c.deps)}" if c.deps else ""
        lines.append(f"  [{state:<7}] {c.id}{wait}")
        for s in c.stages:
            argv = s["new"] if s["kind"] == "train" else s["argv"]
            lines.append("      " + " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv)))
    return "\n".join(lines)


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def eta_seconds(left: list[grid.Cell], step_s: float | None, episode_s: float, slots: int,
                running_for: dict[str, float]) -> float | None:
    """Seconds until the cells in ``left`` are done: the larger of their work spread over ``slots``
    and their longest chain of dependencies (a fine-tune waits for its source). A training cell takes
    ``step_s`` per agent step it has left (:func:`_steps_done`; in flight if in ``running_for``); an
    evaluation cell ``episode_s`` per episode, less the time it has been running. None without a step time."""
    if step_s is None:
        return None
    left_ids = {c.id for c in left}

    def remaining(c: grid.Cell) -> float:
        if c.steps:
            return max(c.steps - _steps_done(c, c.id in running_for), 0) * step_s
        return max(c.episodes * episode_s - running_for.get(c.id, 0.0), 0.0)

    finish: dict[str, float] = {}
    for c in left:  # the grid lists every cell after the cells it depends on
        finish[c.id] = remaining(c) + max((finish[d] for d in c.deps if d in left_ids), default=0.0)
    total = sum(remaining(c) for c in left)
    return max(total / max(slots, 1), max(finish.values(), default=0.0))


def submission_order(pending: list[grid.Cell], baseline_method: str | None = None) -> list[grid.Cell]:
    """Cells that build on another (fine-tunes, sweeps, attacks) before new sources and scratch runs, each
    group in spec order: a started method's results are complete before the next method starts, so a study
    stopped half-way has whole rows to report. Among the runs that start from nothing, the baselines come
    first: the sources of ``baseline_method`` (the spec's first, by convention ``none``), then scratch, then
    the other methods' sources, so that a half-way study can already compare plain transfer with scratch."""
    def rank(c: grid.Cell) -> tuple[int, int]:
        if c.deps:
            return -len(c.deps), 0
        return 0, 0 if c.arm == "source" and c.method == baseline_method else 1 if c.arm == "scratch" else 2
    return sorted(pending, key=rank)


def run(spec: dict, out: Path, address: str | None = None, max_parallel: int | None = None,
        dry_run: bool = False, python: str = sys.executable, echo=print, reuse_from: list[Path] | None = None,
        device: str | None = None) -> int:
    out = Path(out).resolve()
    if max_parallel is not None and max_parallel < 1:
        raise StudyError(f"--max-parallel must be >= 1, got {max_parallel}")
    cells = grid.build(spec, out, python, device)
    if dry_run:
        if out.exists():  # what a run would say of the stored spec: refused, or what the new one adds
            _, added = check_spec_unchanged(out, spec)
            if added:
                echo(f"study {out} would grow: adds {', '.join(added)}")
        echo(describe(cells, out))
        reused = reuse_runs(cells, out, reuse_from, echo, dry_run=True) if reuse_from else []
        done = [c.id for c in cells if out.exists() and cell_state(c, out) == "done"]
        echo(grid.estimate(spec, [c for c in cells if c.id not in reused and c.id not in done]))
        if reused:
            echo(f"  (without the {len(reused)} cell(s) --reuse would copy)")
        if done:
            echo(f"  (without the {len(done)} finished cell(s); a cell part-way counts in full)")
        return 0
    check_out(out)
    runner_lock = hold_runner_lock(out)
    try:
        return _run(spec, out, cells, address, max_parallel, echo, reuse_from)
    finally:
        os.close(runner_lock)


def _run(spec: dict, out: Path, cells: list[grid.Cell], address: str | None, max_parallel: int | None,
         echo, reuse_from: list[Path] | None) -> int:
    existed, added = check_spec_unchanged(out, spec)
    check_address(address)
    by_id = {c.id: c for c in cells}
    running_elsewhere = [c.id for c in cells if cell_state(c, out) == "running"]
    if running_elsewhere:
        raise StudyError(f"{len(running_elsewhere)} cell(s) of {out} are running in another study process "
                         f"(e.g. {running_elsewhere[0]}); wait for it or stop it first")
    if added:
        echo(f"study {out} grows: adds {', '.join(added)}")
    if added or not existed:
        (out / SPEC).write_text(yaml.safe_dump(spec, sort_keys=True))
    if reuse_from:
        reuse_runs(cells, out, reuse_from, echo)
    todo = [c for c in cells if cell_state(c, out) != "done"]
    already = len(cells) - len(todo)
    echo(f"study {out}: {len(cells)} cells, {already} done, {len(todo)} to run")
    if not todo:
        return 0
    ray = init_ray(address)
    # SIGTERM (`study.py stop`, kill) ends the study as Ctrl-C does: each running cell's worker is ended,
    # its command gets SIGTERM (transfer.cell), and train.py saves a checkpoint before the runner exits
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    in_flight: dict[object, str] = {}  # Ray ref -> cell id
    try:
        import cloudpickle

        cloudpickle.register_pickle_by_value(cellmod)  # workers need no import path to this repository
        task = ray.remote(num_cpus=1, max_retries=0)(cellmod.execute)
        slots = int(ray.cluster_resources().get("CPU", 1))
        limit = min(max_parallel or 10**9, max(slots, 1))
        echo(f"ray: {slots} CPU(s) in the cluster; up to {limit} cells at a time")
        # the step time `status` uses: the study's finished training cells' (earlier sessions' included),
        # read again as cells finish; the preset's before the first
        step_s, step_source = grid.step_time(spec, measured_step_seconds(cells))
        first_guess = eta_seconds(todo, step_s, 0.0, limit, {})
        if first_guess is not None:
            echo(f"ETA {_fmt(first_guess)} at {step_s:.3g} s per agent step ({step_source}; evaluations not "
                 "counted until this session has finished one)")
        refs: dict[str, object] = {}  # submitted this session
        results: dict[str, dict] = {}
        started: dict[str, float] = {}
        eval_s, episodes = 0.0, 0  # of the evaluation cells finished here: the ETA's rate for those left
        pending = list(todo)
        failed = 0
        t0 = time.monotonic()

        def dep_ok(dep: str) -> bool | None:
            """True: done; False: failed; None: not yet known."""
            if dep in results:
                return results[dep]["ok"]
            if dep not in refs:
                return cell_state(by_id[dep], out) == "done" or None
            return None

        while pending or in_flight:
            progressed = True
            while progressed and len(in_flight) < (max_parallel or 10**9):
                progressed = False
                for c in submission_order(pending, next(iter(spec["methods"]))):
                    states = [dep_ok(d) for d in c.deps]
                    if False in states:  # a dependency failed: not this session
                        pending.remove(c)
                        results[c.id] = {"id": c.id, "ok": False, "skipped": True}
                        progressed = True
                        continue
                    # without --max-parallel, Ray holds a cell until its source's ObjectRef resolves
                    waiting_ok = max_parallel is None and all(
                        s or d in refs for s, d in zip(states, c.deps, strict=True))
                    if all(states) or waiting_ok:
                        args = [refs[d] for d in c.deps if d in refs]
                        ref = task.remote(c.as_task(out), *args)
                        refs[c.id], in_flight[ref] = ref, c.id
                        started[c.id] = time.monotonic()
                        pending.remove(c)
                        progressed = True
                        break
            if not in_flight:
                break
            ready = []
            while not ready:  # in short waits, so that a stop signal is handled at once
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            cid = in_flight.pop(ready[0])
            try:
                res = ray.get(ready[0])
            except Exception as e:  # the worker died
                res = {"id": cid, "ok": False, "error": f"Ray task failed: {str(e).splitlines()[0]}"}
            results[cid] = res
            c = by_id[cid]
            if res.get("ok") and not res.get("skipped") and not c.steps and c.episodes > 0:
                eval_s += res.get("wall_s", time.monotonic() - started[cid])
                episodes += c.episodes
            if not res.get("ok") and not res.get("skipped"):
                failed += 1
            done = already + sum(1 for r in results.values() if r.get("ok"))
            left = [x for x in todo if x.id not in results]
            if c.steps and res.get("ok"):
                step_s, _ = grid.step_time(spec, measured_step_seconds(cells))
            guess = eta_seconds(left, step_s, eval_s / episodes if episodes else 0.0, limit,
                                {cid: time.monotonic() - started[cid] for cid in in_flight.values()})
            eta = "ETA unknown" if guess is None else f"ETA {_fmt(guess)}"
            what = "done" if res.get("ok") else ("skipped" if res.get("skipped") else "FAILED")
            detail = f": {res['error']}" if res.get("error") else ""
            active = sum(cell_state(by_id[i], out) == "running" for i in in_flight.values())
            # counted as this cell finishes: its freed slot is filled after this line
            echo(f"[{done}/{len(cells)} done, {active} still running, {len(in_flight) - active} queued, "
                 f"{failed} failed, {_fmt(time.monotonic() - t0)} elapsed, {eta}] {what} {cid}{detail}")
        not_done = [c for c in cells if cell_state(c, out) != "done"]
        echo(f"finished: {len(cells) - len(not_done)}/{len(cells)} cells done"
             + (f"; {len(not_done)} not done (failed or waiting for a failed cell): `study.py status {out}`, "
                "then `study.py run` again retries them" if not_done else ""))
        return 0 if not not_done else 1
    except KeyboardInterrupt:
        running = list(in_flight.values())
        echo(f"stopping: {len(running)} cell(s) were running; their training runs save a checkpoint")
        for ref in in_flight:  # ends each cell's worker; its command gets SIGTERM (transfer.cell)
            ray.cancel(ref, force=True)
        for cid in running:  # Ray's shutdown ends the workers: first each train.py saves and lets go of its run
            for stage in by_id[cid].stages:
                if stage["kind"] == "train":
                    cellmod.wait_unlocked(Path(stage["run_dir"]) / ".lock", cellmod.LOCK_WAIT_S)
        raise
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, previous)


def status(out: Path) -> str:
    from transfer.spec import check_spec

    out = Path(out).resolve()
    if not (out / SPEC).exists():
        raise StudyError(f"{str(out)!r} holds no study (no {SPEC}); start one with study.py run SPEC --out DIR")
    spec = check_spec(yaml.safe_load((out / SPEC).read_text()))
    cells = grid.build(spec, out, sys.executable)
    counts: dict[str, dict[str, int]] = {}
    failures, running, steps_left = [], [], 0
    for c in cells:
        s = cell_state(c, out)
        counts.setdefault(c.arm, {"done": 0, "running": 0, "pending": 0, "failed": 0})[s] += 1
        done_steps = _steps_done(c, s == "running") if s != "done" and c.steps else 0
        if s != "done":
            steps_left += max(c.steps - done_steps, 0)
        if s == "running" and c.steps:
            running.append(f"  {c.id}: step {done_steps} of {c.steps}")
        if s == "failed":
            f = json.loads((c.dir / cellmod.FAILED).read_text())
            failures.append(f"  {c.id}: exit {f['exit_code']}: {f['last_error']}  (log: {f['log']})")
    lock = out / RUNNER_LOCK
    runner = "no study process is running it" if cellmod.wait_unlocked(lock) else \
        f"run by the study process {lock.read_text().strip()} (host, pid; `study.py stop {out}` ends it)"
    lines = [f"study {out}: {runner}", f"  {'arm':<10} {'done':>5} {'running':>8} {'pending':>8} {'failed':>7}"]
    for arm, n in counts.items():
        lines.append(f"  {arm:<10} {n['done']:>5} {n['running']:>8} {n['pending']:>8} {n['failed']:>7}")
    total = {k: sum(n[k] for n in counts.values()) for k in ("done", "running", "pending", "failed")}
    lines.append(f"  {'total':<10} {total['done']:>5} {total['running']:>8} {total['pending']:>8} {total['failed']:>7}")
    lines.append(grid.remaining(spec, steps_left, os.cpu_count() or 1, measured_step_seconds(cells)))
    if running:
        lines += ["running training cells (last step in their metrics.jsonl):", *running]
    if failures:
        lines += ["failed cells (last stderr line):", *failures]
    return "\n".join(lines)


def measured_step_seconds(cells: list[grid.Cell]) -> tuple[float, int] | None:
    """Seconds per agent step of the training cells this study finished itself (each done.json's train.py
    wall time over the steps it trained after any resume; runs copied from another study are left out),
    and how many cells gave it; None before the first."""
    seconds, steps, n = 0.0, 0, 0
    for c in cells:
        try:
            done = json.loads((c.dir / cellmod.DONE).read_text()) if c.steps else None
        except (OSError, ValueError):
            continue
        if not done or done.get("reused_from"):
            continue
        wall = sum(cmd["wall_s"] for cmd in done["commands"] if Path(cmd["argv"][1]).name == "train.py")
        trained = c.steps - (done.get("resumed_from_step") or 0)
        if wall > 0 and trained > 0:
            seconds, steps, n = seconds + wall, steps + trained, n + 1
    return (seconds / steps, n) if steps else None


def _steps_done(c: grid.Cell, running: bool) -> int:
    """The agent steps a training cell has behind it: while it runs (or is in flight), its last metrics
    record; else its latest checkpoint's step, where a resume continues (cutting the records after it;
    0 without one, as for a study copied back from its export, which holds metrics but no checkpoints)."""
    return _last_step(c.dir / "metrics.jsonl") if running else cellmod.checkpoint_step(c.dir) or 0


def _last_step(metrics: Path) -> int:
    """The step of a run's last metrics record (0 before the first); a line being written is skipped."""
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0
