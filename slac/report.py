"""Presenting evaluations: the table, its heading and the ε-sweep plot, and the checks of the
paths and values ``evaluate.py`` is given for them (the library part is ``slac.evaluation``)."""

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
    """RUN for RUN/checkpoints/latest.pt; the file name for a checkpoint elsewhere."""
    p = Path(path)
    return p.parent.parent.name if p.parent.name == "checkpoints" and p.name == checkpoints.LATEST else p.name


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


def describe(metrics: dict, sweep: bool = False) -> str:
    """A heading naming the env, seeds and attack of an evaluation (for the table printed below it)."""
    epsilon = "ε swept" if sweep else f"ε={metrics['epsilon']:g}"
    attack = "no attack" if metrics["attack"] == "none" else \
        f"attack {metrics['attack']} {epsilon} ({metrics['attack_steps']} steps)"
    policy = "deterministic" if metrics["deterministic"] else "stochastic"
    return (f"env {metrics['env']} (trained on {metrics['trained_env']}), seed {metrics['seed']}, "
            f"{metrics['episodes']} episodes, {policy} policy, {attack}")


def plot_sweep(rows: list[dict], path: str | Path) -> None:
    """Return and cost (mean with 95 % interval) against ε, one PNG with two panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = [r["epsilon"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("return", "cost"), strict=True):
        mean = np.array([r[key]["mean"] for r in rows])
        ax.plot(eps, mean, marker="o")
        if all(r[key]["ci95"] for r in rows):
            low, high = zip(*(r[key]["ci95"] for r in rows), strict=True)
            ax.fill_between(eps, low, high, alpha=0.25)
        if key == "cost":
            ax.axhline(rows[0]["budget"], color="red", linestyle="--", label="budget")
            ax.legend()
        ax.set_xlabel("ε")
        ax.set_ylabel(f"episode {key}")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{rows[0]['attack']} on {rows[0]['env']} ({rows[0]['episodes']} episodes per ε, 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def parse_epsilons(text: str, upper: float | None = None, units: str = "") -> list[float]:
    """The ε values of ``--epsilon-sweep E1,E2,...``: finite numbers >= 0 (and <= ``upper`` where given,
    ``units`` saying why); InputError naming the bad value otherwise."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--epsilon-sweep expects comma-separated numbers, e.g. 0,0.01,0.02; "
                         f"got {text!r}") from None
    if not values or any(v < 0 or not math.isfinite(v) for v in values):
        raise InputError(f"--epsilon-sweep needs one or more finite values >= 0, got {text!r}")
    if upper is not None and max(values) > upper:
        raise InputError(f"--epsilon-sweep values must be in [0, {upper:g}]{units}, got {text!r}")
    return values
