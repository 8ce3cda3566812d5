"""Turning command-line choices into a configured Trainer (kept out of train.py so tests can call it)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import envs
from slac import checkpoint, config
from slac.agent_inputs import CleanInputs
from slac.errors import InputError, unknown
from slac.rundir import RunLock, check_new_run
from slac.trainer import InputsFactory, Trainer


@dataclass
class RunRequest:
    phase: str | None = None  # None: source (a new run) or the saved phase (--resume)
    env: str | None = None
    shift: str | None = None
    checkpoint: str | None = None
    preset: str | None = None
    config_files: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    seed: int | None = None
    steps: int | None = None
    device: str | None = None
    out: str | None = None
    resume: str | None = None
    overwrite: bool = False  # a new run may delete an earlier run's files in --out


def env_for(request: RunRequest) -> str:
    """The env of this phase: --env, or the source/target side of --shift."""
    if (request.env is None) == (request.shift is None):
        raise InputError("give exactly one of --env NAME or --shift NAME "
                         "(list them with: python -m envs --list)")
    if request.shift is not None:
        if request.shift not in envs.SHIFTS:
            raise unknown("shift", request.shift, envs.SHIFTS)
        shift = envs.SHIFTS[request.shift]
        return shift.source if request.phase == "source" else shift.target
    if not envs.known(request.env):
        raise unknown("env", request.env, [*envs.names(), envs.GYM_HINT])
    return request.env


# What a resumed run may change: how it runs, not what it computes (and --steps, to extend it).
RESUME_SETTABLE = ("train.threads",)


def _check_resume_request(request: RunRequest) -> None:
    """A resumed run keeps its config: options that would change it are errors, not ignored."""
    fixed = {"--phase": request.phase, "--env": request.env, "--shift": request.shift,
             "--checkpoint": request.checkpoint,
             "--preset": request.preset, "--config": request.config_files or None, "--seed": request.seed,
             "--device": request.device, "--out": request.out, "--overwrite": request.overwrite or None}
    given = [flag for flag, value in fixed.items() if value is not None]
    if given:
        raise InputError(f"--resume continues a run with its saved config; {', '.join(given)} cannot be "
                         f"given with it (only --steps and --set {'|'.join(RESUME_SETTABLE)}=...)")
    for item in request.sets:
        key, _ = config.split_set(item)
        if key not in RESUME_SETTABLE:
            raise InputError(f"--set {key} cannot change on --resume (it would change the run); "
                             f"settable on --resume: {', '.join(RESUME_SETTABLE)}")


def make_trainer(request: RunRequest, progress: bool = True, config_cls: type[config.Config] = config.Config,
                 inputs: InputsFactory = CleanInputs) -> Trainer:
    """The Trainer a request asks for: a new source or target run, or a resumed one. ``config_cls`` is
    the config the run resolves into (one that extends ``Config`` adds its sections) and ``inputs``
    what the learners see of each batch (``slac.agent_inputs``)."""
    if request.resume:
        _check_resume_request(request)
        run_dir = Path(request.resume)
        if not run_dir.is_dir():
            raise InputError(f"--resume {request.resume!r} is not a run directory (give the --out of the run)")
        agent = run_dir / checkpoint.AGENT
        if agent.is_file() and checkpoint.resolve_path(run_dir, latest=True) == agent:
            checkpoint.check_resumable(checkpoint.load(agent))  # an exported agent: refused before a lock file
        lock = RunLock(run_dir)  # before reading: no other run may be writing it
        return _with_lock(lock, lambda: _resumed_trainer(request, run_dir, lock, progress, config_cls, inputs))

    return _new_trainer(request, progress, config_cls, inputs)


def _with_lock(lock: RunLock, build):
    """``build()`` with ``lock`` held; released if building fails."""
    try:
        return build()
    except BaseException:
        lock.release()
        raise


def _resumed_trainer(request: RunRequest, run_dir: Path, lock: RunLock, progress: bool,
                     config_cls: type[config.Config], inputs: InputsFactory) -> Trainer:
    state = checkpoint.load(run_dir, latest=True)
    cfg = config.resolve(sets=request.sets, base=state["config"], cls=config_cls)  # the saved config, --set on top
    if request.steps is not None:  # extend a run (or shorten one not yet there)
        done = state["counters"]["step"]
        if request.steps < max(done, 1):
            raise InputError(f"--steps {request.steps} is below the {done} steps the run has done; "
                             f"give --steps >= {max(done, 1)}")
        cfg.train.steps = request.steps
    return Trainer(cfg, run_dir, state["phase"], resume_from=state, progress=progress, inputs=inputs, lock=lock)


def new_run_config(request: RunRequest, config_cls: type[config.Config] = config.Config
                   ) -> tuple[config.Config, dict | None]:
    """The config a new run resolves (and, for --phase target, the source checkpoint it starts from),
    checked, with nothing created; also how study.py tells whether an earlier run is the one asked for."""
    request = replace(request, phase=request.phase or "source")  # a new run: source by default
    if request.phase not in config.PHASES:
        raise unknown("phase", request.phase, config.PHASES)
    env_name = env_for(request)
    init_state = None
    base: dict = {}
    if request.phase == "target":
        if request.checkpoint is None:
            raise InputError("--phase target needs --checkpoint RUN_DIR_OR_FILE (a source run to fine-tune)")
        init_state = checkpoint.load(request.checkpoint)
        base = init_state["config"]  # same model sizes and env overrides as the source run
        # source-phase tools (e.g. an adversary) start from their defaults: set them again to keep them
        base = {**base, **{section: {} for section in config_cls.SOURCE_ONLY_SECTIONS}}
    elif request.checkpoint is not None:
        raise InputError("--checkpoint is for --phase target (or use --resume DIR to continue a run)")
    sets = list(request.sets) + [f"env={env_name}"]
    if request.seed is not None:
        sets.append(f"seed={request.seed}")
    if request.steps is not None:
        sets.append(f"train.steps={request.steps}")
    if request.device is not None:
        sets.append(f"device={request.device}")
    return config.resolve(request.preset, request.config_files, sets, base=base, cls=config_cls), init_state


def _new_trainer(request: RunRequest, progress: bool, config_cls: type[config.Config],
                 inputs: InputsFactory) -> Trainer:
    if request.out is None:
        raise InputError("--out DIR is required (the run directory for config, checkpoints and logs)")
    if request.out.strip() in ("", "."):
        raise InputError(f"--out {request.out!r} is empty or the current directory; give a directory for the run "
                         "(it is created if missing)")
    out = Path(request.out)
    cfg, init_state = new_run_config(request, config_cls)
    phase = request.phase or "source"
    lock = RunLock(out)  # everything checked: now the directory is created and held

    def build() -> Trainer:
        check_new_run(out, request.overwrite)
        return Trainer(cfg, out, phase, init_from=init_state, progress=progress, inputs=inputs, lock=lock)

    return _with_lock(lock, build)


def env_name_for(env: str | None, shift: str | None, side: str) -> str | None:
    """--env NAME, or the source/target side of --shift NAME; None means the checkpoint's own env."""
    if env is None and shift is None:
        return None
    if side not in config.PHASES:
        raise unknown("shift side", side, config.PHASES)
    return env_for(RunRequest(phase=side, env=env, shift=shift))
