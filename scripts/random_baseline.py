"""Return and cost of a uniform random policy (or of always acting 0): the floor a learning curve must clear.

    python scripts/random_baseline.py --env dmc-cartpole-balance [--episodes 20] [--seed 0] [--policy random|zero]

Episodes use the same per-episode seeds as evaluation (``episode_seed(seed, k, stream=1)``).
"""

from __future__ import annotations

import argparse

import numpy as np

import envs
from slac.rollout import episode_seed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", required=True)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", choices=["random", "zero"], default="random",
                   help="uniform random actions, or the action 0 at every step (an untrained actor's mean)")
    args = p.parse_args()
    env = envs.make(args.env)
    rng = np.random.default_rng(args.seed)
    returns, costs = [], []
    for k in range(args.episodes):
        env.reset(seed=episode_seed(args.seed, k, stream=1))
        total_reward = total_cost = 0.0
        done = False
        while not done:
            action = rng.uniform(-1, 1, env.action_space.shape) if args.policy == "random" else \
                np.zeros(env.action_space.shape, np.float32)
            _, reward, terminated, truncated, info = env.step(action)
            total_reward += reward
            total_cost += info["cost"]
            done = terminated or truncated
        returns.append(total_reward)
        costs.append(total_cost)
    print(f"{args.env}: {args.policy} policy over {args.episodes} episodes: return {np.mean(returns):.1f} "
          f"± {np.std(returns):.1f}, cost {np.mean(costs):.1f} ± {np.std(costs):.1f}")


if __name__ == "__main__":
    main()
