"""Plot learning curves (evaluation return and cost against agent steps) from run directories.

    python scripts/plot_curves.py RUN_DIR [RUN_DIR ...] --out docs/curves.png [--random-return X]
        [--zero-return X] [--budget B] [--max-step N] [--title TEXT]

Each run's ``metrics.jsonl`` is read; ``eval/return`` and ``eval/cost`` are drawn per run, up to
agent step N if given (e.g. a preset's end, for runs continued past it). Prints a table of each
run's last drawn evaluation and their mean over runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slac.logger import read_metrics  # noqa: E402


def eval_curve(records: list[dict], key: str, max_step: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    records = [r for r in records if key in r and r["step"] <= max_step]
    return np.array([r["step"] for r in records]), np.array([r[key] for r in records], dtype=float)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--random-return", type=float, help="a random policy's mean return, drawn as a line")
    p.add_argument("--zero-return", type=float, help="the mean return of always acting 0, drawn as a line")
    p.add_argument("--budget", type=float, help="episode cost budget, drawn as a line")
    p.add_argument("--max-step", type=int, help="draw evaluations up to this agent step only")
    p.add_argument("--title", default="")
    args = p.parse_args()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    print(f"{'run':40s} {'step':>8s} {'return':>10s} {'cost':>8s}")
    finals = []
    max_step = np.inf if args.max_step is None else args.max_step
    for run in args.runs:
        records = read_metrics(run / "metrics.jsonl")
        steps, ret = eval_curve(records, "eval/return", max_step)
        cost_steps, cost = eval_curve(records, "eval/cost", max_step)
        axes[0].plot(steps, ret, marker="o", ms=3, label=run.name)
        axes[1].plot(cost_steps, cost, marker="o", ms=3, label=run.name)
        finals.append((ret[-1], cost[-1]))
        print(f"{str(run):40s} {steps[-1]:8d} {ret[-1]:10.2f} {cost[-1]:8.2f}")
    mean = np.mean(finals, axis=0)
    print(f"{'mean over runs':40s} {'':8s} {mean[0]:10.2f} {mean[1]:8.2f}")
    if args.random_return is not None:
        axes[0].axhline(args.random_return, color="gray", ls="--", label="random policy")
    if args.zero_return is not None:
        axes[0].axhline(args.zero_return, color="black", ls=":", label="action 0 (do nothing)")
    if args.budget is not None:
        axes[1].axhline(args.budget, color="red", ls="--", label="budget")
    for ax, name in zip(axes, ("evaluation return", "evaluation episode cost"), strict=True):
        ax.set_xlabel("agent steps")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
