#!/bin/sh
# the checkpoint each seed's best.pt would be (20-episode evaluations at the run's seed), evaluated on 20 other episodes (seed 100)
cd /work/main
for spec in 0:/work/runs/methods-screen-fast/source/none/s0:20 1:/work/runs/fast/n32-s1:22 2:/work/runs/fast/n32-s2:24 4:/work/runs/cpu-fast/s4:24 5:/work/runs/cpu-fast/s5:24; do
  s=${spec%%:*}; rest=${spec#*:}; run=${rest%:*}; st=${rest##*:}
  MUJOCO_GL=egl .venv/bin/python evaluate.py --checkpoint $run/checkpoints/step_0000${st}000.pt --episodes 20 --seed 100 --threads 1 --out /work/runs/select/s$s-${st}k-seed100.json 2>&1 | grep "step_0000" | sed "s/^/s$s /"
done
