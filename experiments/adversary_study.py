"""Robustness study: source runs trained with different adversaries, evaluated side by side.

    python experiments/adversary_study.py --runs none=RUN,RUN image=RUN,RUN latent=RUN,RUN \\
        [--attacks image-mc,image-mr,latent-mc,latent-mr] [--image-epsilons 0.01,0.02,0.04] \\
        [--latent-epsilons 0.25,0.5,1] [--shift NAME ...] [--episodes 10] [--workers 2] \\
        [--include OLD/study.json] --out DIR

Each run (a source run directory) is evaluated with the same evaluation seeds: clean (no attack)
in its training env, under each attack at each ε (``slac.evaluation.evaluate``, as
``evaluate.py --attack A --epsilon E``), and zero-shot on the target env of each ``--shift``. ε = 0 of
every attack is the clean evaluation (the attacks are the identity at ε = 0, tests/test_adversary.py).

``--include`` adds the runs of an earlier study made with the same settings (so runs that finish
at different times can be evaluated as they finish). Writes ``DIR/study.json`` (every metrics
dict), ``DIR/study.md`` (one table: return / cost per condition and kind, mean over seeds with the
per-seed values) and ``DIR/study.png`` (return and cost against ε per attack, one line per
training kind, mean over seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from latent_adversary.run import make_evaluator
from slac import evaluation
from slac.checkpoint import atomic_write
from slac.errors import InputError
from slac.report import parse_epsilons
from slac.run import env_name_for


def attack_space(attack: str) -> str:
    """'latent' for the latent-* attacks; 'image' for the others (random noise is in pixel units too)."""
    return "latent" if attack.startswith("latent-") else "image"


def parse_runs(items: list[str]) -> dict[str, list[str]]:
    runs = {}
    for item in items:
        kind, sep, paths = item.partition("=")
        if not sep or not paths:
            raise InputError(f"--runs expects KIND=RUN[,RUN...], got {item!r}")
        runs[kind] = paths.split(",")
    return runs


def study(args) -> dict:
    runs = parse_runs(args.runs)
    attacks = [a for a in args.attacks.split(",") if a]
    epsilons = {"image": parse_epsilons(args.image_epsilons), "latent": parse_epsilons(args.latent_epsilons)}
    targets = [env_name_for(None, shift, "target") for shift in args.shift]
    common = {"episodes": args.episodes, "seed": args.seed, "workers": args.workers}
    results: dict[str, dict[str, dict]] = {}
    for kind, paths in runs.items():
        for path in paths:
            start = time.perf_counter()
            evaluator = make_evaluator(path, None, "cpu")
            entry = {"clean": evaluation.evaluate(evaluator, **common), "attacks": {}}
            for attack in attacks:
                space = attack_space(attack)
                entry["attacks"][attack] = [
                    evaluation.evaluate(evaluator, attack=evaluation.AttackSpec(attack, eps, args.attack_steps),
                                        **common) for eps in epsilons[space]]
            entry["zero_shot"] = {target: evaluation.evaluate(make_evaluator(path, target, "cpu"), **common)
                                  for target in targets}
            results.setdefault(kind, {})[path] = entry
            print(f"{kind} {path}: clean return {entry['clean']['return']['mean']:.1f} "
                  f"cost {entry['clean']['cost']['mean']:.1f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return {"runs": runs, "attacks": attacks, "epsilons": epsilons, "shifts": args.shift, "targets": targets,
            "episodes": args.episodes, "seed": args.seed, "attack_steps": args.attack_steps, "results": results}


SETTINGS = ("attacks", "epsilons", "targets", "episodes", "seed", "attack_steps")


def include(report: dict, path: str) -> None:
    """Add the runs of an earlier study (same settings) to ``report``, in place."""
    earlier = json.loads(Path(path).read_text())
    different = [k for k in SETTINGS if earlier.get(k) != report[k]]
    if different:
        raise InputError(f"--include {path}: made with other {', '.join(different)} than this study")
    for kind, entries in earlier["results"].items():
        report["results"].setdefault(kind, {}).update(entries)
        report["runs"][kind] = list(report["results"][kind])


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.1f}"


def _cell(entries: list[dict]) -> str:
    """'return / cost' averaged over seeds, with the per-seed values."""
    returns = [e["return"]["mean"] for e in entries]
    costs = [e["cost"]["mean"] for e in entries]
    per_seed = ", ".join(f"{r:.0f}/{c:.0f}" for r, c in zip(returns, costs, strict=True))
    return f"{_mean(returns)} / {_mean(costs)} ({per_seed})"


def markdown(report: dict) -> str:
    """One table: rows = evaluation condition, columns = training kind; cells = return / cost."""
    kinds = list(report["results"])
    head = "| condition | " + " | ".join(kinds) + " |"
    lines = [head, "|" + " --- |" * (len(kinds) + 1)]

    def row(name: str, pick) -> None:
        cells = [_cell([pick(e) for e in report["results"][k].values()]) for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    row("clean", lambda e: e["clean"])
    for attack in report["attacks"]:
        space = attack_space(attack)
        for i, eps in enumerate(report["epsilons"][space]):
            row(f"{attack} ε={eps:g}", lambda e, a=attack, i=i: e["attacks"][a][i])
    for target in report["targets"]:
        row(f"zero-shot {target}", lambda e, t=target: e["zero_shot"][t])
    budget = next(iter(next(iter(report["results"].values())).values()))["clean"]["budget"]
    return ("Cells: episode return / cost, mean over seeds (per seed in brackets), "
            f"{report['episodes']} episodes each; budget {budget:g}.\n\n" + "\n".join(lines) + "\n")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacks = report["attacks"]
    fig, axes = plt.subplots(2, len(attacks), figsize=(3.6 * len(attacks), 6), squeeze=False)
    for col, attack in enumerate(attacks):
        space = attack_space(attack)
        eps = [0.0, *report["epsilons"][space]]
        for kind, entries in report["results"].items():
            for row, key in enumerate(("return", "cost")):
                per_seed = [[e["clean"][key]["mean"]] + [m[key]["mean"] for m in e["attacks"][attack]]
                            for e in entries.values()]
                axes[row, col].plot(eps, np.mean(per_seed, axis=0), marker="o", label=kind)
        axes[0, col].set_title(attack)
        axes[1, col].axhline(next(iter(entries.values()))["clean"]["budget"], color="red", linestyle="--")
        for row, key in enumerate(("return", "cost")):
            axes[row, col].set_xlabel("ε" + (" (pixels)" if space == "image" else " (posterior stds)"))
            axes[row, col].set_ylabel(f"episode {key}")
            axes[row, col].grid(alpha=0.3)
    axes[0, 0].legend(title="trained with")
    fig.suptitle(f"test-time attacks, mean over seeds ({report['episodes']} episodes per point; "
                 "red: budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, metavar="KIND=RUN[,RUN...]")
    p.add_argument("--attacks", default="image-mc,image-mr,latent-mc,latent-mr")
    p.add_argument("--image-epsilons", default="0.01,0.02,0.04", help="pixel units, [0, 1] scale")
    p.add_argument("--latent-epsilons", default="0.25,0.5,1", help="posterior standard deviations")
    p.add_argument("--attack-steps", type=int, default=evaluation.DEFAULT_ATTACK_STEPS)
    p.add_argument("--shift", action="append", default=[],
                   help="also evaluate zero-shot on this shift's target env (repeatable)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (the same for every run)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--include", action="append", default=[], metavar="STUDY_JSON",
                   help="add the runs of an earlier study made with the same settings")
    p.add_argument("--out", required=True, help="output directory")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        report = study(args)
        for path in args.include:
            include(report, path)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "study.json", lambda f: f.write(json.dumps(report, indent=1).encode()))
    text = markdown(report)
    atomic_write(out / "study.md", lambda f: f.write(text.encode()))
    plot(report, out / "study.png")
    print(text)
    print(f"written: {out / 'study.json'}, {out / 'study.md'}, {out / 'study.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
