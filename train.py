"""Train Safe SLAC in the source task, or fine-tune a source checkpoint in the target task.

    python train.py --phase source --shift NAME | --env NAME [--preset smoke|cpu-small|cpu-fast|paper]
                    [--config FILE] [--set key=value ...] [--seed N] [--steps N]
                    [--device auto|cpu|cuda] --out DIR
    python train.py --phase target --shift NAME | --env NAME --checkpoint RUN_DIR_OR_FILE [...] --out DIR
    python train.py --resume DIR [--steps N] [--set train.threads=N]   (the run keeps its saved config)

A run holds a lock on its directory; a second run on it is refused. Ctrl-C or SIGTERM saves a
checkpoint and exits with 128 + the signal (130, 143: unfinished, so a wrapper does not count it
done); a run killed any other way resumes from its last checkpoint, exactly.
"""

from __future__ import annotations

import signal

# a stop signal that arrives while the program starts (imports, env and model building) is kept and
# honoured at the first step: the run saves a checkpoint and exits, as it does later on
EARLY_SIGNALS: list[int] = []
for _signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_signum, lambda signum, frame: EARLY_SIGNALS.append(signum))

import argparse  # noqa: E402
import sys  # noqa: E402

try:
    from latent_adversary.run import make_trainer
    from slac.config import DEVICES, PHASES, presets
    from slac.errors import InputError
    from slac.run import RunRequest
    from slac.trainer import RunFailed
except ValueError as error:  # an InputError at import: the MuJoCo rendering backend cannot start
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv: list[str] | None = None) -> tuple[RunRequest, bool]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", choices=PHASES,
                   help="source (default) or target; not with --resume, which keeps the run's phase")
    p.add_argument("--env", help="env name (python -m envs --list)")
    p.add_argument("--shift", help="shift name: its source env in the source phase, its target env in "
                   "the target phase")
    p.add_argument("--checkpoint", help="target phase: source run directory or .pt file to fine-tune")
    p.add_argument("--preset", help=f"named config preset: {', '.join(presets())}")
    p.add_argument("--config", action="append", default=[], dest="config_files", metavar="FILE",
                   help="YAML config file(s) applied after the preset")
    p.add_argument("--set", action="extend", nargs="+", default=[], dest="sets", metavar="KEY=VALUE",
                   help="override config values, e.g. --set agent.lr=3e-4 model.z1_dim=16 (repeatable)")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int, help="agent steps of this phase (train.steps)")
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--out", help="run directory (created; it must be new or empty)")
    p.add_argument("--overwrite", action="store_true", help="delete the files of an earlier run in --out first")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted run from its directory (its saved "
                   "config; only --steps and --set train.threads=N may change)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    progress = not args.no_progress
    del args.no_progress
    return RunRequest(**vars(args)), progress


def main(argv: list[str] | None = None) -> int:
    request, progress = parse_args(argv)
    try:
        trainer = make_trainer(request, progress=progress)
        for signum in EARLY_SIGNALS:
            trainer.request_stop(signum)
        final = trainer.run()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"training stopped: {e}", file=sys.stderr)
        return 1
    out = trainer.out_dir
    if trainer.interrupted:  # saved but unfinished: the shell's 128+signal, so wrappers do not count it done
        return 128 + trainer.interrupted
    summary = ", ".join(f"{k}={v:.3g}" for k, v in final.items()) if final else "no final evaluation"
    print(f"done: {summary}\n  metrics:     {out / 'metrics.jsonl'}\n  checkpoints: {out / 'checkpoints'}\n"
          f"  tensorboard: tensorboard --logdir {out / 'tensorboard'}")
    if trainer.cfg.train.keep_best_feasible and trainer.phase == "source":
        c = trainer.counters
        print(f"  the run's agent (what evaluate.py, --phase target and study.py take for {out}): "
              + (f"checkpoints/best.pt, step {c['best_feasible_step']}, evaluation return "
                 f"{c['best_feasible_return']:.1f} within the budget" if c["best_feasible_step"] >= 0 else
                 "checkpoints/latest.pt (no evaluation was within the budget, so no best.pt)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
