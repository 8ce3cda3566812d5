"""How much of the true simulator state a checkpoint's latent state holds: a linear probe.

    python experiments/latent_probe.py RUN_DIR_OR_CHECKPOINT [...] [--env NAME] [--episodes 10]
                                       [--stochastic] [--random-actions] [--seed 0]

Runs the checkpoint's policy (deterministic, as ``evaluate.py``, or sampling with ``--stochastic``
for more varied states; ``--random-actions``: uniform random actions, the same states for every
checkpoint), and at every agent step t pairs the filtered latent z_t = (z1, z2) with
the simulator state after the frame x_t was rendered: for each joint, a slide's position, a hinge's
cos and sin (a spinning pole has no bounded angle), and every joint velocity. A ridge regression
z_t → state is fitted on the first half of the episodes and scored on the second half; the table
gives R² per state variable (1: the latent determines it linearly; 0: no better than its mean).
Velocities are not in any single frame: the filter must infer them from the sequence.

It also prints how noisy a posterior draw of z1 is: per dimension, the signal-to-noise ratio
SNR = Var_t(posterior mean) / E_t(posterior variance) over the probed steps. Dimensions with SNR < 1
are mostly noise (left at the prior); for the others a draw's noise std is 1/√SNR of the signal's.
For z2 it prints the median std of its transition p(z2_t | z1_t, z2_{t-1}, a) against the median
spread of its draws (the noise z2 adds itself, beyond what the z1 draws carry into it).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from latent_adversary.run import make_evaluator
from slac.evaluation import Evaluator
from slac.rollout import EVAL_STREAM, LatentPolicy, episode_seed, evaluation_episode


def state_variables(model) -> list[tuple[str, callable]]:
    """(name, function of MjData → float) for each slide and hinge position (cos/sin) and velocity."""
    import mujoco  # here, not at the top: envs (imported by slac.evaluation) must set MUJOCO_GL first

    variables = []
    for j in range(model.njnt):
        name, kind = model.joint(j).name or f"joint{j}", model.jnt_type[j]
        q, v = model.jnt_qposadr[j], model.jnt_dofadr[j]
        if kind == mujoco.mjtJoint.mjJNT_SLIDE:
            variables.append((f"{name} pos", lambda d, q=q: d.qpos[q]))
        elif kind == mujoco.mjtJoint.mjJNT_HINGE:
            variables.append((f"{name} cos", lambda d, q=q: np.cos(d.qpos[q])))
            variables.append((f"{name} sin", lambda d, q=q: np.sin(d.qpos[q])))
        else:
            continue  # free and ball joints: quaternions, not probed
        variables.append((f"{name} vel", lambda d, v=v: d.qvel[v]))
    return variables


class RandomActions(LatentPolicy):
    """Filters the latent state as the checkpoint's policy does, but acts uniformly at random: the
    same states for every checkpoint, so that their probes compare representations, not behaviours."""

    def __init__(self, evaluator: Evaluator, deterministic: bool, seed: int):
        super().__init__(evaluator.model, evaluator.agent, evaluator.device, deterministic=deterministic)
        self.space = evaluator.env.action_space
        self.rng = np.random.default_rng(seed)

    def act(self) -> np.ndarray:
        return self.rng.uniform(self.space.low, self.space.high).astype(np.float32)


def probe_episode(evaluator: Evaluator, index: int, seed: int, deterministic: bool, variables: list,
                  random_actions: bool = False,
                  posterior_stats: dict[str, list] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(latents (T-1, Z), states (T-1, V)) of one episode, z_t paired with the state x_t shows;
    appends each step's value of every key of ``posterior_stats`` (if given; keys of the filter
    state, e.g. 'z1_mean', 'z1_std', 'z2', 'z2_std') to its list."""
    _, data = evaluator.env.unwrapped.mujoco_handles()
    latents, states_after = [], []

    def record(step: dict) -> None:
        # called after env.step: policy_state is z_t (filtered up to x_t), data is the state of x_{t+1}
        state = step["policy_state"]
        latents.append(state["z"][0].float().cpu().numpy())
        states_after.append([f(data) for _, f in variables])
        for key, values in (posterior_stats or {}).items():
            values.append(state[key][0].float().cpu().numpy())

    if random_actions:
        policy = RandomActions(evaluator, deterministic, episode_seed(seed, index, stream=EVAL_STREAM))
    else:
        policy = evaluator.policy(deterministic)
    evaluation_episode(evaluator.env, policy, seed, index, on_step=record)  # evaluate.py's episode ``index``
    # z_t for t ≥ 1 pairs with the state after step t-1, i.e. the state x_t shows
    return np.stack(latents[1:]), np.asarray(states_after[:-1], dtype=np.float64)


def ridge_r2(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
             ridge: float = 1e-3) -> np.ndarray:
    """R² per target column of the ridge regression y ≈ [x, 1] W fitted on ``train``, on ``test``.
    Features are standardised with the training statistics; the penalty is ``ridge`` per sample."""
    x, y = train
    mean, std = x.mean(0), x.std(0) + 1e-8
    design = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    penalty = ridge * len(x) * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not penalised
    weights = np.linalg.solve(design.T @ design + penalty, design.T @ y)
    x_test, y_test = test
    predicted = np.hstack([(x_test - mean) / std, np.ones((len(x_test), 1))]) @ weights
    residual = np.sum((y_test - predicted) ** 2, axis=0)
    total = np.sum((y_test - y_test.mean(0)) ** 2, axis=0)
    return 1.0 - residual / np.maximum(total, 1e-12)


def z1_signal_to_noise(means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """Per z1 dimension, from posterior means and stds (T, D): Var_t(mean) / E_t(variance)."""
    return means.var(axis=0) / np.mean(stds**2, axis=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--env", default=None, help="env to probe in (default: the checkpoint's)")
    p.add_argument("--episodes", type=int, default=10, help="half fit the probe, half score it (≥ 2)")
    p.add_argument("--stochastic", action="store_true", help="sample actions and latents, as in training")
    p.add_argument("--random-actions", action="store_true",
                   help="act uniformly at random (same states for every checkpoint) instead of the policy")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed, as evaluate.py's")
    args = p.parse_args()
    if args.episodes < 2:
        p.error("--episodes must be at least 2 (half fit the probe, half score it)")
    torch.set_num_threads(1)
    for path in args.checkpoints:
        evaluator = make_evaluator(path, env=args.env, device="cpu")
        if not hasattr(evaluator.env.unwrapped, "mujoco_handles"):
            raise SystemExit(f"{path}: env {evaluator.env_name!r} has no MuJoCo state to probe (dmc-* and sg-* do)")
        model, _ = evaluator.env.unwrapped.mujoco_handles()
        variables = state_variables(model)
        posterior_stats: dict[str, list] = {"z1_mean": [], "z1_std": [], "z2": [], "z2_std": []}
        episodes = [probe_episode(evaluator, k, args.seed, not args.stochastic, variables, args.random_actions,
                                  posterior_stats) for k in range(args.episodes)]
        half = args.episodes // 2
        fit = tuple(np.concatenate(part) for part in zip(*episodes[:half], strict=True))
        score = tuple(np.concatenate(part) for part in zip(*episodes[half:], strict=True))
        r2 = ridge_r2(fit, score)
        print(f"{path} ({evaluator.env_name}, {len(fit[0])} fit / {len(score[0])} scored steps, "
              f"z {fit[0].shape[1]}-d)")
        for (name, _), value in zip(variables, r2, strict=True):
            print(f"  R² {name:24s} {value:6.3f}")
        post = {key: np.stack(values) for key, values in posterior_stats.items()}  # (steps, D) each
        snr = np.sort(z1_signal_to_noise(post["z1_mean"], post["z1_std"]))[::-1]
        signal = snr[snr > 1]
        print(f"  z1 posterior: {len(signal)} of {len(snr)} dims with SNR > 1, SNR "
              f"{', '.join(f'{s:.1f}' for s in signal)}; a draw's noise std in those: "
              f"{', '.join(f'{1 / np.sqrt(s):.2f}' for s in signal)} of the signal's")
        print(f"  z2: median transition std {np.median(post['z2_std']):.4f}, median spread of its draws "
              f"{np.median(post['z2'].std(axis=0)):.3f}")


if __name__ == "__main__":
    main()
