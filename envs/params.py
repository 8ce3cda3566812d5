"""Typed, validated env parameters: one dataclass per env family, filled from ``make`` overrides."""

from __future__ import annotations

import dataclasses
from typing import get_args, get_type_hints

from slac.errors import InputError

# the recoloured cartpoles' look (red body, dark floor, dim light): the tilted-colours target's, and
# where the cartpole's ``recolour`` parameter leads
RECOLOURED = {"body_rgba": (0.8, 0.15, 0.1, 1.0), "floor_rgba": (0.25, 0.25, 0.3, 1.0), "light_diffuse": 0.4}


def fill(cls, overrides: dict, env_name: str):
    """An instance of dataclass ``cls`` with ``overrides`` applied; bad keys/types raise InputError."""
    hints = get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in overrides.items():
        if key not in valid:
            raise InputError(f"unknown override {key!r} for env {env_name!r}; valid: {', '.join(valid)}")
        values[key] = _check_type(key, value, hints[key], env_name)
    params = cls(**values)
    params.validate(env_name)
    return params


def _check_type(key: str, value, hint, env_name: str):
    allowed = tuple(a for a in (get_args(hint) or (hint,)) if a is not type(None))
    if value is None and type(None) in get_args(hint):
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tuple in allowed and isinstance(value, list):
        value = tuple(value)
    if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
        names = " or ".join(a.__name__ for a in allowed)
        raise InputError(f"override {key!r} for env {env_name!r} expects {names}, got {value!r}")
    return value


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def check_rgba(name: str, rgba, env_name: str) -> None:
    if rgba is not None:
        require(len(rgba) == 4 and all(isinstance(c, (int, float)) and 0 <= c <= 1 for c in rgba),
                f"override {name!r} for env {env_name!r} must be 4 numbers in [0, 1] (r, g, b, a), got {rgba!r}")
