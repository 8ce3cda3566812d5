"""The project's one exception type for bad user input.

Everything a user can get wrong (an env or shift name, a config key, a checkpoint, a device)
raises :class:`InputError` with a message naming the bad value and the valid ones. Entry points
catch it and print the message without a traceback. It lives here, in a module that imports
nothing, so that every package (``envs`` included) can raise it.
"""


class InputError(ValueError):
    """Bad user input: an unknown name, an out-of-range value, an incompatible checkpoint."""


def unknown(kind: str, value: object, valid) -> InputError:
    """Build the standard 'unknown X' error listing the valid choices."""
    choices = ", ".join(sorted(str(v) for v in valid))
    return InputError(f"unknown {kind} {value!r}; valid: {choices}")
