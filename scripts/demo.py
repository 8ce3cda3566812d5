"""The whole workflow in a few minutes on a CPU: source training → target fine-tuning → evaluation → video.

    python scripts/demo.py [--shift cartpole-long-pole] [--preset smoke] [--out runs/demo-...]

On a named source → target shift it runs, in this process, what these commands do:

    python train.py --phase source --shift SHIFT --preset smoke --set train.threads=1 --out OUT/source
    python train.py --phase target --shift SHIFT --checkpoint OUT/source --preset smoke \
                    --set train.threads=1 --out OUT/target
    python evaluate.py --compare OUT/source OUT/target --shift SHIFT --side target --episodes 3
    python evaluate.py --checkpoint OUT/target --shift SHIFT --side target --episodes 3 \\
                       --video OUT/target_video.mp4 --out OUT/target_eval.json \
                       --tensorboard OUT/target/tensorboard

and prints where the metrics, checkpoints, TensorBoard logs and the video are. It uses one torch
thread: the smoke model is too small to gain from more, and OpenMP threads that spin on busy cores
made a smoke model update 30x slower here (2.3 s instead of 0.08 s while training runs shared the
two cores). With the ``smoke``
preset this demonstrates the workflow, not learned performance: a few hundred steps teach the agent
next to nothing and the model's reconstructions are blurs. ``--preset cpu-small`` is the CPU-sized
preset; its first runs (docs/results.md) had not yet learned to respect the budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import envs  # noqa: E402
from latent_adversary.run import make_evaluator, make_trainer  # noqa: E402
from slac import evaluation, report  # noqa: E402
from slac.errors import InputError  # noqa: E402
from slac.run import RunRequest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shift", default="cartpole-long-pole", help="python -m envs --list shows them")
    p.add_argument("--preset", default="smoke")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=3, help="evaluation episodes per checkpoint")
    p.add_argument("--out", help="demo folder (default: runs/demo-<shift>-<time>)")
    args = p.parse_args(argv)
    out = Path(args.out or ROOT / "runs" / f"demo-{args.shift}-{datetime.now():%Y%m%d-%H%M%S}")
    try:
        return run(args, out)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _stage(title: str, command: str) -> float:
    print(f"\n== {title}\n   $ {command}", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace, out: Path) -> int:
    if args.shift not in envs.SHIFTS:
        raise InputError(f"unknown shift {args.shift!r}; valid: {', '.join(sorted(envs.SHIFTS))}")
    shift = envs.SHIFTS[args.shift]
    print(f"demo: shift {args.shift!r} ({shift.kind}): {shift.description}\n"
          f"      source env {shift.source} → target env {shift.target}; preset {args.preset}; folder {out}")
    began = time.perf_counter()
    torch.set_num_threads(1)
    sets = ["train.threads=1"]
    common = f"--shift {args.shift} --preset {args.preset} --seed {args.seed} --set {sets[0]}"

    t = _stage("1/4 source training", f"python train.py --phase source {common} --out {out / 'source'}")
    make_trainer(RunRequest(phase="source", shift=args.shift, preset=args.preset, seed=args.seed, sets=sets,
                            out=str(out / "source"))).run()
    print(f"   ({time.perf_counter() - t:.0f} s)")

    t = _stage("2/4 target fine-tuning (zero-shot evaluation first; every target step's cost is counted)",
               f"python train.py --phase target {common} --checkpoint {out / 'source'} "
               f"--out {out / 'target'}")
    make_trainer(RunRequest(phase="target", shift=args.shift, preset=args.preset, seed=args.seed, sets=sets,
                            checkpoint=str(out / "source"), out=str(out / "target"))).run()
    print(f"   ({time.perf_counter() - t:.0f} s)")

    t = _stage("3/4 source vs fine-tuned checkpoint in the target env",
               f"python evaluate.py --compare {out / 'source'} {out / 'target'} --shift {args.shift} "
               f"--side target --episodes {args.episodes}")
    rows = [evaluation.evaluate(make_evaluator(out / run_dir, shift.target), episodes=args.episodes)
            for run_dir in ("source", "target")]
    print(report.describe(rows[0]))
    print(report.table(rows))
    print(f"   ({time.perf_counter() - t:.0f} s)")

    video, metrics = out / "target_video.mp4", out / "target_eval.json"
    tensorboard = out / "target" / "tensorboard"
    t = _stage("4/4 video of the fine-tuned agent in the target env",
               f"python evaluate.py --checkpoint {out / 'target'} --shift {args.shift} --side target "
               f"--episodes {args.episodes} --video {video} --out {metrics} --tensorboard {tensorboard}")
    from evaluate import main as evaluate_main

    code = evaluate_main(["--checkpoint", str(out / "target"), "--shift", args.shift, "--side", "target",
                          "--episodes", str(args.episodes), "--video", str(video), "--out", str(metrics),
                          "--tensorboard", str(tensorboard)])
    if code:
        return code
    print(f"   ({time.perf_counter() - t:.0f} s)")

    print(f"\ndemo done in {time.perf_counter() - began:.0f} s. Where things are:\n"
          f"  checkpoints:  {out / 'source' / 'checkpoints'}  and  {out / 'target' / 'checkpoints'}\n"
          f"  metrics:      {out / 'source' / 'metrics.jsonl'}, {out / 'target' / 'metrics.jsonl'} "
          f"(train/lifetime_cost of the target run: the cost paid while fine-tuning), {metrics}\n"
          f"  tensorboard:  tensorboard --logdir {out}  (curves; the evaluation video under IMAGES)\n"
          f"  video:        {video}  (observation | model reconstruction | overview camera; red = cost)\n"
          f"With preset {args.preset!r} this shows that the workflow runs end to end, not that the agent "
          "learned anything; --preset cpu-small is the CPU-sized preset (its first runs are in docs/results.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
