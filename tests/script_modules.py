"""Import a script of benchmarks/ or experiments/ (folders that are not packages) as a module."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script(folder: str, name: str):
    """The module of ``folder/name.py`` (imported once, as ``<folder>_<name>``)."""
    key = f"{folder}_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]
