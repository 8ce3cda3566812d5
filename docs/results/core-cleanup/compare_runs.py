"""Compare two cpu-small runs: every loss/* metric record and every tensor of the final checkpoint."""
import json, sys
import torch
a, b = sys.argv[1], sys.argv[2]
def records(run):
    return [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
ra, rb = records(a), records(b)
losses = lambda rs: [(r["step"], {k: v for k, v in r.items() if k.startswith("loss/")}) for r in rs if any(k.startswith("loss/") for k in r)]
la, lb = losses(ra), losses(rb)
print(f"loss records: {len(la)} vs {len(lb)}; identical: {la == lb}")
for (s, x), (_, y) in zip(la, lb):
    print(f"  step {s}: " + ", ".join(f"{k}={x[k]:.6g}" for k in ("loss/kl", "loss/image", "loss/reward", "loss/cost") if k in x)
          + ("" if x == y else "  DIFFERS"))
sa = torch.load(f"{a}/checkpoints/latest.pt", weights_only=True)
sb = torch.load(f"{b}/checkpoints/latest.pt", weights_only=True)
for part in ("model", "agent"):
    keys = sorted(set(sa[part]) | set(sb[part]))
    same = [k for k in keys if k in sa[part] and k in sb[part] and torch.equal(sa[part][k], sb[part][k])]
    print(f"{part}: {len(same)} of {len(keys)} tensors bitwise equal; only in one: {sorted(set(sa[part]) ^ set(sb[part]))}")
print("counters:", sa["counters"] == sb["counters"], sa["counters"])
eval_a = [r for r in ra if "eval/return" in r]; eval_b = [r for r in rb if "eval/return" in r]
print("evaluations:", [(r["step"], r["eval/return"], r["eval/cost"]) for r in eval_a], "vs", [(r["step"], r["eval/return"], r["eval/cost"]) for r in eval_b])
