"""What a checkpoint's policy does with the cartpole, read from the simulator during its episodes.

    python experiments/cartpole_behaviour.py RUN_DIR_OR_CHECKPOINT [RUN_DIR_OR_CHECKPOINT ...]
                                             [--env dmc-cartpole-tilted] [--episodes 5] [--seed 0]

Return and cost say how well a policy scores; these say how it scores. Per checkpoint, over the
same deterministic evaluation episodes as ``evaluate.py`` (same seeds):
- upright share: the share of agent steps that end with the pole within 0.2 rad of upright;
- held at end: how many agent steps the episode ends with the pole within 0.2 rad without a break
  (a balancing policy holds it for most of the 125 steps; a swinging or spinning pole passes
  upright for a step or two), i.e. whether the policy holds the pole up rather than passing it;
- turns: full pole rotations in the episode (|final angle| / 2π; a pole that swings does not turn);
- max |x|: how far the cart went (the tilted cartpole's cost zone starts at 0.25);
- final x: where the cart is at the end (signed). A balancing policy brings the cart to rest at a
  point of its own; whether that point lies inside |x| ≤ 0.25 decides most of the episode's cost.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from latent_adversary.run import make_evaluator
from slac.evaluation import Evaluator
from slac.rollout import evaluation_episode

UPRIGHT = 0.2  # rad


def behaviour(evaluator: Evaluator, index: int, seed: int) -> dict:
    _, data = evaluator.env.unwrapped.mujoco_handles()
    angles, positions = [], []

    def record(_: dict) -> None:
        angles.append(float(data.qpos[1]))
        positions.append(float(data.qpos[0]))

    # evaluate.py's episode ``index``, same seeds
    _, episode = evaluation_episode(evaluator.env, evaluator.policy(), seed, index, on_step=record)
    return {"return": episode.episode_return, "cost": episode.episode_cost, **summarise(angles, positions)}


def summarise(angles, positions) -> dict:
    """The behaviour figures of one episode from its per-step pole angles (unwrapped, as MuJoCo's
    hinge keeps them) and cart positions."""
    angles = np.asarray(angles, dtype=np.float64)
    up = np.abs(np.angle(np.exp(1j * angles))) <= UPRIGHT  # the angle wrapped to (-π, π]
    falls = np.flatnonzero(~up)
    held = len(up) if falls.size == 0 else len(up) - 1 - int(falls[-1])
    return {"upright": float(up.mean()), "held_at_end": held, "turns": abs(angles[-1]) / (2 * math.pi),
            "max_x": float(np.max(np.abs(positions))), "final_x": float(positions[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--env", default=None, help="a dmc-cartpole-* env (default: the checkpoint's)")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="evaluation seed, as evaluate.py's")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"{'checkpoint':56s} {'return':>7s} {'cost':>6s} {'upright':>8s} {'held at end':>12s} "
          f"{'turns':>6s} {'max |x|':>8s} {'final x':>8s}")
    for path in args.checkpoints:
        evaluator = make_evaluator(path, env=args.env, device="cpu")
        if not evaluator.env_name.startswith("dmc-cartpole"):
            raise SystemExit(f"{path}: env {evaluator.env_name!r} is not a cartpole")
        for k in range(args.episodes):
            b = behaviour(evaluator, k, args.seed)
            print(f"{str(path)[-56:]:56s} {b['return']:7.1f} {b['cost']:6.1f} {b['upright']:8.2f} "
                  f"{b['held_at_end']:12d} {b['turns']:6.1f} {b['max_x']:8.2f} {b['final_x']:+8.2f}")


if __name__ == "__main__":
    main()
