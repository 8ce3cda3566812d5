"""The cells of a study: what each one runs, where, and what it waits for; and a compute estimate.

Layout under the study's --out DIR (every training cell is a normal train.py run directory):

    DIR/spec.yaml                              the spec the study runs (a changed spec is refused)
    DIR/source/METHOD/sSEED/                   train.py --phase source --env SOURCE
    DIR/zero_shot/METHOD/TARGET/sSEED/         evaluate.py of the source run in the target: zero_shot.json
    DIR/finetune/METHOD/TARGET/sSEED/          train.py --phase target, then final_eval.json (a fine-tuning
                                               variant, ``source: OTHER``, starts from OTHER's source runs
                                               and has no source, zero-shot, attack or sweep cells)
    DIR/scratch/TARGET/sSEED/                  train.py --phase source --env <target env>, then final_eval.json
    DIR/attack/METHOD/ATTACK/sSEED/            evaluate.py --attack --epsilon-sweep: sweep.json
    DIR/env_sweep/METHOD/PARAM/sSEED/          evaluate.py --env-sweep PARAM=...: sweep.json (+ PNG)
    DIR/logs/<cell>.<stage>.{out,err}          each command's output
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from slac import rundir
from transfer.spec import REPO, finetune_sets, source_method, source_methods

ARMS = ("source", "zero_shot", "finetune", "scratch", "attack", "env_sweep")
# seconds per agent step of a training run on one quiet core, by preset (None: not measured)
STEP_SECONDS = {"cpu-small": 0.229,   # docs/results.md: ~2.6 h per 20k-step run with native bf16
                "cpu-fast": 0.125,    # measured: 24k-step runs (pre-training, evaluations) in 50 min, two side by side
                "smoke": 0.042,       # measured: toy-reach, 400 vs 100 steps (23.2 s vs 10.7 s), busy 2-core machine
                "paper": None}


@dataclass
class Cell:
    id: str                 # e.g. "finetune/none/toy-hazard-colour/s0"
    arm: str
    dir: Path               # the cell's folder (for training cells: the run directory)
    stages: list[dict]      # what it runs, in order (transfer.cell)
    deps: list[str] = field(default_factory=list)
    steps: int = 0          # agent steps it trains
    episodes: int = 0       # evaluation episodes it runs
    method: str | None = None
    target: str | None = None
    seed: int | None = None

    def as_task(self, study_dir: Path) -> dict:
        return {"id": self.id, "arm": self.arm, "dir": str(self.dir), "stages": self.stages,
                "study_dir": str(study_dir), "cwd": str(REPO)}


# train.py's options for the fields of a run request (slac.run.RunRequest), in the order they are written
_FLAGS = {"phase": "--phase", "env": "--env", "shift": "--shift", "checkpoint": "--checkpoint",
          "preset": "--preset", "config_files": "--config", "seed": "--seed", "steps": "--steps", "device": "--device"}


def _train(python: str, request: dict, run_dir: Path) -> dict:
    """A training stage: ``request`` holds slac.run.RunRequest's fields (how --reuse checks a run)."""
    args = []
    for key, flag in _FLAGS.items():
        values = request.get(key)
        for v in values if isinstance(values, list) else [] if values is None else [values]:
            args += [flag, str(v)]
    if request.get("sets"):
        args += ["--set", *request["sets"]]
    return {"kind": "train", "run_dir": str(run_dir), "request": request,
            "new": [python, str(REPO / "train.py"), *args, "--out", str(run_dir), "--no-progress", "--overwrite"],
            "resume": [python, str(REPO / "train.py"), "--resume", str(run_dir), "--no-progress"]}


def _eval(python: str, args: list[str], out: Path, name: str) -> dict:
    return {"kind": "eval", "name": name, "out": str(out),
            "argv": [python, str(REPO / "evaluate.py"), *args, "--out", str(out)]}


def _config_request(spec: dict, method: dict | None) -> dict:
    """The preset, config files and --set items of the spec and a method's entry."""
    return {"preset": spec.get("preset") or None,
            "config_files": spec["config"] + (method["config"] if method else []),
            "sets": spec["set"] + (method["set"] if method else [])}


def build(spec: dict, out: Path, python: str, device: str | None = None) -> list[Cell]:
    """All cells in dependency order (a cell comes after the cells it waits for). ``device`` (auto, cpu
    or cuda; None: each command's default, auto) goes to every train.py and evaluate.py command."""
    import envs

    out = Path(out).resolve()
    cells: list[Cell] = []
    episodes = spec["eval_episodes"]
    on = {"device": device} if device else {}  # a new run's device is part of its config (a resume keeps it)
    ev = ["--episodes", str(episodes), "--seed", str(spec["eval_seed"])] + (["--device", device] if device else [])
    for method in source_methods(spec):
        for seed in spec["seeds"]:
            d = out / "source" / method / f"s{seed}"
            request = {"phase": "source", "env": spec["source_env"], **_config_request(spec, spec["methods"][method]),
                       "seed": seed, "steps": spec["source_steps"], **on}
            cells.append(Cell(f"source/{method}/s{seed}", "source", d, [_train(python, request, d)], [],
                              spec["source_steps"], 0, method, None, seed))
    for method in spec["methods"]:
        trained = source_method(spec, method)
        own = trained == method  # a fine-tuning variant evaluates nothing its source method does not
        for seed in spec["seeds"]:
            src = out / "source" / trained / f"s{seed}"
            dep = [f"source/{trained}/s{seed}"]
            for t in spec["targets"]:
                d = out / "zero_shot" / method / t / f"s{seed}"
                if own:
                    cells.append(Cell(f"zero_shot/{method}/{t}/s{seed}", "zero_shot", d,
                                      [_eval(python, ["--checkpoint", str(src), "--shift", t, "--side", "target",
                                                      *ev], d / "zero_shot.json", "zero_shot")],
                                      dep, 0, episodes, method, t, seed))
                d = out / "finetune" / method / t / f"s{seed}"
                # the config comes from the source checkpoint (its source-only sections reset), with the
                # study's finetune_set and then the method's on top
                request = {"phase": "target", "shift": t, "checkpoint": str(src), "steps": spec["target_steps"],
                           "sets": finetune_sets(spec, method), **on}
                cells.append(Cell(f"finetune/{method}/{t}/s{seed}", "finetune", d,
                                  [_train(python, request, d),
                                   _eval(python, ["--checkpoint", str(d), "--shift", t, "--side", "target", *ev],
                                         d / "final_eval.json", "final_eval")],
                                  dep, spec["target_steps"], episodes, method, t, seed))
            if not own:
                continue
            for a in spec["attacks"]:
                d = out / "attack" / method / a["name"] / f"s{seed}"
                eps = ",".join(f"{e:g}" for e in a["epsilons"])
                args = ["--checkpoint", str(src), "--attack", a["name"], "--epsilon-sweep", eps,
                        "--attack-steps", str(a["steps"]), *ev]
                cells.append(Cell(f"attack/{method}/{a['name']}/s{seed}", "attack", d,
                                  [_eval(python, args, d / "sweep.json", "sweep")], dep, 0,
                                  episodes * len(a["epsilons"]), method, None, seed))
            for sw in spec.get("env_sweeps") or []:
                d = out / "env_sweep" / method / sw["key"] / f"s{seed}"
                values = ",".join(f"{v:g}" for v in sw["values"])
                args = ["--checkpoint", str(src), "--env-sweep", f"{sw['key']}={values}", *ev]
                cells.append(Cell(f"env_sweep/{method}/{sw['key']}/s{seed}", "env_sweep", d,
                                  [_eval(python, args, d / "sweep.json", "sweep")], dep, 0,
                                  episodes * len(sw["values"]), method, None, seed))
    if spec["scratch"]["enabled"]:
        steps = spec["scratch"]["steps"]
        for t in spec["targets"]:
            target_env = envs.SHIFTS[t].target
            for seed in spec["seeds"]:
                d = out / "scratch" / t / f"s{seed}"
                request = {"phase": "source", "env": target_env, **_config_request(spec, None),
                           "seed": seed, "steps": steps, **on}
                request["sets"] = request["sets"] + spec["scratch"].get("set", [])
                # judged by its last checkpoint, as a fine-tune is, even where the preset keeps a best.pt:
                # choosing among a target run's checkpoints takes evaluation episodes in the target,
                # which its lifetime cost does not count
                last = rundir.latest_path(d)
                cells.append(Cell(f"scratch/{t}/s{seed}", "scratch", d,
                                  [_train(python, request, d),
                                   _eval(python, ["--checkpoint", str(last), "--env", target_env, *ev],
                                         d / "final_eval.json", "final_eval")],
                                  [], steps, episodes, None, t, seed))
    return cells


def step_time(spec: dict, measured: tuple[float, int] | None) -> tuple[float | None, str]:
    """Seconds per agent step and where the figure comes from: ``measured`` (seconds per step, from how
    many of the study's finished training cells) where given, else the preset's (None if it has none)."""
    if measured is not None:
        return measured[0], f"measured over {measured[1]} finished training cell(s) of this study"
    return STEP_SECONDS.get(spec.get("preset")), f"preset {spec.get('preset')}"


def remaining(spec: dict, steps: int, cores: int, measured: tuple[float, int] | None = None) -> str:
    """One line: ``steps`` agent steps of training left, in core-hours and hours on ``cores`` cores, at
    ``measured`` (seconds per agent step, from how many of the study's finished training cells) where
    given, else at the preset's step time."""
    step_s, source = step_time(spec, measured)
    if step_s is None:
        return f"remaining: {steps:,} agent steps of training (no measured step time for preset {spec.get('preset')!r})"
    hours = steps * step_s / 3600
    return (f"remaining: {steps:,} agent steps of training = {hours:.3g} core-hours at {step_s:.3g} s per agent step "
            f"({source}), about {hours / max(cores, 1):.3g} h on {cores} cores; evaluations extra")


def estimate(spec: dict, cells: list[Cell]) -> str:
    """Agent steps per arm and core-hours at the preset's measured step time."""
    per = spec.get("preset")
    step_s = STEP_SECONDS.get(per) if per else None
    lines = ["compute estimate (training agent steps; evaluation episodes and start-up not counted in core-hours):"]
    total = 0
    for arm in ARMS:
        mine = [c for c in cells if c.arm == arm]
        if not mine:
            continue
        steps = sum(c.steps for c in mine)
        eps = sum(c.episodes for c in mine)
        total += steps
        hours = f"{steps * step_s / 3600:.3g} core-h" if step_s is not None else "core-h unknown"
        lines.append(f"  {arm:<10} {len(mine):>3} cells  {steps:>10,} agent steps  {eps:>5} eval episodes  {hours}")
    if step_s is None:
        lines.append(f"  total {total:,} agent steps; no measured step time for preset {per!r}: core-hours unknown")
    else:
        lines.append(f"  total {total:,} agent steps = {total * step_s / 3600:.3g} core-hours at {step_s} s per "
                     f"agent step (preset {per}, one quiet core; extra config overlays such as adversarial "
                     "training make steps slower)")
    return "\n".join(lines)
