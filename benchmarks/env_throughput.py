"""Environment throughput: the pixel wrappers against the raw simulator and renderer they wrap.

    python benchmarks/env_throughput.py [--steps 1000] [--rounds 5] [--clock wall|cpu]
                                        [--envs dmc-cartpole-tilted sg-point-goal1]

For each env (64x64, its default action repeat), in one run:
- wrapper: agent steps/s of ``env.step`` (random actions);
- raw limit: the same model's MuJoCo steps (``mujoco.mj_step``, as many per agent step as the
  wrapper advances the simulation) plus one 64x64 render per agent step from the same camera with
  the same render settings, timed bare. It replays the wrapper's run (its controls, from the same
  reset, resetting where it did, untimed), so that both render the same views: a Safety-Gymnasium
  frame takes from 0.8 to 2.9 ms depending on where the robot looks;
- the observation camera's renders/s with the fast settings (the default) and the full ones, and
  the time of a reset (Safety-Gymnasium recompiles its model at every reset);
- two workers: agent steps/s of gymnasium's AsyncVectorEnv with 2 processes, against 1 process,
  and of 2 independent processes each stepping its own env, against 1 (no parent process in the
  loop: whether the env itself scales). On a machine with other jobs running, these speed-ups
  measure the contention too.
The last line is ``wrapper/raw: R`` with R the worst wrapper/raw ratio over the envs measured.
"""

# ruff: noqa: I001  (envs first: it sets MUJOCO_GL before gymnasium's plugins import mujoco)
from __future__ import annotations

import envs
from envs.rendering import Camera

import argparse
import functools
import multiprocessing
import os
import time

import gymnasium as gym
import mujoco
import numpy as np


def _handles(env):
    """(model, data, observation camera, its fast flag) of the env's current MuJoCo world."""
    u = env.unwrapped
    model, data = u.mujoco_handles()
    return model, data, u._camera_name, u.fast_render


def mj_steps_per_agent_step(env) -> int:
    env.reset(seed=0)
    model, data, _, _ = _handles(env)
    t0 = data.time
    for _ in range(5):
        env.step(env.action_space.sample())
    return round((data.time - t0) / model.opt.timestep / 5)


def wrapper_rate(env, steps: int, clock) -> tuple[float, list]:
    """Agent steps/s of env.step under random actions, the resets at episode ends untimed (as in raw_rate).
    Also the run, for raw_rate: (simulator controls, episode ended) per step."""
    env.reset(seed=0)
    elapsed = 0.0
    run = []
    for _ in range(steps):
        action = env.action_space.sample()
        start = clock()
        _, _, terminated, truncated, _ = env.step(action)
        elapsed += clock() - start
        run.append((_handles(env)[1].ctrl.copy(), terminated or truncated))
        if terminated or truncated:
            env.reset()
    return steps / elapsed, run


def raw_rate(env, run: list, mj_steps: int, clock) -> float:
    """Agent steps/s of bare mj_step + render replaying the wrapper's ``run`` from the same reset (the
    same seeds: the same layouts), its resets untimed."""
    env.reset(seed=0)
    model, data, camera_name, fast = _handles(env)
    camera = Camera(model, 64, 64, camera_name, fast=fast)
    elapsed = 0.0
    for control, episode_ended in run:
        start = clock()
        data.ctrl[:] = control
        mujoco.mj_step(model, data, nstep=mj_steps)
        camera.render(data)
        elapsed += clock() - start
        if episode_ended:
            env.reset()
            model, data, _, _ = _handles(env)
            camera.bind(model)
    camera.close()
    return len(run) / elapsed


def render_rate(env, fast: bool, frames: int, clock) -> float:
    """64x64 frames/s of the observation camera on the current state, fast or full render settings."""
    model, data, camera_name, _ = _handles(env)
    camera = Camera(model, 64, 64, camera_name, fast=fast)
    start = clock()
    for _ in range(frames):
        camera.render(data)
    elapsed = clock() - start
    camera.close()
    return frames / elapsed


def reset_time(env, resets: int, clock) -> float:
    start = clock()
    for _ in range(resets):
        env.reset()
    return (clock() - start) / resets


def _process_steps(name: str, seed: int, steps: int, start_at: float) -> tuple[float, float]:
    """In a worker process: build the env, warm up, wait for the common wall time ``start_at``, then
    step ``steps`` times (resets included). Returns (seconds it was late for the start, end time)."""
    env = envs.make(name, seed=seed)
    env.reset(seed=seed)
    action = env.action_space.sample()
    for _ in range(50):
        env.step(action)
    late = time.time() - start_at
    while time.time() < start_at:
        time.sleep(0.001)
    for _ in range(steps):
        if any(env.step(action)[2:4]):
            env.reset()
    return late, time.time()


def process_rates(name: str, steps: int, rounds: int) -> dict[int, float]:
    """Agent steps/s of 1 and 2 independent processes each stepping its own env (no parent in the
    loop): whether the env itself scales over the cores. The workers start stepping at one common
    time after building their envs (a Safety-Gymnasium env takes ~0.5 s to build: timing from each
    worker's own start once made two processes look 1.2x one). Interleaved rounds, best of each."""
    best = {1: 0.0, 2: 0.0}
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.starmap(_process_steps, [(name, i, 1, 0.0) for i in range(2)])  # imports and first contexts
        for _ in range(rounds):
            for workers in (1, 2):
                start_at = time.time() + 5.0  # time enough to build the envs
                spans = pool.starmap(_process_steps, [(name, i, steps, start_at) for i in range(workers)])
                if max(late for late, _ in spans) > 0:
                    raise RuntimeError(f"a worker took more than 5 s to build {name}; machine too busy to measure")
                best[workers] = max(best[workers], workers * steps / (max(end for _, end in spans) - start_at))
    return best


def vector_rates(name: str, steps: int, rounds: int) -> tuple[dict[int, float], float]:
    """Agent steps/s (all workers together) of AsyncVectorEnv with 1 and 2 worker processes,
    measured in interleaved rounds, best of each; and the share of a core the parent process used
    while it drove 2 workers (on 2 cores the workers get what it leaves)."""
    # spawn, not fork: a forked child cannot use the parent's EGL context
    vecs = {w: gym.vector.AsyncVectorEnv([functools.partial(envs.make, name, seed=i) for i in range(w)],
                                         context="spawn") for w in (1, 2)}
    best = dict.fromkeys(vecs, 0.0)
    parent_share = 0.0
    for vec in vecs.values():
        vec.reset(seed=0)
    for _ in range(rounds):
        for workers, vec in vecs.items():
            actions = np.stack([vec.single_action_space.sample() for _ in range(workers)])
            vec.step(actions)
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                vec.step(actions)
            elapsed = time.perf_counter() - start
            if workers * steps / elapsed > best[workers]:
                best[workers] = workers * steps / elapsed
                if workers == 2:
                    parent_share = (time.process_time() - start_cpu) / elapsed
    for vec in vecs.values():
        vec.close()
    return best, parent_share


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1000, help="agent steps per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved wrapper/raw rounds (best of each)")
    p.add_argument("--envs", nargs="+", default=["dmc-cartpole-tilted", "sg-point-goal1"])
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wrapper and raw timed by wall clock or by this process's CPU time (all its threads, the "
                        "software renderer's included): cpu is robust to other jobs on the machine")
    args = p.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, "
          f"MUJOCO_GL={os.environ['MUJOCO_GL']}, {args.clock} clock for wrapper/raw, wall clock for the vector envs")
    ratios = []
    for name in args.envs:
        env = envs.make(name, seed=0)
        mj_steps = mj_steps_per_agent_step(env)
        wrapper = raw = 0.0
        for _ in range(args.rounds):  # interleaved rounds, best of each: load changes hurt both alike
            rate, run = wrapper_rate(env, args.steps, clock)
            wrapper, raw = max(wrapper, rate), max(raw, raw_rate(env, run, mj_steps, clock))
        env.reset(seed=0)
        fast, full = render_rate(env, True, 200, clock), render_rate(env, False, 20, clock)
        reset = reset_time(env, 5, clock)
        rates, parent_share = vector_rates(name, args.steps, args.rounds)
        alone = process_rates(name, args.steps, args.rounds)
        one, two = rates[1], rates[2]
        ratios.append(wrapper / raw)
        print(f"{name}: action repeat {env.unwrapped.action_repeat}, {mj_steps} MuJoCo steps per agent step")
        print(f"  wrapper {wrapper:8.1f} agent steps/s | raw limit {raw:8.1f} (mj_step + 64x64 render) | "
              f"wrapper/raw {wrapper / raw:.2f}")
        print(f"  observation renders/s: fast {fast:7.1f} (no shadows, reflections, multisampling), "
              f"full {full:6.1f} | reset {1000 * reset:.0f} ms")
        print(f"  async vector env: 1 worker {one:7.1f} steps/s, 2 workers {two:7.1f} steps/s, "
              f"speed-up {two / one:.2f}x (parent process busy {parent_share:.0%} of a core)")
        print(f"  independent processes: 1 {alone[1]:7.1f} steps/s, 2 {alone[2]:7.1f} steps/s, "
              f"speed-up {alone[2] / alone[1]:.2f}x", flush=True)
        env.close()
    print(f"wrapper/raw: {min(ratios):.2f}")


if __name__ == "__main__":
    main()
