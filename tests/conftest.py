"""Test-wide settings: one torch thread per test process (pytest -n 2 runs two processes on two
cores; more threads than cores makes OpenMP spin and slows everything down), headless rendering."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

torch.set_num_threads(1)
