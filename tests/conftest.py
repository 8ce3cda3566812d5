"""Test-wide settings: one torch thread per test process (pytest -n 2 runs two processes on two
cores; more threads than cores makes OpenMP spin and slows everything down), headless rendering."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smoke_source_run(tmp_path_factory):
    """One finished 200-step smoke source run on toy-reach (seed 1), shared by the tests that only read it."""
    from slac.run import RunRequest, make_trainer

    out = tmp_path_factory.mktemp("smoke-source")
    make_trainer(RunRequest(phase="source", env="toy-reach", preset="smoke", seed=1, out=str(out)),
                 progress=False).run()
    return out
