"""Tiny gymnasium envs for tests/test_gym_env.py, registered on import (``gym:tests.tiny_gym_env:Tiny-v0``).

``Tiny-v0``: a point on a line, x in [-1, 1]. The native action (Box [-0.5, 1.5], so that mapping
[-1, 1] onto it is not the identity) sets the velocity ``action - 0.5``; reward ``-|x - 0.8|``, cost
1 while x > 0.3, terminated when x reaches ±1. ``render()`` draws a 24×40 RGB frame (not square: the
adapter stretches it). The variants each lack one thing the adapter needs.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class TinyPointEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, speed: float = 0.1):
        self.render_mode = render_mode
        self.speed = speed
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-0.5, 1.5, (1,), np.float32)
        self.native_actions: list[np.ndarray] = []  # every action this env received
        self.x = 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-0.5, 0.5))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.native_actions.append(np.array(action, copy=True))
        self.x = float(np.clip(self.x + self.speed * (float(action[0]) - 0.5), -1.0, 1.0))
        reward = -abs(self.x - 0.8)
        terminated = abs(self.x) >= 1.0
        return np.array([self.x], np.float32), reward, terminated, False, self._info()

    def _info(self) -> dict:
        return {"cost": float(self.x > 0.3)}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        frame = np.full((24, 40, 3), 230, np.uint8)
        frame[:, 26:] = (230, 120, 120)  # the hazard, x > 0.3
        column = int(round((self.x + 1.0) / 2.0 * 39))
        frame[8:16, max(column - 1, 0):column + 2] = (30, 50, 220)
        return frame


class TinyNoCostEnv(TinyPointEnv):
    def _info(self) -> dict:
        return {}


class TinyNoRenderEnv(TinyPointEnv):
    metadata = {"render_modes": ["human"]}


class TinyFloatFrameEnv(TinyPointEnv):
    def render(self):
        return super().render().astype(np.float32) / 255.0


class TinyDiscreteEnv(TinyPointEnv):
    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        self.action_space = gym.spaces.Discrete(3)


gym.register("Tiny-v0", entry_point=TinyPointEnv, max_episode_steps=40)
gym.register("TinyNoLimit-v0", entry_point=TinyPointEnv)
gym.register("TinyNoCost-v0", entry_point=TinyNoCostEnv, max_episode_steps=40)
gym.register("TinyNoRender-v0", entry_point=TinyNoRenderEnv, max_episode_steps=40)
gym.register("TinyFloatFrame-v0", entry_point=TinyFloatFrameEnv, max_episode_steps=40)
gym.register("TinyDiscrete-v0", entry_point=TinyDiscreteEnv, max_episode_steps=40)
