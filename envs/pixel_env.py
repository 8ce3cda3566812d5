"""The part every MuJoCo pixel env shares: actions in [-1, 1], action repeat, time limit, cameras.

A family subclasses :class:`PixelEnv` and provides the simulator side: ``mujoco_handles()`` (the
current model and data), ``reset_simulation(seed)`` and ``simulation_step(native_action)``
returning (reward, cost, terminated, truncated) of one simulator step. When the family swaps its
model (Safety-Gymnasium rebuilds it at every reset), ``on_new_model`` applies the shift parameters
to it and the cameras are re-bound to it (re-created if its textures or meshes differ).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.rendering import Camera, asset_signature


def to_native(action, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """An agent's action, clipped to [-1, 1], mapped linearly onto the box [low, high] (float64)."""
    action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    return low + (action + 1.0) * 0.5 * (high - low)


def repeat(step, action: np.ndarray, times: int) -> tuple[float, float, bool, bool]:
    """``step(action)`` -> (reward, cost, terminated, truncated) up to ``times`` times, stopping at an episode's
    end: the summed reward and cost and the last flags (one agent step of an action repeat)."""
    reward = cost = 0.0
    terminated = truncated = False
    for _ in range(times):
        r, c, terminated, truncated = step(action)
        reward += r
        cost += c
        if terminated or truncated:
            break
    return reward, cost, terminated, truncated


class PixelEnv(gym.Env):
    """Observations: (3, H, W) uint8 from ``camera``; ``info["cost"]`` summed over the action repeat."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, image_size: int, action_repeat: int, max_episode_steps: int, native_low: np.ndarray,
                 native_high: np.ndarray, camera: str, overview_camera: str, fast_render: bool = True):
        self.action_repeat = action_repeat
        self.max_episode_steps = max_episode_steps
        self.image_size = image_size
        self.observation_space = gym.spaces.Box(0, 255, (3, image_size, image_size), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, native_low.shape, np.float32)
        self._low, self._high = native_low, native_high
        self._camera_name, self._overview_name = camera, overview_camera
        self.fast_render = fast_render
        self._cameras: dict[tuple[str, int, bool], Camera] = {}
        self._bound_model = None
        self._t = 0

    # ---- the family's side
    def mujoco_handles(self):
        """(MjModel, MjData) of the current simulation."""
        raise NotImplementedError

    def reset_simulation(self, seed: int) -> None:
        raise NotImplementedError

    def simulation_step(self, action: np.ndarray) -> tuple[float, float, bool, bool]:
        raise NotImplementedError

    def on_new_model(self, model) -> None:
        """Called once per compiled model before it is rendered (to apply shift parameters)."""

    def before_render(self) -> None:
        """Bring quantities derived from the state (body poses) up to date, if stepping skipped that."""

    # ---- shared
    def _bind(self):
        """(model, data); a model not seen before gets the shift parameters and the cameras."""
        model, data = self.mujoco_handles()
        if model is not self._bound_model:
            self.on_new_model(model)
            self._bound_model = model
            for key, camera in list(self._cameras.items()):
                if camera.assets == asset_signature(model):
                    camera.bind(model)  # keeps the textures already uploaded
                else:
                    camera.close()
                    del self._cameras[key]
        return model, data

    def _render(self, camera: str, size: int, fast: bool) -> np.ndarray:
        model, data = self._bind()
        self.before_render()
        key = (camera, size, fast)
        if key not in self._cameras:
            self._cameras[key] = Camera(model, size, size, camera, fast=fast)
        return self._cameras[key].render(data)

    def _observation(self) -> np.ndarray:
        frame = self._render(self._camera_name, self.image_size, self.fast_render)
        return np.ascontiguousarray(frame.transpose(2, 0, 1))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # the simulator draws its initial state/layout from its own RNG: seed it from ours on every
        # reset, so a seed fixes the episode and an unseeded reset follows the env's seeded stream
        self.reset_simulation(int(self.np_random.integers(2**31)))
        self._bind()  # before the first simulator step: a rebuilt model gets its shift parameters
        self._t = 0
        return self._observation(), {"cost": 0.0}

    def step(self, action):
        action = to_native(action, self._low, self._high)
        reward, cost, terminated, truncated = repeat(self.simulation_step, action, self.action_repeat)
        self._t += 1
        truncated = (self._t >= self.max_episode_steps or truncated) and not terminated
        return self._observation(), float(reward), bool(terminated), bool(truncated), {"cost": float(cost)}

    def render_overview(self, size: int = 256) -> np.ndarray:
        """A (size, size, 3) uint8 frame of the scene from the family's overview camera, for videos.

        Always at full quality (shadows, reflections, multisampling), whatever ``fast_render`` says.
        """
        return self._render(self._overview_name, size, fast=False)

    def render(self):
        return self.render_overview()

    def close(self) -> None:
        for camera in self._cameras.values():
            camera.close()
        self._cameras.clear()
