"""The MuJoCo rendering backend (``MUJOCO_GL``) and the error for one that cannot start."""

import os

from slac.errors import InputError

RENDER_BACKENDS = ("egl", "osmesa", "glfw")


def backend_error(reason: str) -> InputError:
    """The error for a MuJoCo rendering backend (``MUJOCO_GL``) that cannot start."""
    return InputError(
        f"cannot start the MuJoCo rendering backend MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: {reason}. "
        f"Valid backends: {', '.join(RENDER_BACKENDS)}: egl is headless (needs libEGL, e.g. Debian's libegl1 "
        "and libgl1-mesa-dri), osmesa is software (needs libosmesa6), glfw needs a display.")
