"""A tiny synthetic pixel env with a cost signal, for fast tests (no MuJoCo).

A point moves on the unit square. Reward is the decrease of its distance to a goal; cost is 1 on
each step it spends inside a hazard disc. The image (3, H, W) shows the goal (green), the hazard
(red, or another colour in a shift) and the point (blue). Like stable-baselines3's FakeImageEnv,
it exists so the learner can be tested in seconds; the real envs have their own tests.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ToyReachEnv(gym.Env):
    """Point reaching a goal while avoiding a hazard disc, observed as a uint8 image."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, image_size: int = 64, action_repeat: int = 1, time_limit: int = 50,
                 hazard_radius: float = 0.18, hazard_color: tuple[int, int, int] = (220, 40, 40),
                 speed: float = 0.05):
        self.image_size = image_size
        self.action_repeat = action_repeat
        self.time_limit = time_limit
        self.hazard_radius = hazard_radius
        self.hazard_color = np.asarray(hazard_color, dtype=np.uint8)
        self.speed = speed
        self.observation_space = gym.spaces.Box(0, 255, (3, image_size, image_size), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        grid = (np.arange(image_size) + 0.5) / image_size
        self._xx, self._yy = np.meshgrid(grid, grid)
        self._t = 0

    @property
    def max_episode_steps(self) -> int:
        """Agent steps per episode."""
        return self.time_limit

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        self._goal = rng.uniform(0.15, 0.85, 2)
        self._hazard = rng.uniform(0.25, 0.75, 2)
        self._pos = rng.uniform(0.05, 0.95, 2)
        self._t = 0
        return self._image(self._pos, self.image_size), {"cost": 0.0}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        reward = cost = 0.0
        for _ in range(self.action_repeat):
            before = np.linalg.norm(self._pos - self._goal)
            self._pos = np.clip(self._pos + self.speed * action, 0.0, 1.0)
            reward += float(before - np.linalg.norm(self._pos - self._goal)) * 10.0
            cost += float(np.linalg.norm(self._pos - self._hazard) < self.hazard_radius)
        self._t += 1
        truncated = self._t >= self.time_limit
        return self._image(self._pos, self.image_size), reward, False, truncated, {"cost": cost}

    def _image(self, pos: np.ndarray, size: int) -> np.ndarray:
        if size == self.image_size:
            xx, yy = self._xx, self._yy
        else:
            grid = (np.arange(size) + 0.5) / size
            xx, yy = np.meshgrid(grid, grid)
        img = np.full((size, size, 3), 235, np.uint8)

        def disc(center, radius):
            return (xx - center[0]) ** 2 + (yy - center[1]) ** 2 < radius**2

        img[disc(self._hazard, self.hazard_radius)] = self.hazard_color
        img[disc(self._goal, 0.07)] = (40, 180, 40)
        img[disc(pos, 0.05)] = (40, 60, 220)
        return np.ascontiguousarray(img.transpose(2, 0, 1))

    def render_overview(self, size: int = 256) -> np.ndarray:
        """A (size, size, 3) uint8 frame of the whole scene, for videos."""
        return self._image(self._pos, size).transpose(1, 2, 0).copy()

    def render(self):
        return self.render_overview()
