"""Safety-Gymnasium tasks as pixel envs (being written)."""


def register_envs_and_shifts(register, register_shift) -> None:
    return None
