"""``python -m envs --list``: the env names and the shifts, as two tables."""

from __future__ import annotations

import argparse

import envs


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m envs", description=__doc__)
    p.add_argument("--list", action="store_true", help="print env names and shifts")
    args = p.parse_args()
    if not args.list:
        p.print_help()
        return
    width = max(map(len, envs.names()))
    print(f"{'env':{width}s}  description")
    for name in envs.names():
        print(f"{name:{width}s}  {envs.ENVS[name].description}")
    print()
    shift_width = max(map(len, envs.SHIFTS))
    print(f"{'shift':{shift_width}s}  {'kind':10s}  source → target: description")
    for name, s in sorted(envs.SHIFTS.items()):
        print(f"{name:{shift_width}s}  {s.kind:10s}  {s.source} → {s.target}: {s.description}")


if __name__ == "__main__":
    main()
