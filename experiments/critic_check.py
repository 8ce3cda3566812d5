"""Do a checkpoint's critics predict what its policy earns and pays? Measured on evaluation episodes.

    python experiments/critic_check.py RUN_DIR_OR_CHECKPOINT [RUN_DIR_OR_CHECKPOINT ...]
                                       [--env NAME] [--episodes 5] [--seed 0] [--history H [H ...]]

At every agent step t of the same deterministic episodes ``evaluate.py`` runs, the critics are
queried at the state the actor saw and the action it took: Q(z_t, a_t) (the smaller twin) and
Qc(z_t, a_t). They are compared with what followed, the discounted sums G_t = Σ_k γ^k r_{t+k}
(γ_c and c for the cost). An episode ends at its time limit, where the critics bootstrap on, so
the sum is completed as if the last 25 steps' mean went on for ever: G_t + γ^(T−t) · mean / (1 − γ).
Printed per checkpoint: the critics' mean prediction against that mean completed return over
all steps, and their correlation over steps (does Qc rank the costly states as costly?).

``--history H``: also query the cost critic at latents filtered from only the last H frames (and
the actions between them), as the trainer's sequences give them (an agent transition t of a
sequence has t + 1 frames of history: 2..S with ``agent.sequence_transitions`` S − 1), where acting
filters over the whole episode. Printed per H over the steps t ≥ H − 1: Qc's mean and correlation.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from latent_adversary.run import make_evaluator
from slac.evaluation import Evaluator
from slac.latent import to_float
from slac.rollout import evaluation_episode

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
    rows: dict[str, list] = {"q": [], "qc": [], "reward": [], "cost": [], "frame": [], "action": []}

    def record(step: dict) -> None:
        z = step["policy_state"]["z"]
        a = torch.as_tensor(step["action"], dtype=torch.float32, device=device).unsqueeze(0)
        rows["frame"].append(step["obs"])
        rows["action"].append(step["action"])
        with torch.no_grad():
            rows["q"].append(float(torch.min(*agent.critic(z, a))))
            rows["qc"].append(float(agent.cost_critic(z, a)))
        rows["reward"].append(step["reward"])
        rows["cost"].append(step["cost"])

    evaluation_episode(evaluator.env, evaluator.policy(), seed, index, on_step=record)  # evaluate.py's episode
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["g"] = completed_returns(out["reward"], agent.cfg.gamma)
    out["gc"] = completed_returns(out["cost"], agent.cfg.gamma_c)
    return out


@torch.no_grad()
def short_history_qc(evaluator: Evaluator, episode: dict[str, np.ndarray], history: int) -> np.ndarray:
    """Qc(z_t, a_t) for t ≥ history − 1, z_t filtered (on means, as the agent's input) from frames
    t − history + 1 .. t only: one batch of windows through ``LatentModel.latents``."""
    device = evaluator.device
    frames = to_float(torch.as_tensor(episode["frame"], device=device))  # (T, C, H, W)
    actions = torch.as_tensor(episode["action"], dtype=torch.float32, device=device)  # (T, A)
    starts = range(len(frames) - history + 1)
    images = torch.stack([frames[s:s + history] for s in starts])  # (B, history, C, H, W)
    between = torch.stack([actions[s:s + history - 1] for s in starts])  # (B, history - 1, A)
    z = evaluator.model.latents(images, between, sample=False)[:, -1]
    return evaluator.agent.cost_critic(z, actions[history - 1:]).cpu().numpy()


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--env", default=None, help="default: the checkpoint's env")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="evaluation seed, as evaluate.py's")
    p.add_argument("--history", type=int, nargs="*", default=[],
                   help="also query Qc on latents filtered from only the last H frames (H >= 1)")
    args = p.parse_args()
    if any(h < 1 for h in args.history):
        p.error("--history takes frame counts >= 1")
    torch.set_num_threads(1)
    print(f"{'checkpoint':48s} {'Q':>8s} {'G':>8s} {'corr':>6s} {'Qc':>8s} {'Gc':>8s} {'corr':>6s} {'cost':>6s}")
    for path in args.checkpoints:
        evaluator = make_evaluator(path, env=args.env, device="cpu")
        episodes = [episode_predictions(evaluator, k, args.seed) for k in range(args.episodes)]
        cat = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}
        cost = np.mean([e["cost"].sum() for e in episodes])
        print(f"{str(path)[-48:]:48s} {cat['q'].mean():8.1f} {cat['g'].mean():8.1f} "
              f"{correlation(cat['q'], cat['g']):6.2f} {cat['qc'].mean():8.1f} {cat['gc'].mean():8.1f} "
              f"{correlation(cat['qc'], cat['gc']):6.2f} {cost:6.1f}")
        for h in args.history:
            qc = np.concatenate([short_history_qc(evaluator, e, h) for e in episodes])
            gc = np.concatenate([e["gc"][h - 1:] for e in episodes])
            print(f"{'  Qc on the last ' + str(h) + ' frames only':48s} {'':8s} {'':8s} {'':6s} {qc.mean():8.1f} "
                  f"{gc.mean():8.1f} {correlation(qc, gc):6.2f}")


if __name__ == "__main__":
    main()
