"""Learner throughput at Safe SLAC's reference sizes, relative to this machine's matmul peak.

    python benchmarks/learner_throughput.py [--iterations 20] [--threads 0] [--device cpu]
                                            [--sequence-transitions 1]

Two variants are measured side by side: Safe SLAC's float32 settings (the defaults), and the same
with the encoder/decoder convolutions under bfloat16 autocast (``model.bf16_convs=true``), the
latter only where the device has native bfloat16 (elsewhere the setting runs as float32).
Measures, in one run: model updates/s (batch 32 sequences of 11 frames, 64x64, image noise 0.4),
agent updates/s (batch 64: latents filtered from 64 sequences, then one SAC-Lagrangian step on
the last transition of each; with ``--sequence-transitions K`` also, side by side, on the last K
of each, ``agent.sequence_transitions``),
iterations/s (one of each, as the trainer does), and the fp32 matmul peak (GFLOP/s) of the same
process. The last line is ``iterations/s per 100 GFLOP/s: X`` for the faster variant (named
above it). Batches are synthetic (random uint8 frames): the cost of an update does not depend on the pixel values.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from slac.agent import SafeSACAgent
from slac.agent_inputs import last_transitions
from slac.buffer import SequenceReplayBuffer
from slac.config import Config
from slac.latent import LatentModel, to_float
from slac.networks import native_bf16


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sequence-transitions", type=int, default=1,
                   help="transitions per sequence the agent learns from (agent.sequence_transitions)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = matmul_peak_gflops(device)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    results = {}
    variants = [("float32", False)]
    if native_bf16(device.type):
        variants.append(("bf16 convs", True))
    else:  # model.bf16_convs would run as float32 here (slac/networks.py)
        print(f"[bf16 convs] not measured: this {device.type} has no native bfloat16 convolutions")
    for variant, bf16 in variants:
        results[variant] = measure(args, device, bf16)
        model_rate, agent_rate, iteration_rate, agent_rate_k = results[variant]
        print(f"[{variant}] model updates/s: {model_rate:.3f}  agent updates/s: {agent_rate:.3f}  "
              f"iterations/s: {iteration_rate:.3f}", flush=True)
        if agent_rate_k is not None:
            k = args.sequence_transitions
            print(f"[{variant}] agent updates/s on {k} transitions per sequence: {agent_rate_k:.3f} "
                  f"(time per update {agent_rate / agent_rate_k:.3f}x that on 1)", flush=True)
    peak = max(peak, matmul_peak_gflops(device))
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s")
    for variant, (_, _, iteration_rate, _) in results.items():
        print(f"[{variant}] iterations/s per 100 GFLOP/s: {iteration_rate / peak * 100:.3f}")
    best = max(results, key=lambda v: results[v][2])
    print(f"fastest variant: {best}")
    print(f"iterations/s per 100 GFLOP/s: {results[best][2] / peak * 100:.3f}")


def measure(args, device: torch.device, bf16: bool) -> tuple[float, float, float, float | None]:
    cfg = Config()  # Safe SLAC's reference sizes (the defaults)
    cfg.model.bf16_convs = bf16
    action_dim = 2
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model, agent = make_learner(cfg, action_dim, device)
    buffer = fill_buffer(cfg, action_dim, 2000, rng)

    def batch(size: int) -> dict[str, torch.Tensor]:
        b = {k: torch.as_tensor(v, device=device) for k, v in buffer.sample(size, rng).items()}
        b["images"] = to_float(b.pop("frames"))
        return b

    def model_update() -> None:
        b = batch(cfg.model.batch_size)
        model.update(b["images"], b["action"], b["reward"], b["cost"])

    def agent_update(k: int = 1) -> None:
        b = batch(cfg.agent.batch_size)
        z = model.latents(b["images"], b["action"])  # (B, S+1, L); the trainer's rows b·k + j
        agent.update(last_transitions(b, z, k))

    def rate(fn, n: int) -> float:
        for _ in range(args.warmup):
            fn()
        _sync(device)
        start = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
        return n / (time.perf_counter() - start)

    k = args.sequence_transitions
    return (rate(model_update, args.iterations), rate(agent_update, args.iterations),
            rate(lambda: (model_update(), agent_update()), args.iterations),
            rate(lambda: agent_update(k), args.iterations) if k != 1 else None)


if __name__ == "__main__":
    main()
