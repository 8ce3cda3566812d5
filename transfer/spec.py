"""A study spec: what to run, read from YAML and checked before anything starts.

    preset: smoke                  # shared by every cell (plus optional config: [FILES], set: [K=V])
    source_env: toy-reach
    targets: [toy-hazard-colour]   # shift names whose source is source_env
    methods:                       # named source-training variants: a config overlay and/or --set list
      none: {}
      latent: {config: [configs/adv-latent.yaml]}
      none-pretrain: {source: none, finetune_set: [train.initial_learning_steps=400]}
                                   # a fine-tuning variant: its fine-tunes start from none's source runs,
                                   # with its finetune_set after the study's (no source cells of its own)
    seeds: [0, 1]
    source_steps: 200
    target_steps: 200              # fine-tuning steps in each target
    finetune_set: [train.initial_learning_steps=0]   # optional: --set overrides of the fine-tune runs only
    scratch: {enabled: true, steps: 200}   # train from scratch in the target env (steps: target_steps;
                                           # optional set: [K=V]: --set overrides of the scratch runs only)
    eval_episodes: 2               # zero-shot and final evaluations (evaluate.py --episodes)
    eval_seed: 100                 # not a run seed where sources keep best.pt (their own evaluations chose it)
    baseline_return: {toy-hazard-colour: 0.0}   # optional: a do-nothing return per target
    attacks: [{name: latent-mc, epsilons: [0, 0.5], steps: 3}]   # optional: on the source agents
    env_sweeps: [{key: pole_mass, values: [0.1, 0.2, 0.4]}]       # optional: robustness curves of the final
                                                                  # source checkpoints (evaluate.py --env-sweep)

``targets`` may be empty for a source-only screen (source cells, attacks and env sweeps only).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
KEYS = {"preset", "config", "set", "source_env", "targets", "methods", "seeds", "source_steps", "target_steps",
        "scratch", "eval_episodes", "eval_seed", "baseline_return", "attacks", "env_sweeps", "finetune_set", "name",
        "description"}
METHOD_KEYS = {"config", "set", "source", "finetune_set"}
METHOD_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class StudyError(ValueError):
    """Bad study input: printed as ``error: ...`` and exit status 2, before anything starts."""


def resolve_path(path: str, base: Path | None = None) -> Path:
    """A config file: as given (relative to the current directory), else relative to the spec's folder,
    else to the repository root."""
    for root in (Path.cwd(), base, REPO):
        if root is None:
            continue
        p = (root / path) if not Path(path).is_absolute() else Path(path)
        if p.is_file():
            return p.resolve()
    raise StudyError(f"config file {path!r} not found (looked in the current directory"
                     f"{', ' + str(base) if base else ''} and {REPO})")


def _int(spec: dict, key: str, minimum: int, default=None) -> int:
    value = spec.get(key, default)
    if value is None:
        raise StudyError(f"spec: {key} is required")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StudyError(f"spec: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _list_of_str(value, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StudyError(f"spec: {what} must be a string or a list of strings, got {value!r}")
    return list(value)


def load_spec(path: str | Path) -> dict:
    """Read and check a spec file; returns the normalised spec (config paths made absolute)."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"spec file {str(path)!r} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise StudyError(f"spec file {str(path)!r} is not valid YAML: {e}") from None
    return check_spec(raw, base=path.resolve().parent)


def check_spec(raw, base: Path | None = None) -> dict:
    """Every check that needs no Ray: names, shifts, methods' configs (resolved as train.py would)."""
    import envs
    from slac import config
    from slac.errors import InputError

    if not isinstance(raw, dict):
        raise StudyError("spec: the file must hold a mapping (preset:, source_env:, targets:, methods:, ...)")
    extra = sorted(set(raw) - KEYS)
    if extra:
        raise StudyError(f"spec: unknown key(s) {', '.join(extra)}; valid: {', '.join(sorted(KEYS))}")
    spec = copy.deepcopy(raw)
    preset = spec.get("preset")
    if preset is not None and preset not in config.presets():
        raise StudyError(f"spec: unknown preset {preset!r}; valid: {', '.join(config.presets())}")
    spec["config"] = [str(resolve_path(f, base)) for f in _list_of_str(spec.get("config"), "config")]
    spec["set"] = _list_of_str(spec.get("set"), "set")

    source = spec.get("source_env")
    if source not in envs.names():
        raise StudyError(f"spec: unknown source_env {source!r}; valid: {', '.join(sorted(envs.names()))}")
    targets = _list_of_str(spec.get("targets"), "targets")
    for t in targets:
        if t not in envs.SHIFTS:
            raise StudyError(f"spec: unknown shift {t!r} in targets; valid: {', '.join(sorted(envs.SHIFTS))}")
        if envs.SHIFTS[t].source != source:
            mine = sorted(n for n, s in envs.SHIFTS.items() if s.source == source)
            raise StudyError(f"spec: shift {t!r} starts from {envs.SHIFTS[t].source!r}, not the spec's source_env "
                             f"{source!r}; shifts from {source!r}: {', '.join(mine) or 'none'}")
    if len(set(targets)) != len(targets):
        raise StudyError(f"spec: targets lists a shift twice: {targets}")
    spec["targets"] = targets

    methods = spec.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise StudyError("spec: methods must be a non-empty mapping, e.g. {none: {}, latent: {config: "
                         "[configs/adv-latent.yaml]}}")
    norm = {}
    for name, m in methods.items():
        if not isinstance(name, str) or not name or set(name) - METHOD_NAME_CHARS:
            raise StudyError(f"spec: method name {name!r} must be letters, digits, '-', '_' or '.'")
        m = m or {}
        if isinstance(m, str):  # a bare config path
            m = {"config": [m]}
        if not isinstance(m, dict) or set(m) - METHOD_KEYS:
            raise StudyError(f"spec: method {name!r} must be a mapping with config: [FILES] and/or set: [K=V] (a "
                             "source-training method), or source: METHOD (a fine-tuning variant of that method's "
                             "source runs), each with an optional finetune_set: [K=V]")
        try:
            files = [str(resolve_path(f, base)) for f in _list_of_str(m.get("config"), f"methods.{name}.config")]
        except StudyError as e:
            raise StudyError(f"spec: unknown method config for method {name!r}: {e}") from None
        norm[name] = {"config": files, "set": _list_of_str(m.get("set"), f"methods.{name}.set")}
        own_finetune = _list_of_str(m.get("finetune_set"), f"methods.{name}.finetune_set")
        if own_finetune:  # the optional keys only where given, so that stored specs made before them match
            norm[name]["finetune_set"] = own_finetune
        if "source" in m:
            norm[name]["source"] = m["source"]
    for name, m in norm.items():
        if "source" not in m:
            continue
        owners = sorted(n for n, o in norm.items() if "source" not in o)
        if m["source"] not in owners:
            raise StudyError(f"spec: method {name!r}: source {m['source']!r} is not a method that trains its own "
                             f"source runs; valid: {', '.join(owners) or 'none'}")
        if m["config"] or m["set"]:
            raise StudyError(f"spec: method {name!r} fine-tunes {m['source']!r}'s source runs: it takes no config "
                             "or set of its own (they would change a source it does not train); give finetune_set")
        if not targets:
            raise StudyError(f"spec: method {name!r} is a fine-tuning variant, and targets is empty")
    spec["methods"] = norm

    seeds = spec.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        raise StudyError("spec: seeds must be a non-empty list of integers, e.g. [0, 1]")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise StudyError(f"spec: seeds must be distinct integers in [0, 2**32), got {seeds!r}")
    spec["source_steps"] = _int(spec, "source_steps", 1)
    spec["target_steps"] = _int(spec, "target_steps", 1) if targets else 0  # unused by a source-only screen
    finetune_set = _list_of_str(spec.pop("finetune_set", None), "finetune_set")
    if finetune_set:  # absent when empty, so the specs stored by studies made before it still match
        spec["finetune_set"] = finetune_set
    scratch = spec.get("scratch", {"enabled": True})
    if isinstance(scratch, bool):
        scratch = {"enabled": scratch}
    if not isinstance(scratch, dict) or set(scratch) - {"enabled", "steps", "set"}:
        raise StudyError("spec: scratch must be true/false or {enabled: BOOL, steps: N, set: [K=V, ...]}")
    scratch_set = _list_of_str(scratch.get("set"), "scratch.set")
    scratch = {"enabled": bool(scratch.get("enabled", True)) and bool(targets),
               "steps": _int(scratch, "steps", 1, default=spec["target_steps"] or 1)}
    if scratch_set:  # absent when empty, as finetune_set
        scratch["set"] = scratch_set
    spec["scratch"] = scratch
    spec["eval_episodes"] = _int(spec, "eval_episodes", 1, default=10)
    spec["eval_seed"] = _int(spec, "eval_seed", 0, default=0)

    baseline = spec.get("baseline_return") or {}
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        baseline = {t: float(baseline) for t in targets}
    if not isinstance(baseline, dict) or set(baseline) - set(targets) or \
            not all(isinstance(v, (int, float)) and math.isfinite(v) for v in baseline.values()):
        raise StudyError(f"spec: baseline_return must be a number or {{target shift: number}} for shifts in "
                         f"targets, got {spec.get('baseline_return')!r}")
    spec["baseline_return"] = {k: float(v) for k, v in baseline.items()}

    from latent_adversary import ATTACKS
    from latent_adversary.config import RobustConfig
    attacks = spec.get("attacks") or []
    if not isinstance(attacks, list):
        raise StudyError("spec: attacks must be a list of {name: ATTACK, epsilons: [E, ...], steps: K}")
    norm_attacks = []
    for a in attacks:
        if not isinstance(a, dict) or a.get("name") not in ATTACKS or set(a) - {"name", "epsilons", "steps"}:
            raise StudyError(f"spec: attack {a!r}: give {{name: one of {', '.join(ATTACKS)}, epsilons: [E, ...]}}")
        eps = a.get("epsilons")
        if not isinstance(eps, list) or not eps or not all(isinstance(e, (int, float)) and e >= 0 for e in eps):
            raise StudyError(f"spec: attack {a['name']!r}: epsilons must be a non-empty list of numbers >= 0")
        norm_attacks.append({"name": a["name"], "epsilons": [float(e) for e in eps], "steps": _int(a, "steps", 1, 3)})
    if len({a["name"] for a in norm_attacks}) != len(norm_attacks):
        raise StudyError("spec: attacks names an attack twice")
    spec["attacks"] = norm_attacks

    sweeps = check_env_sweeps(spec.pop("env_sweeps", None) or [], source)
    if sweeps:  # absent when empty, as finetune_set
        spec["env_sweeps"] = sweeps
    if not targets and not norm_attacks and not sweeps:
        raise StudyError("spec: targets is empty and there are no attacks or env_sweeps: give at least one shift "
                         "name (python -m envs --list), or make it a source-only screen with attacks/env_sweeps")

    # every method's config resolves as train.py would resolve it (unknown keys, bad values), and with
    # the fine-tune's overrides on top (as the target phase puts them on the source checkpoint's config)
    for name in norm:
        trained_by = source_method(spec, name)
        trained = norm[trained_by]
        sets = spec["set"] + trained["set"] + [f"env={source}"]
        if trained_by == name:  # a fine-tuning variant's source config is its source method's, checked there
            try:
                cfg = config.resolve(preset, spec["config"] + trained["config"], sets, cls=RobustConfig)
            except InputError as e:
                raise StudyError(f"spec: method {name!r}: {e}") from None
            if cfg.train.keep_best_feasible and spec["eval_seed"] in seeds:
                raise StudyError(f"spec: eval_seed {spec['eval_seed']} is also a run seed, and method {name!r} "
                                 "keeps best.pt (train.keep_best_feasible), chosen by the run's own evaluation "
                                 "episodes, which are evaluate.py's episodes of --seed RUN_SEED: give an eval_seed "
                                 "outside seeds, e.g. 100")
        try:
            config.resolve(preset, spec["config"] + trained["config"], sets + finetune_sets(spec, name),
                           cls=RobustConfig)
        except InputError as e:
            raise StudyError(f"spec: finetune_set with method {name!r}: {e}") from None
    try:
        config.resolve(preset, spec["config"], spec["set"] + scratch_set + [f"env={source}"], cls=RobustConfig)
    except InputError as e:
        raise StudyError(f"spec: scratch.set: {e}") from None
    return spec


def source_method(spec: dict, method: str) -> str:
    """The method whose source runs ``method`` fine-tunes: its own, or its ``source``'s."""
    return spec["methods"][method].get("source", method)


def source_methods(spec: dict) -> list[str]:
    """The methods that train source runs of their own (not the fine-tuning variants), in spec order."""
    return [m for m in spec["methods"] if source_method(spec, m) == m]


def finetune_sets(spec: dict, method: str) -> list[str]:
    """The --set overrides of a method's fine-tunes: the study's finetune_set, then the method's own."""
    return list(spec.get("finetune_set") or []) + list(spec["methods"][method].get("finetune_set") or [])


def check_env_sweeps(sweeps, source: str) -> list[dict]:
    """``env_sweeps``: [{key: PARAM, values: [V1, V2, ...]}], each as ``evaluate.py --env-sweep`` takes it
    (the source env is built at every value now, so a bad key or value fails before anything runs)."""
    from slac.errors import InputError
    from slac.evaluation import check_env_sweep
    from slac.report import check_sweep_values

    form = "spec: env_sweeps must be a list of {key: ENV_PARAMETER, values: [V1, V2, ...]}"
    if not isinstance(sweeps, list):
        raise StudyError(f"{form}, got {sweeps!r}")
    out = []
    for sweep in sweeps:
        if not isinstance(sweep, dict) or set(sweep) != {"key", "values"} or not isinstance(sweep["values"], list):
            raise StudyError(f"{form}, got {sweep!r}")
        key, values = sweep["key"], sweep["values"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise StudyError(f"spec: env sweep of {key!r}: values must be numbers, got {values!r}")
        try:
            numbers = [float(v) for v in values]
            check_sweep_values(str(key), numbers)
            values = check_env_sweep(source, str(key), numbers)
        except InputError as e:
            raise StudyError(f"spec: env sweep of {key!r}: {e}") from None
        out.append({"key": str(key), "values": list(values)})
    if len({s["key"] for s in out}) != len(out):
        raise StudyError("spec: env_sweeps names a parameter twice")
    return out


def diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """What changed between two normalised specs, one line per key."""
    lines = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += diff(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines
