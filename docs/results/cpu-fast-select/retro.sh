#!/bin/sh
# 20-episode evaluations of kept checkpoints at the run's own seed (what a 20-episode in-loop evaluation sees)
cd /work/main
for spec in 1:/work/runs/fast/n32-s1 2:/work/runs/fast/n32-s2 4:/work/runs/cpu-fast/s4 5:/work/runs/cpu-fast/s5; do
  s=${spec%%:*}; run=${spec#*:}
  for st in 14 16 18 20 22 24; do
    MUJOCO_GL=egl .venv/bin/python evaluate.py --checkpoint $run/checkpoints/step_0000${st}000.pt --episodes 20 --seed $s --threads 1 --out /work/runs/select/s$s-${st}k-seed$s.json 2>&1 | grep "step_0000" | sed "s/^/s$s /"
  done
done
