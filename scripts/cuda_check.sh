#!/usr/bin/env bash
# The CUDA path in one short run, for a lent GPU machine (docs/performance.md, "Checking the CUDA path"):
# source training, fine-tuning in a target and evaluation with --device "$DEVICE" on the smoke preset's
# toy task (it needs MuJoCo and gymnasium only, no dm-control or Ray), then the learner's throughput at
# Safe SLAC's sizes on that device. Prints each stage's wall time; the run's files go to $WORK.
#   DEVICE=cuda bash scripts/cuda_check.sh        (DEVICE=cpu runs the same on a machine without a GPU)
set -euo pipefail
DEVICE=${DEVICE:-cuda}
WORK=${WORK:-/tmp/cuda-check}
PY=${PY:-python3}
export MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
rm -rf "$WORK" && mkdir -p "$WORK"

stage() {  # stage NAME COMMAND...: run it, print its wall time and exit status
    local name=$1 start=$SECONDS
    shift
    echo "== $name: $*"
    "$@"
    echo "== $name: ok in $((SECONDS - start)) s"
}

stage torch "$PY" -c "import torch; cuda = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', cuda, \
torch.cuda.get_device_name(0) if cuda else '')"
stage source "$PY" train.py --phase source --env toy-reach --preset smoke --steps 400 --seed 0 --device "$DEVICE" \
    --out "$WORK/source" --no-progress
stage target "$PY" train.py --phase target --shift toy-hazard-colour --checkpoint "$WORK/source" --steps 200 \
    --device "$DEVICE" --out "$WORK/target" --no-progress
stage evaluate "$PY" evaluate.py --checkpoint "$WORK/target" --shift toy-hazard-colour --side target --episodes 2 \
    --seed 100 --device "$DEVICE" --out "$WORK/eval.json"
"$PY" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
from slac import checkpoint
work = Path(sys.argv[1])
for run in ("source", "target"):
    cfg = checkpoint.load(work / run, latest=True)["config"]
    print(f"{run}: config device {cfg['device']}, {sum(1 for _ in open(work / run / 'metrics.jsonl'))} metrics records")
ev = json.loads((work / "eval.json").read_text())
print(f"evaluation in the target: return {ev['return']['mean']:.1f}, cost {ev['cost']['mean']:.1f}")
EOF
stage throughput "$PY" benchmarks/learner_throughput.py --device "$DEVICE" --rounds 3 --iterations 4 --warmup 3
