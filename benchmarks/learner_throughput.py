"""Learner throughput at Safe SLAC's reference sizes, relative to this machine's matmul peak.

    python benchmarks/learner_throughput.py [--rounds 5] [--iterations 4] [--warmup 3] [--threads 0]
                                            [--device cpu] [--sequence-transitions 1]

Two variants are measured side by side: Safe SLAC's float32 settings (the defaults), and the same
with the encoder/decoder convolutions under bfloat16 autocast (``model.bf16_convs=true``), the
latter only where the device has native bfloat16 (elsewhere the setting runs as float32).
Measures, in one run: model updates/s (batch 32 sequences of 11 frames, 64x64, image noise 0.4),
agent updates/s (batch 64: latents filtered from 64 sequences, then one SAC-Lagrangian step on
the last transition of each; with ``--sequence-transitions K`` also, side by side, on the last K
of each, ``agent.sequence_transitions``),
iterations/s (one of each, as the trainer does), and the fp32 matmul peak (GFLOP/s) of the same
process. Batches are synthetic (random uint8 frames): the cost of an update does not depend on the pixel values.

The variants are interleaved in one process: after ``--warmup`` untimed calls of each measure on
each variant, every round times a block of ``--iterations`` calls of each measure on float32, then
the same block on bf16 convs (A, B, A, B, ...), ``--rounds`` times. A rate is reported as its
median over the rounds with the min-max in brackets, and the variants' ratio as the median of the
per-round ratios B/A of time per call with its min-max (as ``env_throughput.py`` pairs wrapper and
raw): load from other jobs that changes between rounds then hits both variants of a round alike,
where timing one variant after the other once made the float32 figure 6x too low on a shared machine.
The iterations/s per 100 GFLOP/s lines use the median iterations/s. The last line is
``iterations/s per 100 GFLOP/s: X`` for the faster variant (named above it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from slac.agent import SafeSACAgent
from slac.agent_inputs import last_transitions
from slac.buffer import SequenceReplayBuffer
from slac.config import Config
from slac.latent import LatentModel, to_float
from slac.networks import native_bf16

MEASURES = ("model", "agent", "iteration", "agent_k")  # agent_k: the agent update on K transitions per sequence


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of ``values``."""
    return statistics.median(values), min(values), max(values)


def paired_stats(a: Sequence[float], b: Sequence[float]) -> dict[str, tuple[float, float, float]]:
    """Statistics of two variants timed in interleaved rounds: ``a[i]`` and ``b[i]`` are the times of
    round i's blocks. ``a`` and ``b``: (median, min, max) of each; ``ratio``: (median, min, max) of the
    per-round ratios b[i] / a[i] (not the ratio of the medians: a round's pair shares its load)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same number (>= 1) of timings of each variant, got {len(a)} and {len(b)}")
    return {"a": summary(a), "b": summary(b), "ratio": summary([y / x for x, y in zip(a, b, strict=True)])}


def matmul_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_learner(cfg: Config, action_dim: int, device: torch.device):
    model = LatentModel(cfg.model, action_dim, (3, 64, 64)).to(device)
    agent = SafeSACAgent(cfg.agent, model.latent_dim, action_dim, action_repeat=2,
                         episode_agent_steps=500).to(device)
    return model, agent


def fill_buffer(cfg: Config, action_dim: int, steps: int, rng: np.random.Generator) -> SequenceReplayBuffer:
    buffer = SequenceReplayBuffer(steps + 10, (3, 64, 64), action_dim, cfg.model.sequence_length)
    buffer.add_first(rng.integers(0, 256, (3, 64, 64), dtype=np.uint8))
    for t in range(steps):
        buffer.add(rng.uniform(-1, 1, action_dim).astype(np.float32), float(rng.normal()), float(t % 7 == 0),
                   False, rng.integers(0, 256, (3, 64, 64), dtype=np.uint8))
    return buffer


def make_measures(device: torch.device, bf16: bool, k: int) -> dict[str, Callable[[], None]]:
    """The calls timed for one variant, on its own learner and replay buffer: a model update, an
    agent update, one of each (an iteration), and (``k`` != 1) an agent update on k transitions."""
    cfg = Config()  # Safe SLAC's reference sizes (the defaults)
    cfg.model.bf16_convs = bf16
    action_dim = 2
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model, agent = make_learner(cfg, action_dim, device)
    buffer = fill_buffer(cfg, action_dim, 2000, rng)

    def batch(size: int) -> dict[str, torch.Tensor]:
        b = {key: torch.as_tensor(v, device=device) for key, v in buffer.sample(size, rng).items()}
        b["images"] = to_float(b.pop("frames"))
        return b

    def model_update() -> None:
        b = batch(cfg.model.batch_size)
        model.update(b["images"], b["action"], b["reward"], b["cost"])

    def agent_update(transitions: int = 1) -> None:
        b = batch(cfg.agent.batch_size)
        z = model.latents(b["images"], b["action"])  # (B, S+1, L); the trainer's rows b·k + j
        agent.update(last_transitions(b, z, transitions))

    measures = {"model": model_update, "agent": agent_update,
                "iteration": lambda: (model_update(), agent_update())}
    if k != 1:
        measures["agent_k"] = lambda: agent_update(k)
    return measures


def time_block(fn: Callable[[], None], n: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over a block of ``n`` calls."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / n


def interleaved(variants: dict[str, dict[str, Callable[[], None]]], rounds: int, n: int, warmup: int,
                device: torch.device) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of each variant's measures, one block of n calls per round: for each measure,
    the variants' blocks one after the other (A, B, A, B, ... over the rounds), after ``warmup``
    untimed calls of everything."""
    for measures in variants.values():
        for fn in measures.values():
            for _ in range(warmup):
                fn()
    times = {v: {m: [] for m in measures} for v, measures in variants.items()}
    for _ in range(rounds):
        for measure in MEASURES:
            for variant, measures in variants.items():
                if measure in measures:
                    times[variant][measure].append(time_block(measures[measure], n, device))
    return times


def _rate(seconds: Sequence[float]) -> str:
    """Calls/s from seconds per call over the rounds: the median's, [slowest-fastest round]."""
    median, low, high = summary(seconds)
    return f"{1 / median:.3f} [{1 / high:.3f}-{1 / low:.3f}]"


def _ratio(stats: tuple[float, float, float]) -> str:
    return f"{stats[0]:.3f} (min-max {stats[1]:.3f}-{stats[2]:.3f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (each times a block of every measure "
                                                         "on every variant)")
    p.add_argument("--iterations", type=int, default=4, help="calls per block")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls of each measure on each variant first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sequence-transitions", type=int, default=1,
                   help="transitions per sequence the agent learns from (agent.sequence_transitions)")
    args = p.parse_args()
    if args.rounds < 1 or args.iterations < 1 or args.warmup < 0:
        p.error("--rounds and --iterations must be >= 1, --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    k = args.sequence_transitions
    peak = matmul_peak_gflops(device)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    variants = {"float32": make_measures(device, False, k)}
    if native_bf16(device.type):
        variants["bf16 convs"] = make_measures(device, True, k)
    else:  # model.bf16_convs would run as float32 here (slac/networks.py)
        print(f"[bf16 convs] not measured: this {device.type} has no native bfloat16 convolutions")
    print(f"{args.rounds} interleaved rounds of {args.iterations} calls per measure and variant after "
          f"{args.warmup} warm-up calls; rates: median [slowest-fastest round]", flush=True)
    times = interleaved(variants, args.rounds, args.iterations, args.warmup, device)
    for variant, t in times.items():
        print(f"[{variant}] model updates/s: {_rate(t['model'])}  agent updates/s: {_rate(t['agent'])}  "
              f"iterations/s: {_rate(t['iteration'])}")
        if k != 1:
            stats = paired_stats(t["agent"], t["agent_k"])
            r = stats["ratio"]
            print(f"[{variant}] agent updates/s on {k} transitions per sequence: {_rate(t['agent_k'])} "
                  f"(time per update {r[0]:.3f}x that on 1, min-max {r[1]:.3f}-{r[2]:.3f}: per-round ratios)")
    if len(times) == 2:
        (a, ta), (b, tb) = times.items()
        for measure, label in (("model", "model update"), ("agent", "agent update"), ("iteration", "iteration")):
            stats = paired_stats(ta[measure], tb[measure])
            speedup = paired_stats(tb[measure], ta[measure])["ratio"]  # per-round throughput ratios B/A
            print(f"{b}/{a} time per {label}: {_ratio(stats['ratio'])}; throughput {speedup[0]:.2f}x "
                  "(medians of per-round ratios)")
    peak = max(peak, matmul_peak_gflops(device))
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s")
    rates = {variant: 1 / summary(t["iteration"])[0] for variant, t in times.items()}
    for variant, rate in rates.items():
        print(f"[{variant}] iterations/s per 100 GFLOP/s: {rate / peak * 100:.3f}")
    best = max(rates, key=rates.get)
    print(f"fastest variant: {best}")
    print(f"iterations/s per 100 GFLOP/s: {rates[best] / peak * 100:.3f}")


if __name__ == "__main__":
    main()
