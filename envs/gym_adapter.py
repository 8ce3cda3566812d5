"""Any gymnasium env as a pixel safety env: ``envs.make("gym:ID")``, ``train.py --env gym:ID``.

``ID`` is what ``gymnasium.make`` takes, including its ``module:ID`` form: ``gym:my_pkg.my_mod:MyEnv-v0``
imports ``my_pkg.my_mod`` (which registers ``MyEnv-v0`` with ``gymnasium.register``) and makes
``MyEnv-v0``. The module must be importable from where the command runs (the current directory,
``PYTHONPATH`` or an installed package).

The env must provide what the project's envs do (``envs`` module docstring): a cost signal as
``info["cost"] >= 0`` at every step (an env whose ``step()`` returns it as a separate value, as
Safety-Gymnasium's do, needs a wrapper that moves it into ``info``), RGB frames from ``render()`` under
``render_mode="rgb_array"``, and a 1-D Box action space with finite bounds. The adapter turns it
into the project's interface:

- observations: the frame ``render()`` returns after each step (RGB; an alpha channel is dropped),
  resized to ``image_size`` × ``image_size`` with ``cv2.INTER_AREA`` (a non-square frame is
  stretched), as uint8 (3, H, W); the env's own observations are not used;
- actions in [-1, 1], mapped linearly onto the Box's [low, high];
- ``action_repeat`` env steps per agent step, reward and cost summed, the repeat cut short when the
  env terminates or truncates;
- ``max_episode_steps`` (agent steps): ``time_limit`` if given, else the registered
  ``max_episode_steps`` // ``action_repeat``; an env registered without one needs ``time_limit``
  (an InputError says so): the agent's cost budget is per episode.

Overrides: ``image_size`` (a multiple of 16 in [16, 1024], default 64), ``action_repeat`` (>= 1,
default 1) and ``time_limit`` (agent steps, >= 1; it also sets gymnasium's own TimeLimit to
``time_limit * action_repeat`` env steps) are the adapter's; every other key is passed to
``gymnasium.make`` as a keyword argument of the env's constructor (one it does not take is an
InputError), except gymnasium's own ``render_mode``, ``max_episode_steps``, ``autoreset`` and
``apply_api_compatibility``, which the adapter sets.

Construction probes the env (a reset, one step with the mid-range action, two renders), so that a
missing cost or frame is an InputError when the env is made, not in the middle of a run.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass

import cv2
import gymnasium as gym
import numpy as np

from envs.params import fill, require
from envs.pixel_env import repeat, to_native
from slac.errors import InputError

PREFIX = "gym:"
ADAPTER_KEYS = ("image_size", "action_repeat", "time_limit")
RESERVED_KEYS = ("render_mode", "max_episode_steps", "autoreset", "apply_api_compatibility")
COST_HINT = ("an env that returns the cost as a separate value, as Safety-Gymnasium's step() does, needs a "
             "wrapper that puts it in info")


@dataclass
class GymParams:
    """The adapter's own overrides (``env.unwrapped.params``)."""

    image_size: int = 64
    action_repeat: int = 1
    time_limit: int | None = None  # agent steps per episode; None: the registered max_episode_steps

    def validate(self, env_name: str) -> None:
        require(16 <= self.image_size <= 1024 and self.image_size % 16 == 0,
                f"override 'image_size' for env {env_name!r} must be a multiple of 16 in [16, 1024] (the latent "
                f"model's encoder halves it four times), got {self.image_size}")
        require(self.action_repeat >= 1, f"override 'action_repeat' for env {env_name!r} must be >= 1, "
                f"got {self.action_repeat}")
        require(self.time_limit is None or self.time_limit >= 1,
                f"override 'time_limit' for env {env_name!r} must be >= 1 (agent steps), got {self.time_limit}")


def split_id(env_id: str) -> tuple[str | None, str]:
    """``"pkg.mod:Env-v0"`` -> ("pkg.mod", "Env-v0"); ``"Env-v0"`` -> (None, "Env-v0")."""
    module, colon, name = env_id.partition(":")
    return (module, name) if colon else (None, env_id)


def _spec(env_id: str, env_name: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, its module imported first; one InputError line if either fails."""
    module, gym_id = split_id(env_id)
    if not gym_id or module == "":
        raise InputError(f"env {env_name!r}: give gym:ENV_ID or gym:MODULE:ENV_ID (e.g. gym:CartPole-v1, "
                         "gym:my_package.my_module:MyEnv-v0)")
    if module is not None:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise InputError(f"env {env_name!r}: cannot import module {module!r} ({e}); it must be importable "
                             "from here (the current directory, PYTHONPATH or an installed package)") from None
    try:
        return gym.spec(gym_id)
    except gym.error.Error as e:
        where = f"module {module!r} does not register it" if module else \
            "give the module that registers it as gym:MODULE:ENV_ID"
        raise InputError(f"env {env_name!r}: gymnasium has no env {gym_id!r} ({e}); {where} "
                         "(gymnasium.register(id=..., entry_point=...))") from None


def _render_modes(spec) -> list | None:
    """The render modes the env's class declares, None if its entry point is not a class with metadata."""
    creator = spec.entry_point
    if isinstance(creator, str):
        try:
            creator = gym.envs.registration.load_env_creator(creator)
        except (ImportError, AttributeError, ValueError):
            return None  # gymnasium.make reports it
    metadata = getattr(creator, "metadata", None)
    return metadata.get("render_modes") if isinstance(metadata, dict) else None


class GymPixelEnv(gym.Env):
    """A gymnasium env (``self.env``) seen through its rendered frames, with the project's interface."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, env_id: str, env_name: str | None = None, **overrides):
        env_name = env_name or PREFIX + env_id
        self.env_name = env_name
        reserved = [k for k in RESERVED_KEYS if k in overrides]
        if reserved:
            instead = " (the episode length is 'time_limit', in agent steps)" if reserved[0] == "max_episode_steps" \
                else ""
            raise InputError(f"override {reserved[0]!r} for env {env_name!r} is the adapter's to set{instead}; "
                             f"valid: {', '.join(ADAPTER_KEYS)} and keyword arguments of the env's constructor")
        self.params = fill(GymParams, {k: overrides.pop(k) for k in ADAPTER_KEYS if k in overrides}, env_name)
        self.env_kwargs = dict(overrides)
        spec = _spec(env_id, env_name)
        p = self.params
        if p.time_limit is not None:
            native_limit = p.time_limit * p.action_repeat
            self.max_episode_steps = p.time_limit
        elif spec.max_episode_steps is not None:
            native_limit = None  # the registered TimeLimit
            self.max_episode_steps = spec.max_episode_steps // p.action_repeat
            require(self.max_episode_steps >= 1, f"env {env_name!r}: its episodes of {spec.max_episode_steps} env "
                    f"steps are shorter than one agent step of action_repeat={p.action_repeat}")
        else:
            raise InputError(f"env {env_name!r} is registered without max_episode_steps; give the episode length "
                             "in agent steps with the override time_limit (--set env_overrides.time_limit=N)")
        modes = _render_modes(spec)
        if modes is not None and "rgb_array" not in modes:
            raise InputError(f"env {env_name!r} cannot render RGB arrays (its metadata['render_modes'] is {modes}); "
                             "the adapter observes it through render() with render_mode='rgb_array'")
        self.env = self._make(spec, native_limit)
        try:
            self._adapt()
        except BaseException:
            self.env.close()
            raise

    def _adapt(self) -> None:
        """Spaces and checks of the made env, then the probe."""
        env_name, p = self.env_name, self.params
        self.action_repeat = p.action_repeat
        self.image_size = p.image_size
        space = self.env.action_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise InputError(f"env {env_name!r} has action space {space}; the agent needs a 1-D Box "
                             "(continuous actions, shape (n,))")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise InputError(f"env {env_name!r} has an action space with infinite bounds ({space}); actions in "
                             "[-1, 1] are mapped linearly onto [low, high], which must be finite")
        self._low, self._high = space.low.astype(np.float64), space.high.astype(np.float64)
        self._native_dtype = space.dtype
        self.observation_space = gym.spaces.Box(0, 255, (3, p.image_size, p.image_size), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)
        self._frame: np.ndarray | None = None
        self._steps = 0  # env steps since construction (to name the step of a missing cost)
        self._t = 0
        self._probe()

    def _make(self, spec, native_limit: int | None) -> gym.Env:
        extra = {} if native_limit is None else {"max_episode_steps": native_limit}
        try:
            env = gym.make(spec.id, render_mode="rgb_array", **extra, **self.env_kwargs)
        except ImportError as e:
            raise InputError(f"env {self.env_name!r}: gymnasium cannot import its entry point "
                             f"{spec.entry_point!r} ({e})") from None
        except TypeError as e:
            key = re.search(r"unexpected keyword argument '(\w+)'", str(e))
            if key is None:
                raise
            if key[1] == "render_mode":
                raise InputError(f"env {self.env_name!r} cannot render RGB arrays: its constructor takes no "
                                 "render_mode (it must take render_mode='rgb_array')") from None
            raise InputError(f"unknown override {key[1]!r} for env {self.env_name!r}: not a keyword argument of its "
                             f"constructor ({e}); the adapter's own: {', '.join(ADAPTER_KEYS)}") from None
        if env.render_mode != "rgb_array":
            env.close()
            raise InputError(f"env {self.env_name!r} cannot render RGB arrays: made with render_mode='rgb_array' "
                             f"its render_mode is {env.render_mode!r} (its constructor must set self.render_mode)")
        return env

    def _probe(self) -> None:
        """A reset and one step: the env renders frames and reports a cost, or an InputError says so now."""
        self.env.reset()
        self._render()
        self._env_step(self._native(np.zeros(self.action_space.shape)))  # a step without a cost raises
        self._render()

    # ---- the parts of a step
    def _native(self, action) -> np.ndarray:
        native = np.clip(to_native(action, self._low, self._high), self._low, self._high)  # float rounding
        return native.astype(self._native_dtype)

    def _render(self) -> np.ndarray:
        frame = self.env.render()
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] in (3, 4)
                and frame.dtype == np.uint8 and frame.shape[0] > 0 and frame.shape[1] > 0):
            what = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else repr(frame)[:60]
            raise InputError(f"env {self.env_name!r} cannot render RGB arrays: render() with render_mode='rgb_array' "
                             f"returned {what}; it must return a uint8 (H, W, 3) array")
        self._frame = frame[:, :, :3]
        return self._frame

    def _resized(self, size: int) -> np.ndarray:
        """The last frame at (size, size, 3)."""
        if self._frame.shape[:2] == (size, size):
            return np.ascontiguousarray(self._frame)
        return cv2.resize(np.ascontiguousarray(self._frame), (size, size), interpolation=cv2.INTER_AREA)

    def _observation(self) -> np.ndarray:
        self._render()
        return np.ascontiguousarray(self._resized(self.image_size).transpose(2, 0, 1))

    def _cost_of(self, info: dict) -> float:
        if "cost" not in info:
            raise InputError(f"env {self.env_name!r} reports no info['cost'] at env step {self._steps}; the agent "
                             f"needs a cost >= 0 in the info of every step ({COST_HINT})")
        try:
            cost = float(np.asarray(info["cost"], dtype=np.float64).item())
        except (TypeError, ValueError):
            cost = math.nan
        if not (math.isfinite(cost) and cost >= 0):
            raise InputError(f"env {self.env_name!r} reports info['cost'] = {info['cost']!r} at env step "
                             f"{self._steps}; the cost must be a finite number >= 0")
        return cost

    def _env_step(self, native: np.ndarray) -> tuple[float, float, bool, bool]:
        _, reward, terminated, truncated, info = self.env.step(native)
        self._steps += 1
        return float(reward), self._cost_of(info), bool(terminated), bool(truncated)

    # ---- gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.env.reset(seed=seed, options=options)  # the env's own RNG: a seed fixes the episode
        self._t = 0
        return self._observation(), {"cost": 0.0}

    def step(self, action):
        reward, cost, terminated, truncated = repeat(self._env_step, self._native(action), self.action_repeat)
        self._t += 1
        truncated = (self._t >= self.max_episode_steps or truncated) and not terminated
        return self._observation(), reward, terminated, truncated, {"cost": cost}

    def render_overview(self, size: int = 256) -> np.ndarray:
        """The env's last rendered frame at (size, size, 3) uint8, for videos."""
        return self._resized(size)

    def render(self):
        return self._frame.copy()

    def close(self) -> None:
        self.env.close()
