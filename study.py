"""Run a transfer study: source training per method and seed, zero-shot evaluation, fine-tuning and a
from-scratch arm in each target shift, optional test-time attacks; on Ray, resumably; and its report.

    python study.py run SPEC.yaml --out DIR [--address auto|HOST:PORT] [--max-parallel N] [--dry-run]
                        [--reuse OTHER_STUDY_DIR]... [--device auto|cpu|cuda]
    python study.py status DIR
    python study.py stop DIR          (its running training cells save checkpoints; `run` continues them)
    python study.py report DIR        (writes DIR/report.md, DIR/report.json and PNG plots)
    python study.py export DIR DEST   (copies the small files, e.g. into docs/results/, to commit)

Every cell is a normal train.py / evaluate.py run directory under DIR; a finished cell has done.json
and is never run again; an interrupted training cell continues with train.py --resume; a failed one
(failed.json) is retried by the next run. A study's spec may later add methods or seeds (their cells
run); any other change needs a new --out. See docs/study.md and configs/studies/smoke.yaml.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

try:
    from slac.config import DEVICES
    from slac.errors import InputError
    from transfer import StudyError, load_spec
except ValueError as error:  # an InputError at import: the MuJoCo rendering backend cannot start
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or continue) a study")
    r.add_argument("spec", help="study spec YAML (configs/studies/smoke.yaml)")
    r.add_argument("--out", required=True, help="study folder (created; the file system is the study's state)")
    r.add_argument("--address", help="Ray cluster: auto or HOST:PORT (default: a local Ray started here)")
    r.add_argument("--max-parallel", type=int, help="at most N cells at a time (default: one per Ray CPU)")
    r.add_argument("--dry-run", action="store_true", help="print the cells, dependencies and compute estimate")
    r.add_argument("--reuse", "--reuse-source", dest="reuse", action="append", metavar="OTHER_STUDY_DIR",
                   help="copy that study's finished source, scratch and fine-tune runs into this one's unstarted cells "
                   "of the same arm, method, target and seed where the resolved config is identical (e.g. a "
                   "screen's seed 0; a fine-tune only onto a source copied from that study); repeat it to name "
                   "several studies, the first with a match is used")
    r.add_argument("--device", choices=DEVICES,
                   help="for every train.py and evaluate.py command (default: theirs, auto: cuda if available); "
                   "part of a new run's config, so a resumed training cell keeps the device it started on")
    s = sub.add_parser("status", help="done / running / pending / failed cells per arm")
    s.add_argument("dir")
    st = sub.add_parser("stop", help="stop the study process running DIR; its training cells save checkpoints")
    st.add_argument("dir")
    rep = sub.add_parser("report", help="write DIR/report.md, DIR/report.json and plots")
    rep.add_argument("dir")
    exp = sub.add_parser("export", help="copy the study's small files (no checkpoints, TensorBoard or logs) to DEST")
    exp.add_argument("dir")
    exp.add_argument("dest")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "run":
            from transfer import runner

            spec = load_spec(args.spec)
            return runner.run(spec, Path(args.out), args.address, args.max_parallel, args.dry_run,
                              reuse_from=args.reuse, device=args.device)
        if args.command == "status":
            from transfer import runner

            print(runner.status(Path(args.dir)))
            return 0
        if args.command == "stop":
            from transfer import runner

            return runner.stop(Path(args.dir))
        from transfer import report

        if not (Path(args.dir) / "spec.yaml").exists():
            raise StudyError(f"{args.dir!r} holds no study (no spec.yaml)")
        if args.command == "export":
            try:
                files = report.export(args.dir, args.dest)
            except ValueError as e:
                raise StudyError(str(e)) from None
            size = sum(f.stat().st_size for f in files)
            print(f"copied {len(files)} files ({size / 1e6:.1f} MB) to {args.dest}")
            return 0
        md, js, plots = report.write(args.dir)
        print(f"report: {md}\njson:   {js}\nplots:  {', '.join(plots)}")
        return 0
    except (StudyError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
