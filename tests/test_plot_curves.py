"""scripts/plot_curves.py: the final-evaluation table honours --max-step and a resumed run's rewind."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_run(path: Path, records: list[dict]) -> Path:
    path.mkdir()
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_table_uses_the_last_evaluation_up_to_max_step(tmp_path):
    # run a: evaluations at 1000, 2000, 3000; run b was resumed at 2000 after writing a lost record at 3000
    a = write_run(tmp_path / "a", [{"step": s, "eval/return": 10.0 * s, "eval/cost": s / 100}
                                   for s in (1000, 2000, 3000)])
    b = write_run(tmp_path / "b", [{"step": 1000, "eval/return": 1.0, "eval/cost": 4.0},
                                   {"step": 3000, "eval/return": 99.0, "eval/cost": 99.0},
                                   {"step": 2000, "train/lambda": 0.1},
                                   {"step": 3000, "eval/return": 3.0, "eval/cost": 6.0}])
    out = tmp_path / "curves.png"
    script = ROOT / "scripts" / "plot_curves.py"
    proc = subprocess.run([sys.executable, str(script), str(a), str(b), "--max-step", "2500", "--budget", "25",
                           "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()}
    assert rows[str(a)] == ["2000", "20000.00", "20.00"]
    assert rows[str(b)] == ["1000", "1.00", "4.00"]  # the lost record at 3000 is not drawn, the new one is past 2500
    assert proc.stdout.splitlines()[-2].split()[-2:] == ["10000.50", "12.00"]  # mean of (20000, 1) and (20, 4)
    assert out.stat().st_size > 0
