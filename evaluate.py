"""Evaluate a checkpoint: rollouts, metrics (table + JSON), test-time attacks and videos.

    python evaluate.py --checkpoint RUN_DIR_OR_FILE [--env NAME | --shift NAME --side source|target]
                       [--episodes N] [--seed N] [--stochastic] [--workers N]
                       [--attack NAME --epsilon E [--attack-steps K] | --epsilon-sweep 0,0.01,...]
                       [--env-sweep KEY=V1,V2,...]
                       [--video PATH.mp4] [--video-episodes K] [--tensorboard DIR] [--out metrics.json]
                       [--plot PATH.png] [--device auto|cpu|cuda] [--threads N]
    python evaluate.py --compare RUN_A RUN_B ... [same options, without --video/--tensorboard/sweeps]

Without --env/--shift the checkpoint's own training env is used (with --compare: the first one's).

--env-sweep KEY=V1,V2,... (a robustness curve) evaluates at each value of one numeric env parameter
(e.g. pole_mass=0.1,0.2,0.4), set on top of the env's own parameters and the checkpoint config's
env_overrides, with the same episode seeds at each value (and --attack NAME --epsilon E at each, if
given). It prints a table and the robust range: the run of adjacent swept values (in sorted order)
whose mean cost is <= the budget that holds the env's own value of the parameter (the swept value
nearest it), as lowest and highest value and width = highest - lowest (0 for one value; none if the
cost there exceeds the budget; the widest such run for a parameter the env leaves unset). --out
writes it all as JSON; --plot (default: env_sweep_KEY.png beside --out, else here) return and cost
against the value.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

try:
    from latent_adversary import ATTACKS
    from latent_adversary.run import make_evaluator
    from slac import evaluation, report
    from slac.checkpoint import atomic_write
    from slac.config import DEVICES, MAX_THREADS, PHASES, SEED_MAX
    from slac.errors import InputError
    from slac.run import env_name_for
except ValueError as error:  # an InputError at import: the MuJoCo rendering backend cannot start
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)

# attacks whose ε is in pixel units: pixels live in [0, 1], so ε does too (latent attacks: posterior stds)
PIXEL_ATTACKS = tuple(name for name in ATTACKS if name == "random" or name.startswith("image-"))
MAX_OVERVIEW_SIZE = 4096  # the video's panel height; larger frames would not fit in memory


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint",
                       help="run directory (its checkpoints/best.pt if it kept one, else latest.pt) or .pt file")
    which.add_argument("--compare", nargs="+", metavar="RUN", help="several checkpoints, one table row each")
    p.add_argument("--env", help="env to evaluate in (python -m envs --list); default: the checkpoint's")
    p.add_argument("--shift", help="a shift name; --side picks its source or target env")
    p.add_argument("--side", choices=PHASES, default="target", help="side of --shift (target)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="evaluation seed in [0, 2**32 - 1] (episode k's env "
                   "and torch seeds derive from it and k)")
    p.add_argument("--stochastic", dest="deterministic", action="store_false",
                   help="sample actions (and latents, with agent.latent_input sample); default: the mean action "
                   "on the filter's means")
    p.add_argument("--workers", type=int, default=1, help="worker processes (results equal a serial run)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (0: torch's default); "
                   "one suits batch-1 rollouts, and spinning threads on busy cores slow them down a lot")
    p.add_argument("--attack", choices=ATTACKS, help="test-time attack applied at every step")
    p.add_argument("--epsilon", type=float,
                   help="attack radius: in [0, 1] for pixel attacks (random, image-*: pixels live in [0, 1]); "
                   "any finite value >= 0 for latent attacks (posterior stds)")
    p.add_argument("--attack-steps", type=int, default=evaluation.DEFAULT_ATTACK_STEPS,
                   help="projected gradient steps of the attack (1 = FGSM)")
    p.add_argument("--epsilon-sweep", metavar="E1,E2,...", help="evaluate --attack at each ε: table and PNG")
    p.add_argument("--env-sweep", metavar="KEY=V1,V2,...", help="evaluate at each value of one numeric env "
                   "parameter (e.g. pole_mass=0.1,0.2,0.4): table, robust range, JSON and PNG")
    p.add_argument("--video", metavar="PATH.mp4", help="write the first --video-episodes episodes as an mp4 "
                   "(the path must end in .mp4)")
    p.add_argument("--video-episodes", type=int, default=1)
    p.add_argument("--tensorboard", metavar="DIR", help="also write the metrics and episode 0 as a video to "
                   "TensorBoard (e.g. the run's own tensorboard/ folder)")
    p.add_argument("--overview-size", type=int, default=256, help="height of the video's panels in pixels")
    p.add_argument("--out", metavar="metrics.json", help="write the metrics as JSON")
    p.add_argument("--plot", metavar="PATH.png", help="--epsilon-sweep plot (default: beside --out, "
                   "else epsilon_sweep_<attack>.png here); --env-sweep plot (default: env_sweep_<key>.png "
                   "beside --out, else here)")
    return p.parse_args(argv)


def check(args: argparse.Namespace) -> None:
    """Flag combinations that cannot work, each one clear error before anything loads."""
    if args.epsilon_sweep is not None and args.epsilon is not None:
        raise InputError("give either --epsilon E or --epsilon-sweep E1,E2,..., not both")
    if args.attack is None and (args.epsilon is not None or args.epsilon_sweep is not None):
        raise InputError(f"--epsilon/--epsilon-sweep need --attack NAME; valid: {', '.join(ATTACKS)}")
    if args.attack is not None and args.epsilon is None and args.epsilon_sweep is None:
        raise InputError("--attack needs --epsilon E (or --epsilon-sweep E1,E2,...)")
    if not 0 <= args.seed <= SEED_MAX:
        raise InputError(f"--seed must be an integer in [0, 2**32 - 1 = {SEED_MAX}], got {args.seed}")
    if args.episodes < 1:
        raise InputError(f"--episodes must be >= 1, got {args.episodes}")
    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    pixels = args.attack in PIXEL_ATTACKS
    if args.epsilon is not None:
        if not math.isfinite(args.epsilon) or args.epsilon < 0:
            raise InputError(f"--epsilon must be a finite number >= 0, got {args.epsilon}")
        if pixels and args.epsilon > 1:
            raise InputError(f"--epsilon for --attack {args.attack} is in pixel units, and pixels live in [0, 1]: "
                             f"it must be in [0, 1], got {args.epsilon:g} (latent attacks take any ε >= 0)")
    if args.epsilon_sweep is not None and args.attack is not None:
        report.parse_epsilons(args.epsilon_sweep, upper=1.0 if pixels else None,
                              units=f" for --attack {args.attack} (pixels live in [0, 1])" if pixels else "")
    if args.attack_steps < 1:
        raise InputError(f"--attack-steps must be >= 1, got {args.attack_steps}")
    if args.compare and args.epsilon_sweep is not None:
        raise InputError("--compare and --epsilon-sweep do not combine; sweep one checkpoint at a time")
    check_env_sweep_flags(args)
    for flag in ("video", "tensorboard"):
        if getattr(args, flag) and (args.compare or args.epsilon_sweep is not None or args.env_sweep is not None):
            raise InputError(f"--{flag} records one evaluation; it does not combine with --compare, "
                             "--epsilon-sweep or --env-sweep")
    if not 0 <= args.threads <= MAX_THREADS:
        raise InputError(f"--threads must be in [0, {MAX_THREADS}] (0: torch's default), got {args.threads}")
    if args.video_episodes < 1:
        raise InputError(f"--video-episodes must be >= 1, got {args.video_episodes}")
    if not 16 <= args.overview_size <= MAX_OVERVIEW_SIZE:
        raise InputError(f"--overview-size must be in [16, {MAX_OVERVIEW_SIZE}] pixels, got {args.overview_size}")
    if args.video is not None and not Path(args.video).is_dir() and Path(args.video).suffix.lower() != ".mp4":
        raise InputError(f"--video writes an mp4 video: give a path ending in .mp4, got {args.video!r}")
    for path, what in ((args.out, "--out"), (args.plot, "--plot"), (args.video, "--video")):
        if path is not None:
            report.check_writable(path, what)
    if args.tensorboard is not None:  # a folder: check that a file can be written in it
        report.check_writable(Path(args.tensorboard) / "events", "--tensorboard")


def check_env_sweep_flags(args: argparse.Namespace) -> None:
    """--env-sweep's form and values, and the flags it does not combine with (the env's parameters are
    checked in :func:`sweep_env`)."""
    if args.env_sweep is None:
        return
    if args.compare:
        raise InputError("--compare and --env-sweep do not combine; sweep one checkpoint at a time")
    if args.epsilon_sweep is not None:
        raise InputError("--epsilon-sweep and --env-sweep do not combine; sweep one thing at a time "
                         "(--attack NAME --epsilon E attacks at every env value)")
    report.parse_env_sweep(args.env_sweep)


def attack_of(args: argparse.Namespace) -> evaluation.AttackSpec | None:
    """The one test-time attack of --attack/--epsilon (None without --attack)."""
    return evaluation.AttackSpec(args.attack, args.epsilon, args.attack_steps) if args.attack else None


def sweep_env(args: argparse.Namespace, env: str | None, common: dict) -> tuple[list[dict], float | None]:
    """--env-sweep: one metrics dict per value, in the order given, with the same episode seeds, and the
    env's own value of the parameter (what the checkpoint's env runs at without the sweep)."""
    key, values = report.parse_env_sweep(args.env_sweep)
    if env is not None:  # the env is known: check its parameter before the checkpoint loads
        evaluation.check_env_sweep(env, key, values)
    evaluator = make_evaluator(args.checkpoint, env, args.device)
    evaluators = evaluation.sweep_evaluators(evaluator, key, values)
    attack = attack_of(args)
    rows = [evaluation.evaluate(e, attack=attack, **common) for e in evaluators]
    return rows, evaluation.env_value(evaluator.env, key)


def run(args: argparse.Namespace) -> tuple[list[dict], str, object, float | None]:
    """Evaluate as the flags say; returns the metrics rows, what the table's label column is, how to
    label each row, and for --env-sweep the env's own value of the swept parameter (else None)."""
    check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = env_name_for(args.env, args.shift, args.side)
    common = {"episodes": args.episodes, "seed": args.seed, "deterministic": args.deterministic,
              "workers": args.workers}
    if args.compare:
        evaluators = [make_evaluator(args.compare[0], env, args.device)]
        env = evaluators[0].env_name
        evaluators += [make_evaluator(c, env, args.device) for c in args.compare[1:]]  # all fit first
        attack = attack_of(args)
        return [evaluation.evaluate(e, attack=attack, **common) for e in evaluators], "checkpoint", None, None
    if args.env_sweep is not None:
        key = report.parse_env_sweep(args.env_sweep)[0]
        rows, own = sweep_env(args, env, common)
        return rows, key, lambda r: f"{r['env_overrides'][key]:g}", own
    evaluator = make_evaluator(args.checkpoint, env, args.device)
    if args.epsilon_sweep is not None:
        specs = [evaluation.AttackSpec(args.attack, eps, args.attack_steps)
                 for eps in report.parse_epsilons(args.epsilon_sweep)]
        rows = [evaluation.evaluate(evaluator, attack=spec, **common) for spec in specs]
        return rows, "epsilon", lambda r: f"{r['epsilon']:g}", None
    attack = attack_of(args)
    video = {"video": args.video, "video_episodes": args.video_episodes, "overview_size": args.overview_size}
    metrics = evaluation.evaluate(evaluator, attack=attack, **video, **common)
    if args.tensorboard:
        metrics["tensorboard"] = evaluation.log_tensorboard(evaluator, metrics, args.tensorboard,
                                                            args.overview_size)
    return [metrics], "checkpoint", None, None


def payload(args: argparse.Namespace, rows: list[dict], label: str, env_value: float | None) -> dict:
    """What --out writes: one evaluation's metrics, {"sweep": rows}, {"compare": rows} or an env sweep's
    summary (``slac.report.env_sweep_summary``)."""
    if args.env_sweep is not None:
        return report.env_sweep_summary(label, [r["env_overrides"][label] for r in rows], rows, env_value)
    if len(rows) == 1 and not args.epsilon_sweep:
        return rows[0]
    return {"sweep" if args.epsilon_sweep else "compare": rows}


def plot(args: argparse.Namespace, rows: list[dict], label: str) -> Path:
    """Draw a sweep's PNG: at --plot, else beside --out, else in the current folder; returns its path."""
    if args.env_sweep is not None:
        name = f"env_sweep_{label}.png"
        path = Path(args.plot) if args.plot else Path(args.out).parent / name if args.out else Path(name)
        attack = "" if args.attack is None else f" under {args.attack} ε={args.epsilon:g}"
        title = f"{label} on {rows[0]['env']}{attack} ({rows[0]['episodes']} episodes per value, 95% CI)"
        report.plot_sweep(rows, path, [r["env_overrides"][label] for r in rows], label, title)
        return path
    path = Path(args.plot) if args.plot else Path(args.out).with_suffix(".png") if args.out else \
        Path(f"epsilon_sweep_{args.attack}.png")
    report.plot_sweep(rows, path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        rows, label, label_of, env_value = run(args)
        swept = "epsilon" if args.epsilon_sweep is not None else label if args.env_sweep is not None else None
        print(report.describe(rows[0], swept))
        print(report.table(rows, label, label_of))
        if any(r["chose_checkpoint"] for r in rows):
            print(f"note: these are the episodes whose evaluation during training chose this best.pt "
                  f"(--seed {args.seed} is the run's seed), so the figures flatter it; judge it with another --seed")
        result = payload(args, rows, label, env_value)
        if args.env_sweep is not None:
            print(report.describe_robustness(result))
        if args.out:
            atomic_write(args.out, lambda f: f.write(json.dumps(result, indent=1).encode()))
            print(f"metrics: {args.out}")
        if swept is not None:
            print(f"plot:    {plot(args, rows, label)}")
        if args.video:
            print(f"video:   {args.video}")
        if args.tensorboard:
            print(f"tensorboard: {rows[0]['tensorboard']}/* in: tensorboard --logdir {args.tensorboard}")
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
