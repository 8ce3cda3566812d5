"""Time per agent step of two presets' update phase, side by side in one process.

    python benchmarks/preset_step_time.py [--presets cpu-fast cpu-small] [--env dmc-cartpole-tilted]
                                          [--set-a KEY=VALUE ...] [--set-b KEY=VALUE ...]
                                          [--rounds 10] [--block-steps N] [--fill 2000] [--clock wall|cpu]

Two source runs, A and B, each a real ``Trainer`` (``latent_adversary.run.make_trainer``, as
``train.py`` builds it) in a fresh temporary run directory, with its own env and replay buffer, on
one torch thread; they take turns, never run at once. ``--set-a``/``--set-b`` are ``--set``
overrides of each (e.g. ``--presets cpu-small cpu-small --set-a env_overrides.image_size=32``).

Filling: each trainer runs its own loop (``Trainer.run``) for ``--fill`` agent steps of random
collection in its env (``train.steps`` = ``train.initial_collection_steps`` = fill, no model
pre-training: ``train.initial_learning_steps=0``; the end of that run evaluates one episode and
writes a checkpoint, untimed). It then stands where a run stands after pre-training
(``counters['pretrained']`` set, the step at the end of the initial collection, the policy acting from
here on), except that its weights were not pre-trained: an update's cost does not depend on their values.

Timing: what the trainer's loop does per agent step from then on, through the loop's own two steps,
``Trainer._collect()`` (act with the policy, step the env, store, move λ) then ``Trainer._learn()``
(every ``train.update_every`` steps a burst of ``updates_per_step`` × update_every model updates,
each followed by ``agent_updates_per_model_update`` agent updates). ``_periodic()`` (logging,
reconstruction images, evaluation, checkpoints) is left out: it is not the update phase, and the
presets' intervals for it differ. ``Trainer.run()`` cannot be called again for more steps: it closes
the logger at its end (the next log record would fail), starts a new episode on entry (resetting the
env mid-episode) and evaluates and checkpoints at its last step, so every block would include those.
A block is ``--block-steps`` agent steps, a multiple of both presets' ``update_every`` (default: their
least common multiple; ``cpu-small``'s one burst is 50 model and 200 agent updates), so every block
holds the same number of update bursts (and of updates, when update_every × updates_per_step is whole).
After one untimed warm-up block each, every round times a block of A then a block of B, ``--rounds`` times.

Reported per preset: median ms per agent step over the blocks, with min-max, and how much of it was
acting (``_collect``) and updating (``_learn``). The last line is ``A/B time per step: R``, R the
median of the per-round ratios A/B (their min-max on the line before).
"""

# ruff: noqa: I001  (envs first: it sets MUJOCO_GL before gymnasium's plugins import mujoco)
from __future__ import annotations

import envs  # noqa: F401

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import torch

from latent_adversary.config import RobustConfig
from latent_adversary.run import make_trainer
from slac import config
from slac.errors import InputError
from slac.run import RunRequest
from slac.trainer import Trainer


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of ``values``."""
    return statistics.median(values), min(values), max(values)


def fill_trainer(preset: str, env: str, sets: list[str], fill: int, out: str) -> Trainer:
    """A source run of ``preset`` in ``out`` whose replay holds ``fill`` agent steps of random collection
    in its env, collected by its own loop; it stands where a run stands after pre-training."""
    fill_sets = [*sets, f"train.steps={fill}", f"train.initial_collection_steps={fill}",
                 "train.initial_learning_steps=0", "train.eval_episodes=1", "train.threads=1"]
    trainer = make_trainer(RunRequest(env=env, preset=preset, sets=fill_sets, out=out), progress=False)
    try:
        trainer.run()
    except BaseException:
        trainer.close()
        raise
    assert trainer.counters["pretrained"] and trainer.counters["step"] == fill, trainer.counters
    return trainer


def time_block(trainer: Trainer, steps: int, clock: Callable[[], float]) -> tuple[float, float]:
    """Seconds spent acting (``_collect``) and updating (``_learn``) over ``steps`` agent steps of the
    trainer's loop (its periodic logging, evaluation and checkpoints left out)."""
    acting = learning = 0.0
    for _ in range(steps):
        t0 = clock()
        trainer._collect()
        t1 = clock()
        trainer._learn()
        t2 = clock()
        acting += t1 - t0
        learning += t2 - t1
    return acting, learning


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs=2, default=["cpu-fast", "cpu-small"], metavar=("A", "B"))
    p.add_argument("--env", default="dmc-cartpole-tilted")
    p.add_argument("--set-a", nargs="*", default=[], metavar="KEY=VALUE", help="--set overrides of preset A")
    p.add_argument("--set-b", nargs="*", default=[], metavar="KEY=VALUE", help="--set overrides of preset B")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds: a block of A, then a block of B")
    p.add_argument("--block-steps", type=int, default=None,
                   help="agent steps per block, a multiple of both presets' train.update_every "
                        "(default: their least common multiple)")
    p.add_argument("--fill", type=int, default=2000,
                   help="agent steps of random collection in each replay before timing (rounded up to a "
                        "multiple of both update_every)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: this process's CPU time (one torch thread, software rendering in-thread: robust "
                        "to other jobs on the machine)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.fill < 1 or (args.block_steps is not None and args.block_steps < 1):
        p.error("--rounds, --fill and --block-steps must be >= 1")
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    (name_a, name_b), sets = args.presets, {"A": args.set_a, "B": args.set_b}
    for name in (name_a, name_b):
        if name not in config.presets():
            print(f"preset_step_time: unknown preset {name!r} (configs/{name}.yaml does not exist); "
                  f"valid: {', '.join(config.presets())}", file=sys.stderr)
            return 2
    torch.set_num_threads(1)
    labels = {"A": name_a, "B": name_b}
    try:
        cfgs = {k: config.resolve(labels[k], sets=[*sets[k], f"env={args.env}"], cls=RobustConfig) for k in labels}
    except InputError as e:
        print(f"preset_step_time: {e}", file=sys.stderr)
        return 2
    period = math.lcm(*(c.train.update_every for c in cfgs.values()))
    block = args.block_steps or period
    if block % period:
        print(f"preset_step_time: --block-steps {block} is not a multiple of both presets' train.update_every "
              f"({', '.join(str(c.train.update_every) for c in cfgs.values())}); give a multiple of {period}",
              file=sys.stderr)
        return 2
    fill = period * math.ceil(args.fill / period)

    print(f"env {args.env}, torch threads {torch.get_num_threads()}, {args.clock} clock; replay filled with "
          f"{fill} random agent steps each; {args.rounds} rounds of {block} agent steps per preset after a warm-up "
          f"block, A then B")
    trainers: dict[str, Trainer] = {}
    dirs: list[str] = []
    try:
        for k in labels:
            dirs.append(tempfile.mkdtemp(prefix=f"preset_step_time_{k}_"))
            try:
                trainers[k] = fill_trainer(labels[k], args.env, sets[k], fill, dirs[-1])
            except InputError as e:
                print(f"preset_step_time: preset {k} ({labels[k]}): {e}", file=sys.stderr)
                return 2
        torch.set_num_threads(1)
        for k, t in trainers.items():
            tc, m = t.cfg.train, t.cfg.model
            name = f"{labels[k]} {' '.join(sets[k])}".rstrip()
            print(f"{k} = {name}: obs {'x'.join(map(str, t.spec['obs_shape']))}, update_every {tc.update_every}, "
                  f"{tc.update_every * tc.updates_per_step:g} model updates per "
                  f"burst each with {tc.agent_updates_per_model_update} agent updates, model batch {m.batch_size}, "
                  f"agent batch {t.cfg.agent.batch_size}", flush=True)
            time_block(t, block, clock)  # warm-up
        spans: dict[str, list[tuple[float, float]]] = {k: [] for k in trainers}
        for _ in range(args.rounds):
            for k, t in trainers.items():
                spans[k].append(time_block(t, block, clock))
    finally:
        for t in trainers.values():
            t.close()
            t.env.close()
            t.eval_env.close()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)

    per_step = {k: [(acting + learning) / block for acting, learning in s] for k, s in spans.items()}
    for k, s in spans.items():
        median, low, high = summary(per_step[k])
        acting = statistics.median(a / block for a, _ in s)
        learning = statistics.median(u / block for _, u in s)
        print(f"{k} = {labels[k]}: {1e3 * median:.2f} ms per agent step (min-max {1e3 * low:.2f}-{1e3 * high:.2f}); "
              f"medians: acting {1e3 * acting:.2f} ms, updates {1e3 * learning:.2f} ms")
    ratio, low, high = summary([a / b for a, b in zip(per_step["A"], per_step["B"], strict=True)])
    print(f"{name_a}/{name_b} time per step, min-max of the {args.rounds} per-round ratios: {low:.2f}-{high:.2f}")
    print(f"{name_a}/{name_b} time per step: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
