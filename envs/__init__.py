"""Pixel safety environments and named source → target shifts.

    envs.make(name, seed=None, **overrides) -> gymnasium.Env
    envs.names() -> list[str]
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym

from envs.errors import InputError, unknown
from envs.toy import ToyReachEnv

_REGISTRY = {
    "toy-reach": lambda **kw: ToyReachEnv(**kw),
    "toy-reach-red": lambda **kw: ToyReachEnv(hazard_color=(40, 40, 40), **kw),
}


@dataclass(frozen=True)
class Shift:
    source: str
    target: str
    description: str


SHIFTS = {
    "toy-hazard-colour": Shift("toy-reach", "toy-reach-red", "toy: the hazard disc turns from red to dark grey"),
}


def names() -> list[str]:
    return sorted(_REGISTRY)


def make(name: str, seed: int | None = None, **overrides) -> gym.Env:
    if name not in _REGISTRY:
        raise unknown("env", name, names())
    env = _REGISTRY[name](**overrides)
    if seed is not None:
        env.reset(seed=seed)
    return env


__all__ = ["SHIFTS", "InputError", "Shift", "make", "names"]
