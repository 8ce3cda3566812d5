"""Source-training update time per adversary kind and attack steps, side by side in one run.

    python benchmarks/adversary_overhead.py [--preset cpu-small] [--rounds 10] [--iterations 2]
                                            [--threads 0] [--device cpu] [--clock wall|cpu]

One "update" is what the trainer does per update step: ``Trainer.update_model()`` then
``Trainer.update_agent()`` (with the adversarial-training hook of ``latent_adversary``), on the
preset's sizes (default ``cpu-small``: 64x64 frames, model batch 16 and agent batch 64 sequences of
9 frames). Every configuration shares one replay buffer of synthetic frames (the cost does not
depend on pixel values) and is timed in interleaved rounds (median per update), so drift on a busy
machine hits them all alike. Ratios are against ``none``.

It also times the unit a K-step attack repeats: one forward + backward pass through the parts it
goes through on the attacked share of the batch (image: encoder + posterior filter + actor and
critic; latent: actor and critic only). ``extra ms/step`` = (update − none) / K should be about one
such unit (plus a forward pass that filters the perturbed frames, spread over K).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from latent_adversary.objectives import objective_value
from latent_adversary.run import make_trainer
from slac.run import RunRequest

CONFIGS = [  # (label, attack steps K, --set overrides)
    ("none", 0, []),
    ("random", 0, ["adversary.kind=random"]),
    ("latent-mc K=1", 1, ["adversary.kind=latent", "adversary.steps=1"]),
    ("latent-mc K=3", 3, ["adversary.kind=latent", "adversary.steps=3"]),
    ("latent-mc K=5", 5, ["adversary.kind=latent", "adversary.steps=5"]),
    ("image-mc K=1", 1, ["adversary.kind=image", "adversary.steps=1"]),
    ("image-mc K=3", 3, ["adversary.kind=image", "adversary.steps=3"]),
    ("image-mc K=5", 5, ["adversary.kind=image", "adversary.steps=5"]),
    ("image-mad K=3", 3, ["adversary.kind=image", "adversary.steps=3", "adversary.objective=mad"]),
    ("image-mc K=3 +model", 3, ["adversary.kind=image", "adversary.steps=3", "adversary.perturb_model=true"]),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def fill(buffer, steps: int, shape: tuple[int, ...], action_dim: int, rng: np.random.Generator) -> None:
    buffer.add_first(rng.integers(0, 256, shape, dtype=np.uint8))
    for t in range(steps):
        buffer.add(rng.uniform(-1, 1, action_dim).astype(np.float32), float(rng.normal()), float(t % 7 == 0),
                   False, rng.integers(0, 256, shape, dtype=np.uint8))


def unit_costs(trainer, n: int, clock) -> dict[str, float]:
    """ms of one forward + backward through what each attack differentiates, on n sequences."""
    b = trainer._batch(n)
    images, actions = b["images"][:, :-1], b["action"][:, :-1]  # frames 0..S-1 shape z_{S-1}
    model, agent = trainer.model, trainer.agent
    with torch.no_grad():
        post = model.filter_sequence(model.encode(images), actions, sample=False)
        z = torch.cat([post["z1"], post["z2"]], -1)[:, -1]

    def image_pass():
        x = images.clone().requires_grad_(True)
        p = model.filter_sequence(model.encode(x), actions, sample=False)
        value = objective_value("mc", agent, z, torch.cat([p["z1"], p["z2"]], -1)[:, -1])
        torch.autograd.grad(value.sum(), x)

    def latent_pass():
        x = z.clone().requires_grad_(True)
        torch.autograd.grad(objective_value("mc", agent, z, x).sum(), x)

    out = {}
    for name, fn in (("image", image_pass), ("latent", latent_pass)):
        times = []
        for _ in range(7):
            _sync(trainer.device)
            start = clock()
            fn()
            _sync(trainer.device)
            times.append(clock() - start)
        out[name] = 1e3 * statistics.median(times[2:])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--iterations", type=int, default=2, help="updates per configuration per round")
    p.add_argument("--epsilon", type=float, default=0.03)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: process CPU time (with --threads 1, robust to other jobs sharing the cores)")
    args = p.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    common = [f"adversary.epsilon={args.epsilon}", "adversary.schedule=constant", "adversary.fraction=0.5",
              "adversary.latent_norm=std", "train.threads=0", "train.buffer_size=3000"]
    trainers = {}
    shared = None
    for label, _, sets in CONFIGS:
        out = tempfile.mkdtemp(prefix="adv_bench_")
        t = make_trainer(RunRequest(env="toy-reach", preset=args.preset, sets=common + sets,
                                    device=args.device, seed=0, out=out), progress=False)
        t.logger.close()
        if shared is None:
            fill(t.buffer, 2500, tuple(t.spec["obs_shape"]), t.spec["action_dim"], np.random.default_rng(0))
            shared = t.buffer
        t.buffer = shared
        t.counters["step"] = 10**9  # past any ramp
        trainers[label] = t
    torch.manual_seed(0)
    cfg = trainers["none"].cfg
    times: dict[str, list[float]] = {label: [] for label in trainers}
    for t in trainers.values():  # warm-up
        t.update_model()
        t.update_agent()
    for _ in range(args.rounds):
        for label, t in trainers.items():
            for _ in range(args.iterations):
                _sync(t.device)
                start = clock()
                t.update_model()
                t.update_agent()
                _sync(t.device)
                times[label].append(clock() - start)
    n = round(0.5 * cfg.agent.batch_size)
    unit = unit_costs(trainers["none"], n, clock)

    print(f"preset {args.preset}: model batch {cfg.model.batch_size} and agent batch {cfg.agent.batch_size} "
          f"sequences of {cfg.model.sequence_length + 1} frames, feature {cfg.model.feature_dim}, "
          f"z1 {cfg.model.z1_dim}, z2 {cfg.model.z2_dim}, hidden {cfg.model.hidden_units}; attacked share "
          f"0.5 ({n} sequences), epsilon {args.epsilon}; torch threads {torch.get_num_threads()}, device "
          f"{args.device}, {args.clock} clock; median of {args.rounds}x{args.iterations} updates each")
    print(f"unit fwd+bwd on the attacked share: image (encoder+filter+actor+critic) {unit['image']:.1f} ms, "
          f"latent (actor+critic) {unit['latent']:.2f} ms")
    base = statistics.median(times["none"])
    print(f"{'configuration':<22}{'ms/update':>10}{'vs none':>9}{'extra ms/step':>15}{'unit ms':>9}")
    for label, steps, _ in CONFIGS:
        ms = 1e3 * statistics.median(times[label])
        extra = f"{(ms - 1e3 * base) / steps:.1f}" if steps else "-"
        kind = "image" if "image" in label else "latent" if "latent" in label else None
        unit_ms = f"{unit[kind]:.1f}" if kind and steps else "-"
        print(f"{label:<22}{ms:>10.1f}{ms / (1e3 * base):>8.2f}x{extra:>15}{unit_ms:>9}")
    for kind in ("latent", "image"):
        first, last = (1e3 * statistics.median(times[f"{kind}-mc K={k}"]) for k in (1, 5))
        slope = (last - first) / 4
        print(f"{kind}: each attack step beyond the first costs {slope:.2f} ms = {slope / unit[kind]:.2f}x "
              f"one fwd+bwd of the parts it goes through; the first step {first - 1e3 * base:.1f} ms "
              f"(the step plus filtering the perturbed batch)")


if __name__ == "__main__":
    main()
