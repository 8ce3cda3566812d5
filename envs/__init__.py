"""Pixel safety environments and named source → target shifts.

    envs.make(name, seed=None, **overrides) -> gymnasium.Env
    envs.names() -> list[str]                   every registered env name ``make`` accepts
    envs.known(name) -> bool                    a registered name, or ``gym:ID`` (any gymnasium env)
    envs.SHIFTS: dict[str, Shift]               named source → target pairs
    python -m envs --list                       a table of both

Every env returns uint8 observations of shape (3, H, W) (64×64 by default, ``image_size``
override), takes actions in [-1, 1], and reports ``info["cost"] >= 0`` at every step (summed over
the action repeat, like the reward). ``env.unwrapped`` exposes ``action_repeat``,
``max_episode_steps`` (agent steps) and ``render_overview(size=256)`` (an RGB frame for videos).

Besides the registered names, ``make("gym:ID")`` wraps any gymnasium env (``gym:MODULE:ID`` imports
MODULE first, as ``gymnasium.make("MODULE:ID")`` does) into this interface: see ``envs.gym_adapter``.
"""

from __future__ import annotations

import os
import sys
import types

# before anything imports mujoco (gymnasium's plugin loader does): headless rendering by default
os.environ.setdefault("MUJOCO_GL", "egl")
# Mesa's software renderer (llvmpipe, what egl runs on without a GPU) rasterises in worker threads by
# default; for 64x64 frames handing work to them costs more than it saves: rendering in the calling
# thread is ~1.5x faster and lets env worker processes scale over the cores (docs/performance.md)
os.environ.setdefault("LP_NUM_THREADS", "0")
# gymnasium's plugin loader imports gymnasium-robotics, which prints a notice about Adroit envs
# (unused here) to stderr on every import; an empty notification table keeps runs' output clean.
sys.modules.setdefault("farama_notifications", types.SimpleNamespace(notifications={}))

from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from envs.backend import RENDER_BACKENDS, backend_error  # noqa: E402
from envs.params import RECOLOURED  # noqa: E402
from slac.errors import InputError, unknown  # noqa: E402


def _backend_failed(error: InputError):
    """Raise a backend error; under ``python -m envs`` (whose __main__ cannot catch an error of this,
    its own package's, import) print it as one line and exit 2 instead."""
    if sys.argv and sys.argv[0] == "-m":
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)
    raise error


# gymnasium's plugin loader imports MuJoCo's renderer: a bad backend would fail deep inside it
if os.environ["MUJOCO_GL"] not in RENDER_BACKENDS:
    _backend_failed(backend_error("not a backend name"))
try:
    import gymnasium as gym  # noqa: E402
except (RuntimeError, AttributeError, ImportError) as _error:
    _backend_failed(backend_error(f"{type(_error).__name__}: {_error}"))


@dataclass(frozen=True)
class EnvSpec:
    """A named env: its family's constructor and fixed keyword arguments (a shift's parameters)."""

    family: str
    base: str
    kwargs: dict = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Shift:
    source: str
    target: str
    description: str
    kind: str  # layout | shape | appearance | dynamics


def _toy(base: str, env_name: str, **kwargs) -> gym.Env:
    from envs.toy import ToyReachEnv

    return ToyReachEnv(**kwargs)


def _dmc(base: str, env_name: str, **kwargs) -> gym.Env:
    from envs.rendering import check_backend

    check_backend()
    from envs.dmc import DMCSafetyEnv

    return DMCSafetyEnv(base, env_name=env_name, **kwargs)


def _safety_gym(base: str, env_name: str, **kwargs) -> gym.Env:
    from envs.rendering import check_backend

    check_backend()
    from envs.safety_gym import SafetyGymPixelEnv

    return SafetyGymPixelEnv(base, env_name=env_name, **kwargs)


FAMILIES: dict[str, Callable[..., gym.Env]] = {"toy": _toy, "dmc": _dmc, "safety-gym": _safety_gym}

ENVS: dict[str, EnvSpec] = {}
SHIFTS: dict[str, Shift] = {}


def _register(name: str, family: str, base: str, description: str = "", **kwargs) -> None:
    ENVS[name] = EnvSpec(family, base, kwargs, description)


def _register_shift(name: str, source: str, target: str, kind: str, description: str) -> None:
    SHIFTS[name] = Shift(source, target, description, kind)


# --- toy (numpy only; for fast tests) ---------------------------------------------------------
_register("toy-reach", "toy", "toy-reach", "point reaching a goal around a red hazard disc")
_register("toy-reach-grey", "toy", "toy-reach", "toy-reach with a dark grey hazard", hazard_color=(40, 40, 40))
_register_shift("toy-hazard-colour", "toy-reach", "toy-reach-grey", "appearance",
                "toy: the hazard disc turns from red to dark grey")

# --- dm-control with safety costs ---------------------------------------------------------------
# the cartpole for CPU learning runs (dmc-cartpole-tilted): balance from a tilted start, cart kept near
# the centre. Careless stabilisers (LQR gains that ignore the cart) exceed the budget of 25 on average
# (cost ~39, 40 % of episodes over), careful ones keep within it (~3-8) at the same return (tests/test_envs.py)
# the pole is drawn 0.1 m thick (the suite's 0.045 m is under 2 pixels wide at 64x64; a first
# cpu-small model reconstructed the cart but not the pole after 1,500 updates); dynamics unchanged
_TILTED = {"init_angle": 0.2, "cart_limit": 0.25, "pole_visual_radius": 0.1}
# name -> (dm-control task, description, parameters); each gets every variant below
_CARTPOLES = {
    "dmc-cartpole-balance": ("dmc-cartpole-balance", "cartpole balance; cost while |cart x| > 0.5", {}),
    "dmc-cartpole-swingup": ("dmc-cartpole-swingup", "cartpole swingup; cost while |cart x| > 0.5", {}),
    "dmc-cartpole-tilted": ("dmc-cartpole-balance",
                            "cartpole balance from a pole tilted up to ±0.2 rad; cost while |cart x| > 0.25", _TILTED),
}
_CARTPOLE_VARIANTS = {
    "long-pole": ("pole 1.0 → 1.6 long", {"pole_length": 1.6}),
    "heavy-pole": ("pole mass 0.1 → 0.4", {"pole_mass": 0.4}),
    "high-gravity": ("gravity 9.81 → 15", {"gravity": 15.0}),
    "recoloured": ("red body, dark floor, dim light", dict(RECOLOURED)),
    "weak-motor": ("actuator gain 10 → 6", {"actuator_gain": 6.0}),
}
for _name, (_task, _description, _params) in _CARTPOLES.items():
    _register(_name, "dmc", _task, _description, **_params)
    for _variant, (_change, _variant_params) in _CARTPOLE_VARIANTS.items():
        _register(f"{_name}-{_variant}", "dmc", _task, _change, **_params, **_variant_params)
_register_shift("cartpole-long-pole", "dmc-cartpole-swingup", "dmc-cartpole-swingup-long-pole", "dynamics",
                "cartpole swingup: the pole grows from 1.0 to 1.6 (length and inertia)")
_register_shift("cartpole-heavy-pole", "dmc-cartpole-swingup", "dmc-cartpole-swingup-heavy-pole", "dynamics",
                "cartpole swingup: pole mass 0.1 → 0.4")
_register_shift("cartpole-gravity", "dmc-cartpole-balance", "dmc-cartpole-balance-high-gravity", "dynamics",
                "cartpole balance: gravity 9.81 → 15 m/s²")
_register_shift("cartpole-colours", "dmc-cartpole-swingup", "dmc-cartpole-swingup-recoloured", "appearance",
                "cartpole swingup: red cart and pole, dark floor, dimmer light")
_register_shift("cartpole-weak-motor", "dmc-cartpole-swingup", "dmc-cartpole-swingup-weak-motor", "dynamics",
                "cartpole swingup: actuator gain 10 → 6")
_register_shift("tilted-gravity", "dmc-cartpole-tilted", "dmc-cartpole-tilted-high-gravity", "dynamics",
                "tilted cartpole: gravity 9.81 → 15 m/s² (the pole falls faster)")
_register_shift("tilted-weak-motor", "dmc-cartpole-tilted", "dmc-cartpole-tilted-weak-motor", "dynamics",
                "tilted cartpole: actuator gain 10 → 6")
_register_shift("tilted-heavy-pole", "dmc-cartpole-tilted", "dmc-cartpole-tilted-heavy-pole", "dynamics",
                "tilted cartpole: pole mass 0.1 → 0.4")
_register_shift("tilted-colours", "dmc-cartpole-tilted", "dmc-cartpole-tilted-recoloured", "appearance",
                "tilted cartpole: red cart and pole, dark floor, dimmer light")
_register("dmc-walker-walk", "dmc", "dmc-walker-walk", "walker walk; cost while a joint is faster than 12 rad/s")
_register("dmc-walker-walk-heavy", "dmc", "dmc-walker-walk", "torso mass ×1.5", torso_mass_scale=1.5)
_register("dmc-walker-walk-slippery", "dmc", "dmc-walker-walk", "floor friction 0.7 → 0.2", friction=0.2)
_register_shift("walker-heavy-torso", "dmc-walker-walk", "dmc-walker-walk-heavy", "dynamics",
                "walker walk: torso mass ×1.5")
_register_shift("walker-slippery", "dmc-walker-walk", "dmc-walker-walk-slippery", "dynamics",
                "walker walk: floor friction 0.7 → 0.2")


GYM_PREFIX = "gym:"  # gym:ID or gym:MODULE:ID, any gymnasium env (envs.gym_adapter)
GYM_HINT = "gym:ENV_ID (any gymnasium env)"


def names() -> list[str]:
    """Every registered env name ``make`` accepts (besides ``gym:ID``, see :func:`known`)."""
    return sorted(ENVS)


def known(name: str) -> bool:
    """Whether ``make`` takes ``name``: a registered name or ``gym:ID`` (``make`` checks the ID)."""
    return name in ENVS or name.startswith(GYM_PREFIX)


def make(name: str, seed: int | None = None, **overrides) -> gym.Env:
    """Build env ``name``; ``overrides`` set its parameters (unknown keys raise InputError)."""
    if name.startswith(GYM_PREFIX):
        from envs.gym_adapter import GymPixelEnv

        env = GymPixelEnv(name[len(GYM_PREFIX):], env_name=name, **overrides)
        if seed is not None:
            env.reset(seed=seed)
        return env
    if name not in ENVS:
        raise unknown("env", name, [*names(), GYM_HINT])
    spec = ENVS[name]
    env = FAMILIES[spec.family](spec.base, name, **{**spec.kwargs, **overrides})
    if seed is not None:
        env.reset(seed=seed)
    return env


def _register_safety_gym() -> None:
    from envs.safety_gym import register_envs_and_shifts

    register_envs_and_shifts(_register, _register_shift)


_register_safety_gym()

__all__ = ["ENVS", "SHIFTS", "InputError", "Shift", "known", "make", "names"]
