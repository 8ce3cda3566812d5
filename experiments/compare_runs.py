"""Are two runs the same computation? Their loss records and every weight of their final checkpoints.

    python experiments/compare_runs.py RUN_A RUN_B

Prints whether the ``loss/*`` records of the two ``metrics.jsonl`` files are identical (with the
KL, image, reward and cost terms of each), how many model and agent tensors of the two
``latest.pt`` are bitwise equal (NaN equal to NaN), whether the counters agree, and both runs'
evaluations. Used for docs/results/core-cleanup/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

TERMS = ("loss/kl", "loss/image", "loss/reward", "loss/cost")


def loss_records(run: Path) -> list[tuple[int, dict]]:
    with open(run / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [(r["step"], {k: v for k, v in r.items() if k.startswith("loss/")}) for r in records
            if any(k.startswith("loss/") for k in r)]


def evaluations(run: Path) -> list[tuple]:
    with open(run / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [(r["step"], r["eval/return"], r["eval/cost"]) for r in records if "eval/return" in r]


def same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.nan_to_num(), b.nan_to_num()) and torch.equal(a.isnan(), b.isnan())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs=2, type=Path)
    a, b = p.parse_args().runs
    la, lb = loss_records(a), loss_records(b)
    print(f"loss records: {len(la)} vs {len(lb)}; identical: {la == lb}")
    for (step, x), (_, y) in zip(la, lb, strict=False):
        terms = ", ".join(f"{k}={x[k]:.6g}" for k in TERMS if k in x)
        print(f"  step {step}: {terms}{'' if x == y else '  DIFFERS'}")
    sa, sb = (torch.load(run / "checkpoints" / "latest.pt", weights_only=True) for run in (a, b))
    for part in ("model", "agent"):
        common = sorted(set(sa[part]) & set(sb[part]))
        same = sum(same_tensor(sa[part][k], sb[part][k]) for k in common)
        print(f"{part}: {same} of {len(common)} shared tensors bitwise equal (NaN = NaN); "
              f"only in one: {sorted(set(sa[part]) ^ set(sb[part]))}")
    print("counters equal:", sa["counters"] == sb["counters"], sa["counters"])
    print("evaluations:", evaluations(a), "vs", evaluations(b))


if __name__ == "__main__":
    main()
