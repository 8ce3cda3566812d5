"""Environment throughput: the pixel wrappers against the raw simulator and renderer they wrap.

    python benchmarks/env_throughput.py [--steps 300] [--envs dmc-cartpole-swingup sg-point-goal1]

For each env (64x64, its default action repeat), in one run:
- wrapper: agent steps/s of ``env.step`` (random actions);
- raw limit: the same model's MuJoCo steps (``mujoco.mj_step``, as many per agent step as the
  wrapper advances the simulation) plus one 64x64 render per agent step, timed bare;
- two workers: agent steps/s of gymnasium's AsyncVectorEnv with 2 processes, against 1 process.
The last line is ``wrapper/raw: R`` with R the worst wrapper/raw ratio over the envs measured.
"""

# ruff: noqa: I001  (envs first: it sets MUJOCO_GL before gymnasium's plugins import mujoco)
from __future__ import annotations

import envs
from envs.rendering import Camera

import argparse
import functools
import time

import gymnasium as gym
import mujoco
import numpy as np


def _handles(env):
    """(model, data, observation camera, its fast flag) of the env's current MuJoCo world."""
    u = env.unwrapped
    model, data = u.mujoco_handles()
    return model, data, u._camera_name, u.fast_render


def wrapper_rate(env, steps: int) -> tuple[float, int]:
    env.reset(seed=0)
    model, data, _, _ = _handles(env)
    t0 = data.time
    start = time.perf_counter()
    done_steps = 0
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done_steps += 1
        if terminated or truncated:
            break
    elapsed = time.perf_counter() - start
    mj_steps_per_agent_step = round((data.time - t0) / model.opt.timestep / done_steps)
    return done_steps / elapsed, mj_steps_per_agent_step


def raw_rate(env, steps: int, mj_steps: int) -> float:
    env.reset(seed=0)
    model, data, camera_name, fast = _handles(env)
    camera = Camera(model, 64, 64, camera_name, fast=fast)
    data.ctrl[:] = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        mujoco.mj_step(model, data, nstep=mj_steps)
        camera.render(data)
    elapsed = time.perf_counter() - start
    camera.close()
    return steps / elapsed


def vector_rate(name: str, workers: int, steps: int) -> float:
    # spawn, not fork: a forked child cannot use the parent's EGL context
    vec = gym.vector.AsyncVectorEnv([functools.partial(envs.make, name, seed=i) for i in range(workers)],
                                    context="spawn")
    vec.reset(seed=0)
    actions = np.zeros((workers, *vec.single_action_space.shape), np.float32)
    vec.step(actions)
    start = time.perf_counter()
    for _ in range(steps):
        vec.step(actions)
    elapsed = time.perf_counter() - start
    vec.close()
    return workers * steps / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3, help="interleaved wrapper/raw rounds (best of each)")
    p.add_argument("--envs", nargs="+", default=["dmc-cartpole-swingup", "sg-point-goal1"])
    args = p.parse_args()
    ratios = []
    for name in args.envs:
        env = envs.make(name, seed=0)
        wrapper, mj_steps = wrapper_rate(env, args.steps)
        raw = raw_rate(env, args.steps, mj_steps)
        for _ in range(args.rounds - 1):  # interleaved rounds, best of each: load changes hurt both alike
            wrapper = max(wrapper, wrapper_rate(env, args.steps)[0])
            raw = max(raw, raw_rate(env, args.steps, mj_steps))
        one = vector_rate(name, 1, args.steps // 2)
        two = vector_rate(name, 2, args.steps // 2)
        ratios.append(wrapper / raw)
        print(f"{name}: action repeat {env.unwrapped.action_repeat}, {mj_steps} MuJoCo steps per agent step")
        print(f"  wrapper {wrapper:8.1f} agent steps/s | raw limit {raw:8.1f} (mj_step + 64x64 render) | "
              f"wrapper/raw {wrapper / raw:.2f}")
        print(f"  async vector env: 1 worker {one:7.1f} steps/s, 2 workers {two:7.1f} steps/s, "
              f"speed-up {two / one:.2f}x", flush=True)
        env.close()
    print(f"wrapper/raw: {min(ratios):.2f}")


if __name__ == "__main__":
    main()
