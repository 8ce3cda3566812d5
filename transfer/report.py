"""The study report, from the small files only (spec.yaml, metrics.jsonl, evaluation JSON).

Per target and method, over seeds: mean, std (ddof 1) and a 95 % interval of the mean by bootstrap
over seeds (10,000 resamples of the seeds with replacement, percentile interval, fixed RNG; none with
one seed) of: scratch final return / cost, zero-shot return / cost, fine-tuned final return / cost,
their violation rates, both arms' late training evaluations (the last quarter of their steps), the
lifetime target cost (``train/lifetime_cost``) of fine-tuning and of scratch at their common target
step (over each arm's finished runs, or all its started runs while none has finished), and the ratio
fine-tune / scratch (of the seed means, with its interval); the first
target step at which a run's training evaluation met the budget (``eval/cost <= eval/budget``, and
``eval/return`` above the spec's do-nothing baseline where it gives one). Against the goals the study is
measured by (``GOALS``): per target, fine-tuning's saving of lifetime cost over scratch and its final
return as a fraction of scratch's, and each method's saving over plain (``none``) fine-tuning, each a
ratio of seed means with a 95 % interval (each group's seeds resampled independently; jointly for a
fine-tuning variant of ``none``, which fine-tunes the same source runs). Plots: lifetime
target cost and evaluation return against target steps, per method, with scratch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import yaml

from transfer.cell import DONE, FAILED
from transfer.spec import source_method, source_methods

BOOTSTRAP = 10_000
# the transfer study's goals (issue 33): transfer pays >= 70 % less lifetime target cost than scratch at
# >= 90 % of scratch's final return; robust source training pays >= 30 % less than plain transfer
GOALS = {"saving_vs_scratch": 0.70, "return_vs_scratch": 0.90, "saving_vs_none": 0.30}


def read_metrics(path: Path) -> list[dict]:
    from slac.logger import read_metrics as read

    return read(path) if path.exists() else []


def _resampled_means(values: list[float], rng: np.random.Generator, resamples: int) -> np.ndarray:
    """The means of ``resamples`` resamples of ``values`` with replacement (the bootstrap over seeds)."""
    v = np.asarray(values, float)
    return v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)


def _interval(samples: np.ndarray) -> list[float]:
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def bootstrap_ci(values: list[float], resamples: int = BOOTSTRAP, seed: int = 0) -> list[float] | None:
    if len(values) < 2:
        return None
    return _interval(_resampled_means(values, np.random.default_rng(seed), resamples))


def ratio_ci(num: list[float], den: list[float], resamples: int = BOOTSTRAP, seed: int = 0,
             paired: bool = False) -> list[float] | None:
    """95 % percentile interval of mean(num) / mean(den), resampling each group's seeds independently
    (two arms' runs are not paired), or with ``paired`` the same seeds for both (``num[i]`` and
    ``den[i]`` fine-tune one source run); None with fewer than two values in either or a resampled
    denominator mean <= 0."""
    if len(num) < 2 or len(den) < 2:
        return None
    rng = np.random.default_rng(seed)
    if paired:
        pick = rng.integers(0, len(num), size=(resamples, len(num)))
        n_means, d_means = np.asarray(num, float)[pick].mean(axis=1), np.asarray(den, float)[pick].mean(axis=1)
    else:
        n_means, d_means = _resampled_means(num, rng, resamples), _resampled_means(den, rng, resamples)
    if (d_means <= 0).any():
        return None
    return _interval(n_means / d_means)


def ratio_of_means(num: dict | None, den: dict | None) -> dict | None:
    """mean(num) / mean(den) of two aggregates with its interval; None where either is empty or den's
    mean <= 0."""
    if not num or not den or not num["n"] or not den["n"] or den["mean"] <= 0:
        return None
    return {"value": num["mean"] / den["mean"], "ci95": ratio_ci(num["values"], den["values"]),
            "n": [num["n"], den["n"]]}


def paired_ratio(num: dict, den: dict) -> dict | None:
    """mean(num) / mean(den) over the seeds both give ({seed: value}), its interval resampling those
    seeds jointly (a fine-tuning variant against its source method's fine-tunes of the same runs)."""
    seeds = [s for s in num if s in den and num[s] is not None and den[s] is not None]
    a, b = [num[s] for s in seeds], [den[s] for s in seeds]
    if not seeds or np.mean(b) <= 0:
        return None
    return {"value": float(np.mean(a) / np.mean(b)), "ci95": ratio_ci(a, b, paired=True), "n": [len(a), len(b)],
            "paired": True}


def _saving(ratio: dict | None) -> dict | None:
    """1 minus a ratio of means, its interval's ends swapped."""
    if ratio is None:
        return None
    ci = ratio["ci95"] and [1.0 - ratio["ci95"][1], 1.0 - ratio["ci95"][0]]
    return {**ratio, "value": 1.0 - ratio["value"], "ci95": ci}


def goals(methods: dict, scratch: dict | None) -> dict:
    """Per method: fine-tuning against scratch (lifetime-cost saving, final return ratio; None without a
    scratch arm) and against plain fine-tuning (``none``'s lifetime-cost saving at the same target step)."""
    out = {}
    plain = methods.get("none")
    for m, r in methods.items():
        g = {"common_target_step": r.get("common_target_step"),
             "saving_vs_scratch": _saving(r.get("lifetime_cost_ratio")),
             "return_vs_scratch": scratch and ratio_of_means(r["finetune_return"], scratch["final_return"]),
             "saving_vs_none": None}
        if plain is not None and m != "none" and r.get("common_target_step") == plain.get("common_target_step") \
                and r.get("finetune_lifetime_cost"):
            if r.get("source_method") == "none":  # the same source runs, seed for seed
                g["saving_vs_none"] = _saving(paired_ratio(r["finetune_lifetime_cost_by_seed"],
                                                           plain["finetune_lifetime_cost_by_seed"]))
            else:
                g["saving_vs_none"] = _saving(ratio_of_means(r["finetune_lifetime_cost"],
                                                             plain.get("finetune_lifetime_cost")))
        out[m] = g
    return out


def judge(ratio: dict | None, goal: float) -> str:
    """Whether a ratio meets a goal (at least ``goal``), counting the seeds' spread."""
    if ratio is None:
        return "–"
    v, ci = ratio["value"], ratio["ci95"]
    if ci is None:
        if min(ratio["n"]) < 2:
            return ("met" if v >= goal else "not met") + " (one seed: no interval)"
        return "not shown (no interval: a resampled denominator mean is <= 0)"
    if ci[0] >= goal:
        return "met (the whole interval)"
    if v >= goal:
        return "met by the mean; the interval reaches below the goal"
    if ci[1] >= goal:
        return "not met by the mean; the interval reaches the goal"
    return "not met (the whole interval)"


def aggregate(values: list[float | None]) -> dict:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"n": 0, "mean": None, "std": None, "ci95": None, "values": []}
    return {"n": len(vals), "mean": float(np.mean(vals)),
            "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
            "ci95": bootstrap_ci(vals), "values": vals}


def _eval_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def lifetime_at(records: list[dict], step: int) -> float | None:
    """train/lifetime_cost of the last record at or before ``step``."""
    value = None
    for r in records:
        if r["step"] <= step and "train/lifetime_cost" in r:
            value = r["train/lifetime_cost"]
    return value


def first_safe_step(records: list[dict], baseline: float | None) -> int | None:
    for r in records:
        if "eval/cost" in r and "eval/budget" in r and r["eval/cost"] <= r["eval/budget"] and \
                (baseline is None or r["eval/return"] > baseline):
            return int(r["step"])
    return None


def finished(records: list[dict], planned_steps: int) -> bool:
    """Whether a run's metrics reached its planned steps."""
    return bool(records) and records[-1]["step"] >= planned_steps


LATE = 0.25  # the last quarter of a run's steps: its late training evaluations


def late_evaluations(records: list[dict], planned_steps: int) -> dict | None:
    """Mean eval/return and eval/cost of a finished run's training evaluations in its last quarter of
    steps (a steadier view than the one final checkpoint); None for an unfinished run."""
    if not finished(records, planned_steps):
        return None
    late = [r for r in records if "eval/cost" in r and r["step"] > (1 - LATE) * planned_steps]
    if not late:
        return None
    return {"return": float(np.mean([r["eval/return"] for r in late])),
            "cost": float(np.mean([r["eval/cost"] for r in late])), "evaluations": len(late)}


def compared_runs(metrics: dict, planned_steps: int) -> dict:
    """The runs of an arm whose lifetime cost is compared: those that finished (reached
    ``planned_steps``); while none has, every run that has started (an interim view at their common step).
    A run still going is left out once one has finished, so that it does not pull the common step back."""
    started = {s: m for s, m in metrics.items() if m}
    return {s: m for s, m in started.items() if finished(m, planned_steps)} or started


def _late(runs: list[dict | None], key: str) -> dict:
    return aggregate([r and r[key] for r in runs])


def _last_step(records: list[dict]) -> int | None:
    return int(records[-1]["step"]) if records else None


def _curve(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in records if key in r and isinstance(r[key], (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def collect(study: Path) -> dict:
    """Everything the report shows, as a JSON-able dict."""
    study = Path(study)
    spec = yaml.safe_load((study / "spec.yaml").read_text())
    seeds = spec["seeds"]
    out = {"study": study.resolve().name, "spec": spec, "interval": "95 % bootstrap over seeds (percentile, "
           f"{BOOTSTRAP} resamples); null with one seed", "targets": {}}
    for t in spec["targets"]:
        baseline = spec.get("baseline_return", {}).get(t)
        scratch_runs = {s: study / "scratch" / t / f"s{s}" for s in seeds} if spec["scratch"]["enabled"] else {}
        scratch_metrics = {s: read_metrics(d / "metrics.jsonl") for s, d in scratch_runs.items()}
        scratch_eval = {s: _eval_json(d / "final_eval.json") for s, d in scratch_runs.items()}
        tgt = {"baseline_return": baseline, "methods": {}, "scratch": None}
        if scratch_runs:
            late = [late_evaluations(m, spec["scratch"]["steps"]) for m in scratch_metrics.values()]
            tgt["scratch"] = {
                "late_return": _late(late, "return"), "late_cost": _late(late, "cost"),
                "final_return": aggregate([e and e["return"]["mean"] for e in scratch_eval.values()]),
                "final_cost": aggregate([e and e["cost"]["mean"] for e in scratch_eval.values()]),
                "final_violation_rate": aggregate([e and e["violation_rate"] for e in scratch_eval.values()]),
                "first_safe_step": {s: first_safe_step(m, baseline) for s, m in scratch_metrics.items()},
                "last_step": {s: _last_step(m) for s, m in scratch_metrics.items()},
                "failed": {s: (d / FAILED).exists() for s, d in scratch_runs.items()},
                "planned_steps": spec["scratch"]["steps"],
                "curves": {s: {"lifetime_cost": _curve(m, "train/lifetime_cost"), "return": _curve(m, "eval/return")}
                           for s, m in scratch_metrics.items()}}
        for method in spec["methods"]:
            trained = source_method(spec, method)  # a fine-tuning variant's zero-shot is its source method's
            zs = {s: _eval_json(study / "zero_shot" / trained / t / f"s{s}" / "zero_shot.json") for s in seeds}
            ft_dirs = {s: study / "finetune" / method / t / f"s{s}" for s in seeds}
            ft_eval = {s: _eval_json(d / "final_eval.json") for s, d in ft_dirs.items()}
            ft_metrics = {s: read_metrics(d / "metrics.jsonl") for s, d in ft_dirs.items()}
            late = [late_evaluations(m, spec["target_steps"]) for m in ft_metrics.values()]
            row = {
                "source_method": trained,
                "finetune_late_return": _late(late, "return"), "finetune_late_cost": _late(late, "cost"),
                "zero_shot_return": aggregate([e and e["return"]["mean"] for e in zs.values()]),
                "zero_shot_cost": aggregate([e and e["cost"]["mean"] for e in zs.values()]),
                "zero_shot_violation_rate": aggregate([e and e["violation_rate"] for e in zs.values()]),
                "finetune_return": aggregate([e and e["return"]["mean"] for e in ft_eval.values()]),
                "finetune_cost": aggregate([e and e["cost"]["mean"] for e in ft_eval.values()]),
                "finetune_violation_rate": aggregate([e and e["violation_rate"] for e in ft_eval.values()]),
                "first_safe_step": {s: first_safe_step(m, baseline) for s, m in ft_metrics.items()},
                "last_step": {s: _last_step(m) for s, m in ft_metrics.items()},
                "failed": {s: (d / FAILED).exists() for s, d in ft_dirs.items()},
                "planned_steps": spec["target_steps"],
                "curves": {s: {"lifetime_cost": _curve(m, "train/lifetime_cost"), "return": _curve(m, "eval/return")}
                           for s, m in ft_metrics.items()},
            }
            ft_cmp = compared_runs(ft_metrics, spec["target_steps"])
            sc_cmp = compared_runs(scratch_metrics, spec["scratch"]["steps"]) if scratch_runs else {}
            # the step every compared fine-tune (and scratch run, with a scratch arm) has reached
            last = [m[-1]["step"] for m in [*ft_cmp.values(), *sc_cmp.values()]]
            common = min(last) if ft_cmp and (sc_cmp or not scratch_runs) else None
            row["common_target_step"] = common
            if common is not None:
                by_seed = {s: lifetime_at(m, common) for s, m in ft_cmp.items()}
                row["finetune_lifetime_cost_by_seed"] = by_seed
                row["finetune_lifetime_cost"] = aggregate(list(by_seed.values()))
                if scratch_runs:
                    sc_l = aggregate([lifetime_at(m, common) for m in sc_cmp.values()])
                    row["scratch_lifetime_cost"] = sc_l
                    # the goals' saving is 1 minus it
                    row["lifetime_cost_ratio"] = ratio_of_means(row["finetune_lifetime_cost"], sc_l)
            tgt["methods"][method] = row
        tgt["goals"] = goals(tgt["methods"], tgt["scratch"])
        out["targets"][t] = tgt
    out["attacks"] = collect_attacks(study, spec)
    if spec.get("env_sweeps"):
        nominal = nominal_values(spec["source_env"], [sw["key"] for sw in spec["env_sweeps"]])
        out["env_sweeps"] = collect_env_sweeps(study, spec, nominal)
        out["env_sweep_summary"] = {"nominal": nominal, "methods": sweep_summary(out["env_sweeps"], nominal)}
    else:
        out["env_sweeps"] = {}
    return out


def collect_attacks(study: Path, spec: dict) -> dict:
    """Per method and attack: return and cost of the source agents at each ε, over seeds
    (each seed's ``evaluate.py --epsilon-sweep`` JSON: {"sweep": [one metrics dict per ε]})."""
    out: dict = {}
    for method in source_methods(spec):
        for a in spec.get("attacks") or []:
            sweeps = [_eval_json(study / "attack" / method / a["name"] / f"s{s}" / "sweep.json") for s in spec["seeds"]]
            rows = []
            for eps in a["epsilons"]:
                at = [next((row for row in sw["sweep"] if row["epsilon"] == eps), None) if sw else None
                      for sw in sweeps]
                rows.append({"epsilon": eps, "return": aggregate([x and x["return"]["mean"] for x in at]),
                             "cost": aggregate([x and x["cost"]["mean"] for x in at])})
            out.setdefault(method, {})[a["name"]] = rows
    return out


def collect_env_sweeps(study: Path, spec: dict, nominal: dict) -> dict:
    """Per method and env parameter: return and cost of the source agents at each value over
    seeds (each seed's ``evaluate.py --env-sweep`` JSON), each seed's robust range (``slac.report.robust_range``:
    the run of adjacent values with mean cost <= budget around the source env's own value, ``nominal``)
    and the robust range of the seeds' mean cost. Each seed's range is computed here from its results,
    not read from its JSON, so that sweeps evaluated before the figure was anchored count the same."""
    from slac.report import robust_range, sweep_range

    out: dict = {}
    for method in source_methods(spec):
        for sw in spec.get("env_sweeps") or []:
            sweeps = {s: _eval_json(study / "env_sweep" / method / sw["key"] / f"s{s}" / "sweep.json")
                      for s in spec["seeds"]}
            rows, budgets = [], []
            for value in sw["values"]:
                at = [next((r for r in js["results"] if r["env_overrides"][sw["key"]] == value), None) if js else None
                      for js in sweeps.values()]
                budgets += [x["budget"] for x in at if x]
                rows.append({"value": value, "return": aggregate([x and x["return"]["mean"] for x in at]),
                             "cost": aggregate([x and x["cost"]["mean"] for x in at])})
            complete = [r for r in rows if r["cost"]["mean"] is not None]
            budget = budgets[0] if budgets and len(set(budgets)) == 1 else None
            out.setdefault(method, {})[sw["key"]] = {
                "rows": rows, "budget": budget,
                # seeds with a sweep only: None is a sweep with no value within the budget
                "robust_range_per_seed": {s: sweep_range(js["results"], sw["key"], nominal[sw["key"]])
                                          for s, js in sweeps.items() if js},
                "robust_range_of_mean": robust_range([r["value"] for r in complete],
                                                     [r["cost"]["mean"] for r in complete], budget, nominal[sw["key"]])
                if complete and budget is not None else None}
    return out


def nominal_values(source_env: str, keys: list[str]) -> dict:
    """The source env's own value of each swept parameter (what its clean evaluation runs at)."""
    import envs
    from slac.evaluation import env_value

    env = envs.make(source_env)
    try:
        return {k: env_value(env, k) for k in keys}
    finally:
        env.close()


def sweep_summary(env_sweeps: dict, nominal: dict) -> dict:
    """Per method, the robustness curves at a glance: the clean return and cost (the mean over seeds at
    the first swept parameter whose values include the env's own) and each parameter's robust range
    width (0 where no value stays within the budget), beside the plain method ``none``'s where there is one."""
    out = {}
    for method, sweeps in env_sweeps.items():
        clean = next((row for key, sw in sweeps.items() for row in sw["rows"]
                      if row["value"] == nominal.get(key) and row["cost"]["mean"] is not None), None)
        out[method] = {"clean_return": clean and clean["return"]["mean"], "clean_cost": clean and clean["cost"]["mean"],
                       "widths": {key: (sw["robust_range_of_mean"] or {"width": 0.0})["width"]
                                  if any(r["cost"]["mean"] is not None for r in sw["rows"]) else None
                                  for key, sw in sweeps.items()}}
    return out


def _range(r: dict | None) -> str:
    return "none" if r is None else f"{r['lower']:g} to {r['upper']:g} (width {r['width']:.3g})"


def _cell(a: dict | None, digits: int = 3) -> str:
    if not a or a["n"] == 0:
        return "–"
    if a["n"] == 1:
        return f"{a['mean']:.{digits}g} (n=1)"
    # two or more seeds: aggregate gives a std and an interval
    ci = f"[{a['ci95'][0]:.{digits}g}, {a['ci95'][1]:.{digits}g}]"
    return f"{a['mean']:.{digits}g} ± {a['std']:.{digits}g} {ci} (n={a['n']})"


def _ratio(r: dict | None, fmt: str = ".3g") -> str:
    """A ratio and its 95 % interval (where there is one)."""
    if r is None:
        return "–"
    return f"{r['value']:{fmt}}" + (f" [{r['ci95'][0]:{fmt}}, {r['ci95'][1]:{fmt}}]" if r["ci95"] else "")


def _steps(arm: dict) -> str:
    """Each seed's first safe step; without one, whether the run ended ("never"), failed (its cell's
    failed.json: it stopped and will not go on until the study runs it again), is under way or never began."""
    def seed(s) -> str:
        step, last = arm["first_safe_step"][s], arm["last_step"][s]
        if step is not None:
            return str(step)
        failed = arm.get("failed", {}).get(s)
        if last is None:
            return "failed" if failed else "not run"
        at = f"(at {last} of {arm['planned_steps']})"
        if failed:
            return f"failed {at}"
        return "never" if last >= arm["planned_steps"] else f"not yet {at}"
    return ", ".join(f"s{s}: {seed(s)}" for s in arm["first_safe_step"])


def markdown(data: dict, plots: list[str]) -> str:
    spec = data["spec"]
    lines = [f"# Transfer study report: {data['study']}", "",
             f"Source env `{spec['source_env']}`, preset `{spec.get('preset')}`, seeds {spec['seeds']}, "
             f"{spec['source_steps']} source steps, {spec['target_steps']} fine-tuning steps"
             + (f", scratch {spec['scratch']['steps']} steps" if spec["scratch"]["enabled"] else ", no scratch arm")
             + f", {spec['eval_episodes']} evaluation episodes per final / zero-shot evaluation.", "",
             f"Cells: mean ± std (ddof 1) [95 % interval: {data['interval']}] (n = seeds with the file).", ""]
    variants = {m: v for m, v in spec["methods"].items() if v.get("source")}
    if variants:
        lines += ["Fine-tuning variants (their fine-tunes start from another method's source runs, seed for seed, "
                  "with their own overrides after the study's finetune_set): "
                  + "; ".join(f"`{m}`: `{v['source']}`'s sources, "
                              + " ".join(f"`{x}`" for x in v.get("finetune_set", [])) for m, v in variants.items())
                  + ".", ""]
    for t, tgt in data["targets"].items():
        lines += [f"## Target `{t}`", ""]
        if tgt["baseline_return"] is not None:
            lines += [f"Do-nothing baseline return: {tgt['baseline_return']:g}.", ""]
        lines += [f"Final: the run's last checkpoint, {spec['eval_episodes']} episodes at evaluation seed "
                  f"{spec['eval_seed']}. Late training evaluations: per seed, the mean of the evaluations the run "
                  f"made in its last {LATE:.0%} of steps (finished runs only), a steadier view of where it ended.", "",
                  "| arm | return | cost | violation rate |", "| --- | --- | --- | --- |"]
        if tgt["scratch"]:
            s = tgt["scratch"]
            lines.append(f"| scratch (final) | {_cell(s['final_return'])} | {_cell(s['final_cost'])} | "
                         f"{_cell(s['final_violation_rate'])} |")
            lines.append(f"| scratch (late training evaluations) | {_cell(s['late_return'])} | "
                         f"{_cell(s['late_cost'])} | – |")
        for m, r in tgt["methods"].items():
            if r.get("source_method", m) == m:  # a fine-tuning variant shares its source method's row
                lines.append(f"| {m}: zero-shot | {_cell(r['zero_shot_return'])} | {_cell(r['zero_shot_cost'])} | "
                             f"{_cell(r['zero_shot_violation_rate'])} |")
            lines.append(f"| {m}: fine-tuned (final) | {_cell(r['finetune_return'])} | {_cell(r['finetune_cost'])} | "
                         f"{_cell(r['finetune_violation_rate'])} |")
            lines.append(f"| {m}: fine-tuning (late training evaluations) | {_cell(r['finetune_late_return'])} | "
                         f"{_cell(r['finetune_late_cost'])} | – |")
        lines += ["", "Lifetime target cost (`train/lifetime_cost`, exploration included) at the common target "
                  "step of fine-tuning" + (" and scratch" if tgt["scratch"] else " (no scratch arm)")
                  + ", over each arm's finished runs (all its started runs while none has finished):", "",
                  "| method | common step | fine-tune | scratch | ratio fine-tune / scratch [95 % interval] |",
                  "| --- | --- | --- | --- | --- |"]
        for m, r in tgt["methods"].items():
            ratio = _ratio(r.get("lifetime_cost_ratio"))
            common = "–" if r.get("common_target_step") is None else r["common_target_step"]
            lines.append(f"| {m} | {common} | {_cell(r.get('finetune_lifetime_cost'))} | "
                         f"{_cell(r.get('scratch_lifetime_cost'))} | {ratio} |")
        lines += ["", "First target step whose training evaluation met the budget (eval/cost <= eval/budget"
                  + (", return above the baseline" if tgt["baseline_return"] is not None else "")
                  + "; fine-tune step 0 is the zero-shot evaluation):", ""]
        for m, r in tgt["methods"].items():
            lines.append(f"- {m} fine-tune: {_steps(r)}")
        if tgt["scratch"]:
            lines.append(f"- scratch: {_steps(tgt['scratch'])}")
        lines.append("")
        if tgt["scratch"] or len(tgt["methods"]) > 1:  # something to compare with
            lines += _goal_lines(tgt["goals"])
    if data.get("attacks"):
        lines += ["## Test-time attacks on the source agents (in the source env)", "",
                  "| method | attack | ε | return | cost |", "| --- | --- | --- | --- | --- |"]
        for m, attacks in data["attacks"].items():
            for name, rows in attacks.items():
                lines += [f"| {m} | {name} | {row['epsilon']:g} | {_cell(row['return'])} | {_cell(row['cost'])} |"
                          for row in rows]
        lines.append("")
    if data.get("env_sweeps"):
        lines += ["## Robustness curves of the source agents (`evaluate.py --env-sweep`)", "",
                  "The source agent: a run's best.pt where it kept one (`train.keep_best_feasible`), else its last "
                  "checkpoint. Robust range: the run of adjacent swept values whose mean cost is within the budget "
                  "around the source env's own value (the swept value nearest it; none where that one is over the "
                  "budget).", ""]
        lines += _summary_lines(data["env_sweep_summary"])
        lines += ["| method | parameter | value | return | cost |", "| --- | --- | --- | --- | --- |"]
        for m, sweeps in data["env_sweeps"].items():
            for key, sw in sweeps.items():
                lines += [f"| {m} | {key} | {row['value']:g} | {_cell(row['return'])} | {_cell(row['cost'])} |"
                          for row in sw["rows"]]
        lines += ["", "| method | parameter | robust range of the mean cost | per seed |", "| --- | --- | --- | --- |"]
        for m, sweeps in data["env_sweeps"].items():
            for key, sw in sweeps.items():
                per_seed = ", ".join(f"s{s}: {_range(r)}" for s, r in sw["robust_range_per_seed"].items()) or "–"
                of_mean = _range(sw["robust_range_of_mean"]) if sw["robust_range_per_seed"] else "–"  # no sweep yet
                lines.append(f"| {m} | {key} | {of_mean} | {per_seed} |")
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(lines)


def _goal_lines(g: dict) -> list[str]:
    """The goals table of one target: each ratio with its 95 % interval and whether it meets its goal."""
    def cell(r: dict | None, key: str) -> str:
        return "–" if r is None else f"{_ratio(r, '.2f')}: {judge(r, GOALS[key])}"

    paired = any((r["saving_vs_none"] or {}).get("paired") for r in g.values())
    lines = ["Against the study's goals (ratios of seed means, 95 % interval with each arm's seeds resampled "
             "independently" + ("; a fine-tuning variant of `none` against `none` resamples the seeds of their "
                                "shared source runs jointly" if paired else "")
             + "): lifetime-cost saving of fine-tuning over scratch >= "
             f"{GOALS['saving_vs_scratch']:.0%} "
             "(both runs' lifetime target cost at the common step: the fine-tune's end) at "
             f">= {GOALS['return_vs_scratch']:.0%} of scratch's final return (each arm's final evaluation); saving "
             f"over plain (`none`) fine-tuning >= {GOALS['saving_vs_none']:.0%} (at the same step). A goal whose "
             "interval reaches across it is not shown by these seeds; with few seeds a bootstrap interval is "
             "narrower than the truth, so even a whole interval past the goal is weak evidence.", "",
             "| method | at step | saving vs scratch | final return / scratch's | saving vs `none` |",
             "| --- | --- | --- | --- | --- |"]
    for m, r in g.items():
        step = "–" if r["common_target_step"] is None else r["common_target_step"]
        lines.append(f"| {m} | {step} | {cell(r['saving_vs_scratch'], 'saving_vs_scratch')} | "
                     f"{cell(r['return_vs_scratch'], 'return_vs_scratch')} | "
                     f"{cell(r['saving_vs_none'], 'saving_vs_none')} |")
    return lines + [""]


def _summary_lines(summary: dict) -> list[str]:
    """The at-a-glance table of :func:`sweep_summary` (means over seeds; '–': no file yet)."""
    nominal, methods = summary["nominal"], summary["methods"]
    keys = list(nominal)
    plain = methods.get("none")
    number = lambda v, digits=3: "–" if v is None else f"{v:.{digits}g}"  # noqa: E731
    head = ["method", "clean return", "clean cost", "return / none's"] + [f"{k} width" for k in keys]
    lines = ["At a glance (clean: the source env's own values, "
             + ", ".join(f"{k} = {v:g}" if isinstance(v, (int, float)) else f"{k} = {v}" for k, v in nominal.items())
             + "; width: of the robust range of the seeds' mean cost"
             + (", `none`'s in brackets" if plain else "") + "):", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m, r in methods.items():
        ratio = (r["clean_return"] / plain["clean_return"] if plain and r["clean_return"] is not None
                 and plain["clean_return"] else None)
        widths = [number(r["widths"].get(k)) + (f" ({number(plain['widths'].get(k))})" if plain and m != "none" else "")
                  for k in keys]
        lines.append("| " + " | ".join([m, number(r["clean_return"]), number(r["clean_cost"]), number(ratio, 2),
                                         *widths]) + " |")
    return lines + [""]


def plot(data: dict, study: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for t, tgt in data["targets"].items():
        for key, ylabel, name in (("lifetime_cost", "cumulative target cost (train/lifetime_cost)", "cost"),
                                  ("return", "evaluation return (eval/return)", "return")):
            fig, ax = plt.subplots(figsize=(6, 4))
            arms = [(f"fine-tune {m}", r["curves"]) for m, r in tgt["methods"].items()]
            if tgt["scratch"]:
                arms.append(("scratch", tgt["scratch"]["curves"]))
            for i, (label, curves) in enumerate(arms):
                color = f"C{i}"
                for j, (x, y) in enumerate(c[key] for c in curves.values()):
                    if x:
                        ax.plot(x, y, color=color, alpha=0.8, marker="." if len(x) < 30 else None,
                                label=label if j == 0 else None)
            ax.set_xlabel("target steps")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{t}: one line per seed")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            fig.tight_layout()
            path = study / f"{t}_{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            paths.append(str(path))
    attack_names = sorted({name for attacks in data.get("attacks", {}).values() for name in attacks})
    for name in attack_names:  # return and cost against ε, one line per method (mean over seeds)
        series = {m: [(row["epsilon"], row) for row in attacks.get(name, [])] for m, attacks in data["attacks"].items()}
        paths.append(_curves(plt, series, "ε", f"{name} on the source agents", study / f"attack_{name}.png"))
    keys = sorted({key for sweeps in data.get("env_sweeps", {}).values() for key in sweeps})
    for key in keys:  # return and cost against the parameter, one line per method, with the budget
        series = {m: [(row["value"], row) for row in sweeps[key]["rows"]] for m, sweeps in data["env_sweeps"].items()
                  if key in sweeps}
        budget = next((sw[key]["budget"] for sw in data["env_sweeps"].values() if key in sw), None)
        paths.append(_curves(plt, series, key, f"{key}: robustness of the source agents",
                             study / f"env_sweep_{key}.png", budget))
    return paths


def _curves(plt, series: dict, xlabel: str, title: str, path: Path, budget: float | None = None) -> str:
    """Return and cost (means over seeds) against x, one line per method; the cost budget dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for i, (m, points) in enumerate(series.items()):
        points = sorted(((x, row) for x, row in points if row["return"]["mean"] is not None), key=lambda p: p[0])
        for ax, key in zip(axes, ("return", "cost"), strict=True):
            ax.plot([x for x, _ in points], [row[key]["mean"] for _, row in points], marker="o", color=f"C{i}",
                    label=m)
    if budget is not None:
        axes[1].axhline(budget, color="k", linestyle="--", linewidth=1, label="budget")
    for ax, key in zip(axes, ("return", "cost"), strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"episode {key} (mean over seeds)")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def write(study: str | Path) -> tuple[Path, Path, list[str]]:
    study = Path(study)
    data = collect(study)
    plots = plot(data, study)
    md = study / "report.md"
    md.write_text(markdown(data, plots))
    js = study / "report.json"
    js.write_text(json.dumps({**data, "plots": plots}, indent=1))
    return md, js, plots


# what a study's report is made from and what it makes: the files worth keeping in version control
SMALL_SUFFIXES = (".yaml", ".json", ".jsonl", ".md", ".png")
SKIPPED_DIRS = ("checkpoints", "tensorboard", "logs")  # weights and replay buffers; event files; command output


def export(study: str | Path, dest: str | Path) -> list[Path]:
    """Copy the study's small files (spec, metrics, evaluation JSON, done.json, configs, report and plots;
    no checkpoints, TensorBoard files, logs or hidden files) to ``dest``, keeping the layout, so that
    ``study.py report DEST`` makes the same report. Files already in ``dest`` are overwritten, and a
    cell's done / failed marker that the study no longer holds is deleted from ``dest`` (a cell that had
    failed when last exported and has finished since). Returns the copied files."""
    import shutil

    study, dest = Path(study).resolve(), Path(dest).resolve()
    if dest == study or study in dest.parents:
        raise ValueError(f"the export's destination {dest} is inside the study {study}")
    for marker in (m for name in (DONE, FAILED) for m in dest.rglob(name)):
        if not (study / marker.relative_to(dest)).exists():
            marker.unlink()
    copied = []
    for path in sorted(study.rglob("*")):
        rel = path.relative_to(study)
        if not path.is_file() or path.suffix not in SMALL_SUFFIXES or \
                any(part.startswith(".") or part in SKIPPED_DIRS for part in rel.parts):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / rel)
        copied.append(dest / rel)
    return copied
