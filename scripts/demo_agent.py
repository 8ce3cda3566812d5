"""The mission in about 10 minutes on 2 CPU cores: a shipped agent in its source task and zero-shot in shifted
targets, a short fine-tune in one target with the cost it pays, and a video.

    python scripts/demo_agent.py [--agent agents/cartpole-tilted-none]
                                 [--targets tilted-weak-motor tilted-colours] [--finetune tilted-weak-motor]
                                 [--finetune-steps 3000] [--episodes 10] [--workers 2] [--seed 0]
                                 [--print-every 100] [--set KEY=VALUE ...] [--out runs/demo-agent-...]

(``make demo-agent`` runs it with these defaults.) The agent is a folder written by
``scripts/export_agent.py`` (``agent.pt`` + ``card.json``, agents/README.md); a run directory works too.
``--targets`` and ``--finetune`` are shift names (``python -m envs --list``) whose source env is the
agent's. In one process it does what these commands do:

    1/3  python evaluate.py --compare AGENT --env SOURCE_ENV --episodes E --workers W
         python evaluate.py --compare AGENT --shift TARGET --side target ...      (for each target)
         one table: return, cost, budget and violation rate per env, with the same episode seeds in
         every env; episode 0 in the fine-tune target is recorded as the video
         (observation | model reconstruction | overview camera; red = a step that cost)
    2/3  python train.py --phase target --shift FINETUNE --checkpoint AGENT --steps N --out OUT/finetune-FINETUNE \\
             --set train.initial_collection_steps=C train.initial_learning_steps=0 ...
         printing the lifetime target cost (train/lifetime_cost) every --print-every steps
    3/3  where the files are, what was measured and what was not

The fine-tune is a demonstration, not the study's fine-tuning: it runs N steps (default 3000) with a
shortened schedule (C = min(250, N/4) steps collected with the loaded policy, no model-only
pre-training, one evaluation at the end) where a target run would otherwise inherit the agent's own
schedule (cpu-fast: 2,000 collection steps and 5,000 pre-training updates, which alone take about as
long as the whole demo on a CPU). ``--set train.initial_learning_steps=5000`` (etc.) puts parts of the
study's schedule back; ``--finetune-steps 0`` skips the fine-tune.

Time, for the shipped agent (cpu-fast, 32x32) on 2 quiet cores, from the per-step costs below (the ETA
lines use them): the table ~20 s (30 episodes of ~0.8 s on 2 workers, 125 agent steps each, and the
video), the fine-tune ~5.5 min (2,750 steps with updates at ~0.11 s, 250 collection steps, 2 x 5
evaluation episodes). Over its 3,000 steps (one seed, docs/results.md) the shipped agent's cost in the
weak-motor target first rises (its evaluations: 58 zero-shot, 204 at 1,500) and then falls (10 at 3,000).

Without the agent folder (none is shipped yet) it exits with status 2 and says so; ``make demo-smoke``
(``scripts/demo.py``) shows the whole workflow on a smoke run it trains itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import envs  # noqa: E402
from latent_adversary.run import make_evaluator, make_trainer  # noqa: E402
from slac import checkpoint, evaluation, report  # noqa: E402
from slac.errors import InputError, unknown  # noqa: E402
from slac.run import RunRequest  # noqa: E402

AGENT = "agents/cartpole-tilted-none"
TARGETS = ("tilted-weak-motor", "tilted-colours")  # the one shift that broke a source agent's budget, and colours
FINETUNE = "tilted-weak-motor"
COLLECT = 250  # at most this many fine-tuning steps collected with the loaded policy before any update

# Seconds, for the ETA lines: the shipped agent (cpu-fast, 32x32, dmc-cartpole-tilted, 125 agent steps per
# episode) on one quiet core, from a timed run of this demo (2:46 in all); a 64x64 cpu-small agent takes ~3x.
EPISODE_S = 0.8        # one evaluation episode: acting with the filter, the env's physics and rendering
VIDEO_EPISODE_S = 2.0  # one episode recorded: plus the 256-pixel overview and the reconstruction of each frame
SPAWN_S = 3.0          # starting the evaluation's worker processes (torch, MuJoCo, the checkpoint), in parallel
ACT_S = 0.008          # one agent step acting without updates (the fine-tune's initial collection)
PRETRAIN_S = 0.06      # one model-only pre-training update
UPDATE_STEP_S = 0.11   # one agent step with its share of model and agent updates (updates_per_step 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", default=str(ROOT / AGENT), help=f"the agent's folder (default: {AGENT})")
    p.add_argument("--targets", nargs="+", default=list(TARGETS), metavar="SHIFT",
                   help="shifts whose target envs the agent is evaluated in zero-shot")
    p.add_argument("--finetune", default=FINETUNE, metavar="SHIFT", help="the shift whose target env it fine-tunes in")
    p.add_argument("--finetune-steps", type=int, default=3000, help="agent steps of the fine-tune (0: none)")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes per env in the table")
    p.add_argument("--workers", type=int, default=2, help="worker processes for the evaluation episodes")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (episode k's seed derives from it and k)")
    p.add_argument("--print-every", type=int, default=100, help="fine-tuning steps between lifetime-cost lines")
    p.add_argument("--set", dest="sets", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides of the fine-tune, on top of the demo's shortened schedule")
    p.add_argument("--out", help="demo folder (default: runs/demo-agent-<agent>-<time>)")
    args = p.parse_args(argv)
    try:
        return run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def check(args: argparse.Namespace) -> dict:
    """Everything that can be wrong before any episode runs, each one clear error; returns the agent's state."""
    agent = Path(args.agent)
    if not agent.exists():
        raise InputError(f"no agent at {args.agent}: none is shipped yet (agents/README.md says how one is "
                         "exported); `make demo-smoke` shows the workflow on a smoke run it trains itself")
    for name, value in (("--episodes", args.episodes), ("--workers", args.workers),
                        ("--print-every", args.print_every)):
        if value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    if args.finetune_steps < 0:
        raise InputError(f"--finetune-steps must be >= 0 (0: no fine-tune), got {args.finetune_steps}")
    state = checkpoint.load(agent)
    trained_on = state["config"]["env"]
    for flag, shift in [*(("--targets", t) for t in args.targets), ("--finetune", args.finetune)]:
        if shift not in envs.SHIFTS:
            raise unknown(f"shift ({flag})", shift, envs.SHIFTS)
        if envs.SHIFTS[shift].source != trained_on:
            fitting = sorted(n for n, s in envs.SHIFTS.items() if s.source == trained_on)
            raise InputError(f"{flag} {shift} shifts {envs.SHIFTS[shift].source} → {envs.SHIFTS[shift].target}, "
                             f"but the agent was trained on {trained_on}; shifts from {trained_on}: "
                             f"{', '.join(fitting) or 'none'}")
    return state


def run(args: argparse.Namespace) -> int:
    state = check(args)
    agent = Path(args.agent)
    out = Path(args.out or ROOT / "runs" / f"demo-agent-{agent.name}-{datetime.now():%Y%m%d-%H%M%S}")
    targets = list(dict.fromkeys([*args.targets, args.finetune]))  # the fine-tune target's zero-shot is its baseline
    table_json, video = out / "zero_shot.json", out / f"zero_shot_{args.finetune}.mp4"
    for path, what in ((table_json, "the table's JSON"), (video, "the video")):
        report.check_writable(path, what)
    torch.set_num_threads(1)  # batch-1 rollouts gain nothing from more; spinning threads slow busy cores down
    began = time.perf_counter()
    print(describe_agent(agent, state))

    evaluated = [(state["config"]["env"], "source")] + [(envs.SHIFTS[t].target, f"target of {t}") for t in targets]
    eta = len(evaluated) * (args.episodes * EPISODE_S / args.workers + (SPAWN_S if args.workers > 1 else 0)) \
        + VIDEO_EPISODE_S - EPISODE_S
    part(f"1/3 the agent in its source env and zero-shot in {len(targets)} target env(s), {args.episodes} "
         "episodes each", eta)
    rows = []
    if args.finetune not in args.targets:
        print(f"   (the fine-tune target {args.finetune} joins the table: its zero-shot row is the fine-tune's "
              "baseline)")
    for env, role in evaluated:
        record = role == f"target of {args.finetune}"
        rows.append(evaluation.evaluate(make_evaluator(agent, env), episodes=args.episodes, seed=args.seed,
                                        workers=args.workers, video=video if record else None))
        rows[-1]["role"] = role
    print(f"{args.episodes} deterministic episodes per env, evaluation seed {args.seed} (the same episode seeds "
          "in every env); violations: episodes whose cost is over the budget")
    print(report.table(rows, "env", lambda r: f"{r['env']} ({r['role']})"))
    checkpoint.atomic_write(table_json, lambda f: f.write((json.dumps({"compare": rows}, indent=1) + "\n").encode()))
    print(f"   ({time.perf_counter() - began:.0f} s)")

    finetune_dir, paid = out / f"finetune-{args.finetune}", None
    if args.finetune_steps:
        t = time.perf_counter()
        paid = finetune(args, agent, state, finetune_dir)
        print(f"   ({time.perf_counter() - t:.0f} s)")
        if paid is None:
            return 130  # stopped by a signal; the trainer said where its checkpoint is

    part("3/3 where things are, what was measured and what was not")
    print(f"  table:      {table_json}  (every episode's return and cost too)\n"
          f"  video:      {video}  (the agent zero-shot in {envs.SHIFTS[args.finetune].target}, episode 0 of its "
          "table row: observation | model reconstruction | overview camera; red = a step that cost)")
    if args.finetune_steps:
        print(f"  fine-tune:  {finetune_dir}  (metrics.jsonl: train/lifetime_cost, eval/*; checkpoints/; "
              f"tensorboard --logdir {finetune_dir})")
    paid_line = "; no fine-tune (--finetune-steps 0)" if paid is None else \
        f", and the cost it paid in {args.finetune_steps} fine-tuning steps in {envs.SHIFTS[args.finetune].target} " \
        f"({paid:.1f})"
    print(f"Measured: the agent's return, cost and violation rate over {args.episodes} episodes in each of "
          f"{len(evaluated)} envs (the 95% CI columns show how little {args.episodes} episodes pin down){paid_line}.")
    print("Not measured: whether fine-tuning makes the agent safe in the target, or what adapting costs in "
          "general: the fine-tune is one seed of a few steps on a shortened schedule, a demonstration of the "
          "workflow, not the study (docs/study.md); nor other shifts' sizes (evaluate.py --env-sweep), nor attacks.")
    print(f"demo done in {time.perf_counter() - began:.0f} s")
    return 0


def describe_agent(agent: Path, state: dict) -> str:
    cfg, c = state["config"], state["counters"]
    card = agent / "card.json"
    commit = json.loads(card.read_text()).get("commit", "?") if card.is_file() else state.get("code_version", "?")
    return (f"agent {agent} ({state['phase']} phase, {c['step']} steps on {cfg['env']}, seed {cfg['seed']}, "
            f"commit {commit}){'; card: ' + str(agent / 'card.md') if (agent / 'card.md').is_file() else ''}")


def part(title: str, eta_s: float | None = None) -> None:
    print(f"\n== {title}", flush=True)
    if eta_s is not None:
        eta(eta_s)


def eta(seconds: float) -> None:
    print(f"   ETA ~{seconds / 60:.1f} min (estimated for the shipped cpu-fast agent on quiet cores)",
          flush=True)


def schedule(args: argparse.Namespace) -> list[str]:
    """The demo's shortened fine-tuning schedule as --set items, the user's --set on top."""
    n = args.finetune_steps
    return [f"train.initial_collection_steps={min(COLLECT, n // 4)}", "train.initial_learning_steps=0",
            f"train.eval_interval={n}", f"train.checkpoint_interval={n}", "train.image_log_interval=0",
            f"train.log_interval={args.print_every}", "train.threads=1", *args.sets]


def finetune(args: argparse.Namespace, agent: Path, state: dict, out: Path) -> float | None:
    """Part 2: fine-tune the agent in the --finetune target, a line with its lifetime target cost every
    --print-every steps (the trainer's log records, as they are written); returns the lifetime target
    cost, None if a signal stopped the run."""
    n, shift = args.finetune_steps, envs.SHIFTS[args.finetune]
    sets = schedule(args)
    part(f"2/3 fine-tuning in {shift.target} for {n} steps, starting from the agent")
    trainer = make_trainer(RunRequest(phase="target", shift=args.finetune, checkpoint=str(agent), steps=n,
                                      sets=sets, out=str(out)), progress=False)
    train, agent_train = trainer.cfg.train, state["config"]["train"]
    print(f"   $ python train.py --phase target --shift {args.finetune} --checkpoint {agent} --steps {n} "
          f"--out {out} --set {' '.join(sets)}\n"
          f"   a shortened schedule, not the study's: {train.initial_collection_steps} steps collected with the "
          f"loaded policy, {train.initial_learning_steps} model-only pre-training updates, one evaluation "
          f"at the end (a target run otherwise inherits the agent's {agent_train['initial_collection_steps']} and "
          f"{agent_train['initial_learning_steps']}); every step's cost counts, evaluation episodes' do not")
    eta(2 * train.eval_episodes * EPISODE_S + train.initial_collection_steps * ACT_S
        + train.initial_learning_steps * PRETRAIN_S + max(n - train.initial_collection_steps, 0) * UPDATE_STEP_S)
    trainer.logger.write = PrintLifetimeCost(trainer, n)
    final = trainer.run()
    if trainer.interrupted:
        return None
    print(f"   lifetime target cost after {trainer.counters['step']} steps: {trainer.counters['lifetime_cost']:.1f}; "
          f"final evaluation in the run ({train.eval_episodes} episodes, run seed {trainer.cfg.seed}): return "
          f"{final['eval/return']:.1f}, cost {final['eval/cost']:.1f}, violation rate "
          f"{final['eval/violation_rate']:.0%} (budget {final['eval/budget']:.3g})")
    return trainer.counters["lifetime_cost"]


class PrintLifetimeCost:
    """Stands in for the trainer's ``logger.write``: writes the record, then prints one line for each log
    record (``train/lifetime_cost``, every ``train.log_interval`` steps) and each evaluation."""

    def __init__(self, trainer, steps: int):
        self.write, self.steps = trainer.logger.write, steps
        self.last = (0, time.perf_counter())

    def __call__(self, step: int, metrics: dict | None = None) -> dict:
        record = self.write(step, metrics)
        if "target/zero_shot_return" in record:
            print(f"   step {step:5d}  zero-shot evaluation in the run: return {record['eval/return']:.1f}, "
                  f"cost {record['eval/cost']:.1f}", flush=True)
            self.last = (step, time.perf_counter())  # the pace counts training steps, not this evaluation
        if "train/lifetime_cost" in record:
            now = time.perf_counter()
            pace = (now - self.last[1]) / max(step - self.last[0], 1)
            self.last = (step, now)
            cost = record.get("train/episode_cost")  # the mean of the episodes that ended since the last line
            episodes = "" if cost is None else f", last episodes' mean cost {cost:.1f}"
            print(f"   step {step:5d}/{self.steps}  lifetime target cost {record['train/lifetime_cost']:8.1f}"
                  f"  (λ {record['train/lambda']:.3g}{episodes}; ~{pace * (self.steps - step):.0f} s left at this "
                  "pace)", flush=True)
        return record


if __name__ == "__main__":
    sys.exit(main())
