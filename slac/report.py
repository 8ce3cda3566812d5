"""Presenting evaluations: the table, its heading, the sweep plots (ε or an env parameter) and the
robustness figure of an env sweep, and the checks of the paths and values ``evaluate.py`` is given
for them (the library part is ``slac.evaluation``).

The robustness figure of an env sweep (:func:`robust_range`): sort the swept values; a value is
within budget when the mean episode cost there is <= the episode budget; the robust range is the run
of adjacent (in sorted order) values within budget that holds the env's own value of the parameter
(the swept value nearest it): how far the parameter can move from where the agent was trained before
the cost passes the budget. It is given as its lowest and highest value and its width = highest -
lowest (0 for a run of one value); null when the value nearest the env's own is over budget. For a
parameter the env leaves unset (no own value) it is the widest run, on a tie the run of lower values.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np

from slac import checkpoint as checkpoints
from slac.errors import InputError


def _interval(stats: dict) -> str:
    ci = stats["ci95"]
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"


def _run_name(path: str) -> str:
    """RUN for RUN/checkpoints/latest.pt, RUN (best) for its best.pt; the file name for a checkpoint elsewhere."""
    p = Path(path)
    if p.parent.name == checkpoints.CHECKPOINTS and p.name in (checkpoints.LATEST, checkpoints.BEST):
        return p.parent.parent.name + (" (best)" if p.name == checkpoints.BEST else "")
    return p.name


def table(rows: list[dict], label: str = "checkpoint", label_of=None) -> str:
    """A plain-text table, one row per metrics dict (``label_of(row)`` names it)."""
    label_of = label_of or (lambda r: f"{_run_name(r['checkpoint'])} ({r['phase']} @ {r['step']})")
    head = [label, "episodes", "return mean ± std", "return 95% CI", "cost mean ± std", "cost 95% CI",
            "budget", "violations"]
    body = [[label_of(r), str(r["episodes"]), f"{r['return']['mean']:.2f} ± {r['return']['std']:.2f}",
             _interval(r["return"]), f"{r['cost']['mean']:.2f} ± {r['cost']['std']:.2f}",
             _interval(r["cost"]), f"{r['budget']:.3g}", f"{r['violation_rate']:.0%}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def describe(metrics: dict, swept: str | None = None) -> str:
    """A heading naming the env, seeds and attack of an evaluation (for the table printed below it);
    ``swept`` names what a sweep varies: "epsilon" or an env parameter."""
    epsilon = "ε swept" if swept == "epsilon" else f"ε={metrics['epsilon']:g}"
    attack = "no attack" if metrics["attack"] == "none" else \
        f"attack {metrics['attack']} {epsilon} ({metrics['attack_steps']} steps)"
    policy = "deterministic" if metrics["deterministic"] else "stochastic"
    env_swept = f", {swept} swept" if swept not in (None, "epsilon") else ""
    return (f"env {metrics['env']} (trained on {metrics['trained_env']}), seed {metrics['seed']}, "
            f"{metrics['episodes']} episodes, {policy} policy, {attack}{env_swept}")


def plot_sweep(rows: list[dict], path: str | Path, values: list[float] | None = None, label: str = "ε",
               title: str | None = None) -> None:
    """Return and cost (mean with 95 % interval error bars) against the swept ``values`` (default: the
    rows' ε), one PNG with two panels; the cost panel has the budget as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [r["epsilon"] for r in rows] if values is None else values
    order = np.argsort(values, kind="stable")  # a curve, whatever order the values were given in
    xs, rows = [values[i] for i in order], [rows[i] for i in order]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("return", "cost"), strict=True):
        mean = np.array([r[key]["mean"] for r in rows])
        errors = None
        if all(r[key]["ci95"] for r in rows):  # none for one episode
            low, high = np.array([r[key]["ci95"] for r in rows]).T
            errors = [mean - low, high - mean]
        ax.errorbar(xs, mean, yerr=errors, marker="o", capsize=3)
        if key == "cost":
            _budget_line(ax, xs, [r["budget"] for r in rows])
        ax.set_xlabel(label)
        ax.set_ylabel(f"episode {key}")
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"{rows[0]['attack']} on {rows[0]['env']} ({rows[0]['episodes']} episodes per ε, 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _budget_line(ax, xs: list[float], budgets: list[float]) -> None:
    """Horizontal where the budget is one number; a line through each value's budget where the swept
    parameter changes the episode (its length or action repeat)."""
    if len(set(budgets)) == 1:
        ax.axhline(budgets[0], color="red", linestyle="--", label="budget")
    else:
        ax.plot(xs, budgets, color="red", linestyle="--", label="budget")
    ax.legend()


# ------------------------------------------------------------------------------------------- env sweeps
def robust_range(values: list[float], mean_costs: list[float], budget, around: float | None = None) -> dict | None:
    """The robustness figure (module docstring): the run of adjacent swept values, in sorted order, whose
    mean cost is <= ``budget`` (one number, or one per value) and that holds the swept value nearest
    ``around`` (the env's own value; ties to the lower), as {"lower", "upper", "width"}; None if that
    value is over budget. ``around`` None: the widest such run; None if no value qualifies."""
    budgets = np.broadcast_to(np.asarray(budget, dtype=np.float64), (len(values),))
    runs, run = [], None  # the runs of adjacent values within budget, as (lowest, highest)
    for value, cost, limit in sorted(zip(values, mean_costs, budgets, strict=True)):
        if cost > limit:  # a value over budget ends the run
            run = None
            continue
        if run is None:
            run = [value, value]
            runs.append(run)
        run[1] = value
    if around is None:
        best = max(runs, key=lambda r: r[1] - r[0], default=None)  # max keeps the first (lower) on a tie
    else:
        anchor = min(values, key=lambda v: (abs(v - around), v))  # the nearest; on a tie the lower
        best = next((r for r in runs if r[0] <= anchor <= r[1]), None)
    if best is None:
        return None
    return {"lower": best[0], "upper": best[1], "width": float(f"{best[1] - best[0]:.12g}")}


def sweep_range(rows: list[dict], key: str, env_value: float | None) -> dict | None:
    """The robust range of one ``--env-sweep``'s metrics rows (each with ``env_overrides[key]``, its
    ``budget`` and mean cost) around ``env_value``."""
    return robust_range([r["env_overrides"][key] for r in rows], [r["cost"]["mean"] for r in rows],
                        [r["budget"] for r in rows], env_value)


def env_sweep_summary(key: str, values: list[float], rows: list[dict], env_value: float | None) -> dict:
    """The JSON of ``--env-sweep``: what was swept and evaluated, the env's own value of ``key`` (None
    where it leaves it unset), the robustness figure and each value's metrics (``rows``, one per value,
    in the order given)."""
    budgets = [r["budget"] for r in rows]
    first = rows[0]
    facts = ("checkpoint", "phase", "step", "env", "trained_env", "seed", "episodes", "deterministic", "attack",
             "epsilon", "attack_steps")
    return {"key": key, "values": values, "env_value": env_value,
            "budget": budgets[0] if len(set(budgets)) == 1 else budgets, **{k: first[k] for k in facts},
            "robustness": sweep_range(rows, key, env_value),
            "results": rows}


def describe_robustness(summary: dict) -> str:
    """One line: the robust range of an env sweep, or why there is none."""
    key, figure, own = summary["key"], summary["robustness"], summary.get("env_value")
    around = f"around the env's own {own:g}" if own is not None else "the widest run (the env sets no value)"
    if figure is None:
        where = "at every value" if own is None else "at the swept value nearest the env's own"
        return f"robust range of {key} ({around}): none (the mean cost exceeds the budget {where})"
    return (f"robust range of {key} (mean cost <= budget, {around}): {figure['lower']:g} to "
            f"{figure['upper']:g}, width {figure['width']:g}")


# ------------------------------------------------------------------------------------ output and input checks
def check_writable(path: str | Path, what: str) -> None:
    """Raise InputError if ``path`` cannot be created or written (checked before any episode runs)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} path {str(path)!r} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the folder of {what} path {str(path)!r}: {e.strerror}") from None
    try:  # the real test: create (and remove) a file beside it; os.access trusts root too much
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as e:
        raise InputError(f"{what} path {str(path)!r} is not writable: {e.strerror}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} path {str(path)!r} is not writable")


def parse_numbers(text: str, flag: str, example: str) -> list[float]:
    """The numbers of a comma-separated list (blank items skipped); InputError naming ``flag`` and
    giving ``example`` if an item is not a number."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} expects comma-separated numbers, e.g. {example}; got {text!r}") from None


def parse_epsilons(text: str, upper: float | None = None, units: str = "") -> list[float]:
    """The ε values of ``--epsilon-sweep E1,E2,...``: finite numbers >= 0 (and <= ``upper`` where given,
    ``units`` saying why); InputError naming the bad value otherwise."""
    values = parse_numbers(text, "--epsilon-sweep", "0,0.01,0.02")
    if not values or any(v < 0 or not math.isfinite(v) for v in values):
        raise InputError(f"--epsilon-sweep needs one or more finite values >= 0, got {text!r}")
    if upper is not None and max(values) > upper:
        raise InputError(f"--epsilon-sweep values must be in [0, {upper:g}]{units}, got {text!r}")
    return values


def parse_env_sweep(text: str) -> tuple[str, list[float]]:
    """The key and values of ``--env-sweep KEY=V1,V2,...``: two or more distinct finite numbers
    (whether the env has the key, and takes the values, is ``slac.evaluation.check_env_sweep``'s)."""
    key, sep, numbers = text.partition("=")
    key = key.strip()
    form = "give --env-sweep as KEY=V1,V2,... (e.g. pole_mass=0.1,0.2,0.4)"
    if not sep or not key or not numbers.strip():
        raise InputError(f"{form}, got {text!r}")
    values = parse_numbers(numbers, "--env-sweep", "pole_mass=0.1,0.2,0.4")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"--env-sweep values must be finite numbers, got {text!r}")
    check_sweep_values(key, values)
    return key, values


def check_sweep_values(key: str, values: list[float]) -> None:
    """Two or more values, each given once (an env sweep on the command line or in a study spec)."""
    if len(values) < 2:
        raise InputError(f"an env sweep needs at least two values to sweep, got {key}={values}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise InputError(f"an env sweep lists {key}={repeated[0]:g} more than once; give each value once")
