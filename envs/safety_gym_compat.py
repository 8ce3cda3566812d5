"""Import safety-gymnasium 1.0.0 on Python 3.11 without editing installed files.

Its dataclasses use numpy arrays as field defaults (``color: np.array = COLOR['hazard']``), which
Python 3.11's ``dataclasses`` rejects at class creation ("mutable default ... use
default_factory"). While safety_gymnasium is first imported, :func:`import_safety_gymnasium`
turns each such default into a ``default_factory`` returning a copy of the array; nothing else
changes and ``dataclasses`` is restored afterwards.
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


def import_safety_gymnasium():
    """``import safety_gymnasium`` with the Python 3.11 fix applied (idempotent)."""
    with _array_defaults_as_factories(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation chatter about gym/pygame on import
        return importlib.import_module("safety_gymnasium")
