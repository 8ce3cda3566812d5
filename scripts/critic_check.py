"""Do a checkpoint's critics predict what its policy earns and pays? Measured on evaluation episodes.

    python scripts/critic_check.py RUN_DIR_OR_CHECKPOINT [RUN_DIR_OR_CHECKPOINT ...]
                                   [--env NAME] [--episodes 5] [--seed 0]

At every agent step t of the same deterministic episodes ``evaluate.py`` runs, the critics are
queried at the state the actor saw and the action it took: Q(z_t, a_t) (the smaller twin) and
Qc(z_t, a_t). They are compared with what followed, the discounted sums G_t = Σ_k γ^k r_{t+k}
(γ_c and c for the cost). An episode ends at its time limit, where the critics bootstrap on, so
the sum is completed as if the last 25 steps' mean went on for ever: G_t + γ^(T−t) · mean / (1 − γ).
Printed per checkpoint: the critics' mean prediction against that mean completed return over
all steps, and their correlation over steps (does Qc rank the costly states as costly?).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from slac.evaluation import Evaluator

TAIL = 25  # agent steps whose mean reward/cost is assumed to go on after the time limit


def completed_returns(values: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted sums from every step, completed past the episode's end with the tail's mean."""
    n = len(values)
    returns = np.zeros(n)
    running = values[-TAIL:].mean() / (1.0 - gamma)
    for t in range(n - 1, -1, -1):
        running = values[t] + gamma * running
        returns[t] = running
    return returns


def episode_predictions(evaluator: Evaluator, index: int, seed: int) -> dict[str, np.ndarray]:
    agent, device = evaluator.agent, evaluator.device
    rows: dict[str, list[float]] = {"q": [], "qc": [], "reward": [], "cost": []}

    def record(step: dict) -> None:
        z = step["policy_state"]["z"]
        a = torch.as_tensor(step["action"], dtype=torch.float32, device=device).unsqueeze(0)
        with torch.no_grad():
            rows["q"].append(float(torch.min(*agent.critic(z, a))))
            rows["qc"].append(float(agent.cost_critic(z, a)))
        rows["reward"].append(step["reward"])
        rows["cost"].append(step["cost"])

    evaluator.run(index, seed, on_step=record)
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["g"] = completed_returns(out["reward"], agent.cfg.gamma)
    out["gc"] = completed_returns(out["cost"], agent.cfg.gamma_c)
    return out


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--env", default=None, help="default: the checkpoint's env")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="evaluation seed, as evaluate.py's")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"{'checkpoint':48s} {'Q':>8s} {'G':>8s} {'corr':>6s} {'Qc':>8s} {'Gc':>8s} {'corr':>6s} {'cost':>6s}")
    for path in args.checkpoints:
        evaluator = Evaluator(path, env=args.env, device="cpu")
        episodes = [episode_predictions(evaluator, k, args.seed) for k in range(args.episodes)]
        cat = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}
        cost = np.mean([e["cost"].sum() for e in episodes])
        print(f"{str(path)[-48:]:48s} {cat['q'].mean():8.1f} {cat['g'].mean():8.1f} "
              f"{correlation(cat['q'], cat['g']):6.2f} {cat['qc'].mean():8.1f} {cat['gc'].mean():8.1f} "
              f"{correlation(cat['qc'], cat['gc']):6.2f} {cost:6.1f}")


if __name__ == "__main__":
    main()
