"""Import safety-gymnasium 1.0.0 on Python 3.11 and mujoco 3 without editing installed files.

Its dataclasses use numpy arrays as field defaults (``color: np.array = COLOR['hazard']``), which
Python 3.11's ``dataclasses`` rejects at class creation ("mutable default ... use
default_factory"). While safety_gymnasium is first imported, :func:`import_safety_gymnasium`
turns each such default into a ``default_factory`` returning a copy of the array; nothing else
changes and ``dataclasses`` is restored afterwards.

With mujoco 3, ``model.sensor(i).objid`` is a length-1 array, which ``model.jnt()`` refuses; the
Car robot's joint sensors hit this while the agent is built (``BaseAgent._init_jnt_sensors``).
That one method is wrapped to see a model whose ``jnt()`` accepts such arrays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import warnings

import numpy as np


@contextlib.contextmanager
def _array_defaults_as_factories():
    original = dataclasses._get_field  # (cls, name, type, kw_only) in Python 3.11

    def get_field(cls, name, annotation, *args):
        default = cls.__dict__.get(name, dataclasses.MISSING)
        if isinstance(default, np.ndarray):
            setattr(cls, name, dataclasses.field(default_factory=lambda value=default: value.copy()))
        return original(cls, name, annotation, *args)

    dataclasses._get_field = get_field
    try:
        yield
    finally:
        dataclasses._get_field = original


class _ArrayIndexModel:
    """Delegates to an MjModel; ``jnt(index)`` also takes a length-1 index array."""

    def __init__(self, model):
        self._model = model

    def jnt(self, index):
        return self._model.jnt(int(np.asarray(index).reshape(-1)[0]) if not isinstance(index, str) else index)

    def __getattr__(self, name):
        return getattr(self._model, name)


def _patch_joint_sensor_lookup(base_agent_cls) -> None:
    original = base_agent_cls._init_jnt_sensors
    if getattr(original, "_array_index_patch", False):
        return

    def init_jnt_sensors(self, *args, **kwargs):
        engine = self.engine
        model = engine.model
        engine.model = _ArrayIndexModel(model)
        try:
            return original(self, *args, **kwargs)
        finally:
            engine.model = model

    init_jnt_sensors._array_index_patch = True
    base_agent_cls._init_jnt_sensors = init_jnt_sensors


def import_safety_gymnasium():
    """``import safety_gymnasium`` with the Python 3.11 and mujoco 3 fixes applied (idempotent)."""
    with _array_defaults_as_factories(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation chatter about gym/pygame on import
        module = importlib.import_module("safety_gymnasium")
    from safety_gymnasium.bases.base_agent import BaseAgent

    _patch_joint_sensor_lookup(BaseAgent)
    return module
