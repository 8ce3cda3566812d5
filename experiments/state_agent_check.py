"""The project's SAC-Lagrangian agent on the cartpole's true state instead of a latent state.

    python experiments/state_agent_check.py [--env dmc-cartpole-tilted] [--preset cpu-small] [--set key=value ...]
                                            [--episodes 60] [--seed 0] [--velocity-noise F] [--updates-per-step K]
                                            [--share-batch] [--n-step N] [--final-episodes N] [--probe-episodes N]
                                            [--freeze-actor-after E]

A diagnostic that separates the agent from the representation: ``slac.agent.SafeSACAgent`` with a
preset's agent settings learns from (cart x, cos θ, sin θ, cart speed, pole speed) read from the
simulator, with the same budget, λ rule and action repeat as a pixel run (λ sees each agent step's
cost and then the episode's, as the trainer reports them: ``agent.lagrangian``).
8 random episodes first, then per episode: one stochastic episode, λ updated from its costs, one
agent update (batch ``agent.batch_size``) per agent step of it (K with ``--updates-per-step K``;
``--share-batch``: the K take their gradient steps on one batch, reusing its transitions: screened and
rejected, docs/results.md "One filtered batch for the 4 agent updates"; the trainer's
``train.split_agent_batch`` deals one batch out instead, which here is a fresh batch per update;
``--n-step N`` gives the critics N-step targets, :func:`n_step_update`).
Every 4th episode prints the training episode's return/cost and one deterministic evaluation
episode's (seed 999); ``--final-episodes N`` ends with the mean return and cost of N deterministic
episodes (the mean action, as evaluated), then of the same N episodes with actions sampled from π (the
policy whose training episodes drive λ).
``--freeze-actor-after E`` stops the actor and α learning from episode E on (their learning rates
set to 0), so that the critics go on learning the value of one fixed policy: can they, given the
updates?
If this learns and the pixel run does not, look at the latent model. ``--set env_overrides.KEY=V``
applies to the env as in a pixel run (e.g. ``env_overrides.time_limit=40``: 40-step episodes).

``--velocity-noise F`` blurs the two speeds as a latent state that holds them only partly would:
Gaussian noise of std F × (that speed's std over the random episodes) is drawn afresh every time the
agent sees a state (acting, and every sampled batch, as latents are re-sampled from the posterior
per update). A linear probe of such a speed has R² ≈ 1 / (1 + F²): F = 0.5 gives 0.8, F = 1 gives 0.5.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

import envs
from slac.agent import AgentBatch, SafeSACAgent
from slac.config import resolve


def cartpole_state(env) -> np.ndarray:
    _, data = env.unwrapped.mujoco_handles()
    x, theta = data.qpos[0], data.qpos[1]
    return np.array([x, np.cos(theta), np.sin(theta), data.qvel[0], data.qvel[1]], np.float32)


def n_step_update(agent: SafeSACAgent, batch: AgentBatch, n: int) -> dict[str, float]:
    """One agent update with n-step critic targets: ``batch.reward`` and ``batch.cost`` are the
    discounted sums of n steps' rewards and costs (Σ_j γ^j r_{t+j}, Σ_j γ_c^j c_{t+j}) and
    ``batch.next_z`` is z_{t+n}, so the bootstrap must be discounted by γ^n and γ_c^n. The agent's
    update uses its ``cfg.gamma`` and ``cfg.gamma_c`` as the bootstrap factors only, so it runs with a
    copy of its config that has γ^n and γ_c^n (its own config is restored afterwards)."""
    if n == 1:
        return agent.update(batch)
    cfg = agent.cfg
    agent.cfg = dataclasses.replace(cfg, gamma=cfg.gamma**n, gamma_c=cfg.gamma_c**n)
    try:
        return agent.update(batch)
    finally:
        agent.cfg = cfg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="dmc-cartpole-tilted", help="a dmc-cartpole-* env")
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--set", nargs="+", default=[], dest="sets", metavar="KEY=VALUE")
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--velocity-noise", type=float, default=0.0, metavar="F",
                   help="noise on the speeds the agent sees, in units of their std under random actions")
    p.add_argument("--updates-per-step", type=int, default=1, metavar="K",
                   help="agent updates per agent step of each episode (1: a pixel run's updates_per_step 1.0)")
    p.add_argument("--share-batch", action="store_true",
                   help="the K updates of each agent step all learn from one batch (reused K times)")
    p.add_argument("--n-step", type=int, default=1, metavar="N",
                   help="n-step critic targets: N steps' discounted rewards and costs, then the bootstrap")
    p.add_argument("--final-episodes", type=int, default=0, metavar="N",
                   help="after training, N deterministic then N sampled episodes (seeds 1000..): mean return and cost")
    p.add_argument("--probe-episodes", type=int, default=0, metavar="N",
                   help="after training, compare the critics with simulator rollouts on N deterministic episodes")
    p.add_argument("--freeze-actor-after", type=int, default=None, metavar="E",
                   help="from episode E on, only the critics learn (actor and alpha learning rates 0)")
    args = p.parse_args()
    if not args.env.startswith("dmc-cartpole"):
        p.error("--env must be a dmc-cartpole-* env (the state read here is the cartpole's)")
    if args.updates_per_step < 1 or args.n_step < 1 or min(args.final_episodes, args.probe_episodes) < 0 \
            or (args.freeze_actor_after is not None and args.freeze_actor_after < 0):
        p.error("--updates-per-step and --n-step must be >= 1; --final-episodes, --probe-episodes and "
                "--freeze-actor-after >= 0")
    if args.probe_episodes and args.velocity_noise:
        # the probe's policy and critics see the simulator's state as it is, and its paired rollouts
        # share torch's random numbers only: noisy speeds would make it probe another agent
        p.error("--probe-episodes probes the noise-free agent: not with --velocity-noise")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = resolve(args.preset, sets=args.sets)
    env = envs.make(args.env, **cfg.env_overrides)
    steps = env.unwrapped.max_episode_steps
    agent = SafeSACAgent(cfg.agent, 5, 1, env.unwrapped.action_repeat, steps)
    capacity = (8 + args.episodes) * steps
    z, next_z = np.zeros((capacity, 5), np.float32), np.zeros((capacity, 5), np.float32)
    action, reward, cost = np.zeros((capacity, 1), np.float32), np.zeros(capacity, np.float32), \
        np.zeros(capacity, np.float32)
    size = 0

    def episode(policy, seed: int, store: bool = True, lagrange: bool = False) -> tuple[float, float]:
        """Returns the episode's return and cost; ``lagrange``: λ sees every step's cost, then the episode's."""
        nonlocal size
        env.reset(seed=seed)
        state, total_reward, total_cost = cartpole_state(env), 0.0, 0.0
        for _ in range(steps):
            a = policy(state)
            _, r, _, _, info = env.step(a)
            following = cartpole_state(env)
            if store:
                z[size], action[size], reward[size], cost[size], next_z[size] = state, a, r, info["cost"], following
                size += 1
            if lagrange:
                agent.lagrangian.observe_step(float(info["cost"]))
            state, total_reward, total_cost = following, total_reward + r, total_cost + info["cost"]
        if lagrange:
            agent.lagrangian.observe_episode(total_cost)
        return total_reward, total_cost

    noise_std = np.zeros(5, np.float32)  # set from the random episodes' speeds

    def seen(states: np.ndarray) -> torch.Tensor:
        """The states as the agent sees them: speeds (columns 3, 4) with fresh noise."""
        return torch.as_tensor(states + noise_std * rng.standard_normal(states.shape).astype(np.float32))

    def act(deterministic: bool):
        return lambda s: agent.act(seen(s)[None], deterministic)[0].numpy()

    for k in range(8):
        episode(lambda s: rng.uniform(-1, 1, 1).astype(np.float32), seed=k)
    noise_std[3:] = args.velocity_noise * z[:size, 3:].std(axis=0)
    print(f"{args.env}: budget {agent.budget_per_episode:g} per episode; agent settings of preset {args.preset} "
          f"{' '.join(args.sets)}; speed noise std {noise_std[3]:.3g}, {noise_std[4]:.3g}")
    n = args.n_step
    reward_discounts, cost_discounts = cfg.agent.gamma ** np.arange(n), cfg.agent.gamma_c ** np.arange(n)
    for k in range(args.episodes):
        if k == args.freeze_actor_after:
            for group in agent.optimizers["actor"].param_groups + agent.optimizers["alpha"].param_groups:
                group["lr"] = 0.0
            print(f"episode {k}: actor and alpha frozen from here on", flush=True)
        ret, episode_cost = episode(act(False), seed=100 + k, lagrange=True)
        for u in range(steps * args.updates_per_step):
            if u % args.updates_per_step == 0 or not args.share_batch:
                i = rng.integers(0, size, cfg.agent.batch_size)
                if n > 1:  # redraw t within its episode so that t+n-1 stays in it (episodes: `steps` long, in order)
                    i = i // steps * steps + rng.integers(0, steps - n + 1, cfg.agent.batch_size)
                window = i[:, None] + np.arange(n)  # (B, n): t .. t+n-1
                n_reward = (reward[window] * reward_discounts).sum(1).astype(np.float32)
                n_cost = (cost[window] * cost_discounts).sum(1).astype(np.float32)
                batch = AgentBatch(seen(z[i]), torch.as_tensor(action[i]), torch.as_tensor(n_reward),
                                   torch.as_tensor(n_cost), seen(next_z[i + n - 1]), torch.zeros(cfg.agent.batch_size))
            metrics = n_step_update(agent, batch, n)
        if k % 4 == 3:
            eval_return, eval_cost = episode(act(True), seed=999, store=False)
            print(f"episode {k + 1:3d}: train {ret:6.0f} / {episode_cost:5.0f}  eval {eval_return:6.0f} / "
                  f"{eval_cost:5.0f}  lambda {agent.lagrangian.value:.3f}  alpha {metrics['train/alpha']:.3f}  "
                  f"entropy {metrics['train/entropy']:.2f}  Q {metrics['train/q']:.0f}  Qc {metrics['train/qc']:.0f}",
                  flush=True)
    if args.final_episodes:
        for label, deterministic in (("deterministic", True), ("sampled", False)):  # the mean action, then π's
            final = np.array([episode(act(deterministic), seed=1000 + k, store=False)
                              for k in range(args.final_episodes)])
            over = (final[:, 1] > agent.budget_per_episode).mean()
            print(f"final ({args.final_episodes} {label} episodes): return {final[:, 0].mean():.1f}, "
                  f"cost {final[:, 1].mean():.1f} (max {final[:, 1].max():.0f}), over budget {100 * over:.0f} %")
    for k in range(args.probe_episodes):
        probe_critics(env, agent, cfg.agent, seed=1000 + k)


def probe_critics(env, agent: SafeSACAgent, cfg, seed: int, horizon: int = 100, delta: float = 0.1,
                  samples: int = 8) -> None:
    """One deterministic episode; every 10th step the critics against rollouts from the simulator state.

    A rollout takes a first action, then the policy, for ``horizon`` agent steps, sums the discounted
    rewards and costs (γ, γ_c per agent step; each step sums the action repeat's simulator steps, as
    the env does) and restores the simulator's state. "true" values are these sums with the
    deterministic policy (the one evaluated); "sampled" is the mean cost over ``samples`` rollouts of
    the sampling policy π, the one Qc estimates the value of (the rollouts at a, a + δ and a − δ share
    their random numbers, so the difference is not swamped by the noise). The sums omit the tail past
    the horizon (γ_c^100 ≈ 0.61 of a cost that persists), so they are lower bounds on the discounted
    sums the critics estimate.
    """
    import mujoco  # here, not at the top: envs must choose MUJOCO_GL before mujoco is first imported

    model, data = env.unwrapped.mujoco_handles()
    assert np.allclose(model.actuator_ctrlrange, [[-1.0, 1.0]]), "native actions are the env's [-1, 1] here"
    repeat = env.unwrapped.action_repeat

    def policy(state: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return agent.act(torch.as_tensor(state)[None], deterministic)[0].numpy()

    def rollout(first_action: np.ndarray, deterministic: bool = True) -> tuple[float, float]:
        saved = data.qpos.copy(), data.qvel.copy(), data.act.copy(), data.time
        rewards = costs = 0.0
        action = np.clip(first_action, -1.0, 1.0)
        for k in range(horizon):
            for _ in range(repeat):
                r, c, _, _ = env.unwrapped.simulation_step(action.astype(np.float64))
                rewards, costs = rewards + cfg.gamma**k * r, costs + cfg.gamma_c**k * c
            action = policy(cartpole_state(env), deterministic)
        data.qpos[:], data.qvel[:], data.act[:], data.time = saved
        mujoco.mj_forward(model, data)
        return rewards, costs

    def sampled_cost(first_action: np.ndarray) -> float:
        """Mean discounted cost of ``samples`` rollouts of π (random numbers 0..samples-1)."""
        total = 0.0
        for k in range(samples):
            with torch.random.fork_rng():
                torch.manual_seed(k)
                total += rollout(first_action, deterministic=False)[1]
        return total / samples

    env.reset(seed=seed)
    print(f"probe, seed {seed}: Q and Qc at the policy's action against {horizon}-step rollouts")
    for t in range(env.unwrapped.max_episode_steps):
        state = cartpole_state(env)
        action = policy(state)
        if t % 10 == 0:
            z, a = torch.as_tensor(state)[None], torch.as_tensor(action)[None].requires_grad_(True)
            q, qc = torch.min(*agent.critic(z, a)), agent.cost_critic(z, a)
            (dqc_da,) = torch.autograd.grad(qc.sum(), a)
            true_q, true_qc = rollout(action)
            high, low = np.minimum(action + delta, 1.0), np.maximum(action - delta, -1.0)  # within [-1, 1]
            width = float((high - low)[0])
            slope = (rollout(high)[1] - rollout(low)[1]) / width
            sampled_qc = sampled_cost(action)
            sampled_slope = (sampled_cost(high) - sampled_cost(low)) / width
            print(f"  t {t:3d}  x {state[0]:+.3f}  x' {state[3]:+.2f}  θ {np.arctan2(state[2], state[1]):+.3f}  "
                  f"a {action[0]:+.3f}  Q {q.item():6.1f} (true {true_q:6.1f})  Qc {qc.item():6.1f} "
                  f"(true {true_qc:6.1f}, sampled {sampled_qc:6.1f})  ∂Qc/∂a {dqc_da.item():+7.2f} "
                  f"(true {slope:+7.2f}, sampled {sampled_slope:+7.2f})")
        env.step(action)


if __name__ == "__main__":
    main()
