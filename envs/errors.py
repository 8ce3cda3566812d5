"""The project's one exception type for bad user input.

Everything a user can get wrong (an env or shift name, a config key, a checkpoint, a device)
raises :class:`InputError` with a message naming the bad value and the valid ones. Entry points
catch it and print the message without a traceback.
"""


class InputError(ValueError):
    """Bad user input: an unknown name, an out-of-range value, an incompatible checkpoint."""


def unknown(kind: str, value: object, valid) -> InputError:
    """Build the standard 'unknown X' error listing the valid choices."""
    choices = ", ".join(sorted(str(v) for v in valid))
    return InputError(f"unknown {kind} {value!r}; valid: {choices}")


RENDER_BACKENDS = ("egl", "osmesa", "glfw")


def backend_error(reason: str) -> InputError:
    """The error for a MuJoCo rendering backend (``MUJOCO_GL``) that cannot start."""
    import os

    return InputError(
        f"cannot start the MuJoCo rendering backend MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: {reason}. "
        f"Valid backends: {', '.join(RENDER_BACKENDS)}: egl is headless (needs libEGL, e.g. Debian's libegl1 "
        "and libgl1-mesa-dri), osmesa is software (needs libosmesa6), glfw needs a display.")
