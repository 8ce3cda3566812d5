"""Evaluation rollouts of a checkpoint: metrics, comparisons, test-time attacks and videos.

A checkpoint of any phase is loaded into the latent model and agent (``slac.trainer.build_learner``)
for a named env, after the same fit checks as training (``check_compatible``). Episode k runs with
env seed and torch seed ``episode_seed(seed, k, stream=1)`` (the seeds the trainer's evaluations use
for the same run seed), so its result depends only on (checkpoint, env, seed, k, policy, attack):
episodes can run serially or in worker processes with identical results.

Metrics (:func:`summarize`): per-episode return, cost and length; for return and cost the mean,
the sample standard deviation (ddof = 1) and the 95 % Student-t interval of the mean (null for one
episode; the cost's is cut at 0, since a mean of non-negative costs cannot be below it); the
violation rate, the share of episodes whose cost exceeds the episode budget
(``agent.budget_per_episode``, the budget the agent was trained against, scaled to this env's
episode length and action repeat).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import envs
from latent_adversary import make_online_attack
from slac import checkpoint as checkpoints
from slac.errors import InputError
from slac.rollout import LatentPolicy, episode_stats, run_episode
from slac.run import RunRequest, env_for
from slac.trainer import (
    build_learner,
    check_architecture,
    check_compatible,
    env_spec,
    episode_seed,
    load_config_of,
    resolve_device,
)
from slac.video import EpisodeRecorder, Mp4Writer, OverviewTracker, add_video

DEFAULT_ATTACK_STEPS = 3


@dataclass(frozen=True)
class AttackSpec:
    """A test-time attack by name (``latent_adversary.ATTACKS``), its radius ε and PGD steps."""

    name: str
    epsilon: float
    steps: int = DEFAULT_ATTACK_STEPS


@dataclass(frozen=True)
class EpisodeResult:
    index: int
    seed: int
    episode_return: float
    episode_cost: float
    length: int
    attack_objective_moved: float | None = None


class Evaluator:
    """A checkpoint loaded into model + agent, acting in one env (by default the one it trained on)."""

    def __init__(self, checkpoint: str | Path, env: str | None = None, device: str = "auto"):
        self.device = resolve_device(device)
        self.state = checkpoints.load(checkpoint, map_location=self.device)
        try:
            self.cfg = load_config_of(self.state)
            saved_spec, self.phase = self.state["env_spec"], self.state["phase"]
            self.counters = self.state["counters"]
        except (KeyError, TypeError) as e:
            raise InputError(f"checkpoint {self.state['path']!r} lacks its {e} entry; is it a checkpoint of "
                             "this project's train.py?") from None
        self.path = self.state["path"]
        self.env_name = env or self.cfg.env
        self.env = envs.make(self.env_name, **self.cfg.env_overrides)
        self.spec = env_spec(self.env)
        check_compatible(self.state, self.cfg, self.spec, self.env_name)
        self.model, self.agent = build_learner(self.cfg, self.spec, self.device)
        check_architecture(self.state, self.model, self.agent)
        try:
            self.model.load_state_dict(self.state["model"])
            self.agent.load_state_dict(self.state["agent"])
        except (RuntimeError, KeyError) as e:
            raise InputError(f"checkpoint {self.path!r} does not fit its own model config "
                             f"(saved env spec {saved_spec}): {str(e).splitlines()[0]}") from None
        self.model.eval()
        self.agent.eval()

    @property
    def budget(self) -> float:
        """The episode cost budget in this env (cost per 1000 simulator steps × episode length)."""
        return float(self.agent.budget_per_episode)

    def policy(self, deterministic: bool = True, attack: AttackSpec | None = None) -> LatentPolicy:
        online = None
        if attack is not None:
            online = make_online_attack(attack.name, attack.epsilon, attack.steps, self.model, self.agent)
        return LatentPolicy(self.model, self.agent, self.device, deterministic=deterministic, attack=online)

    def run(self, index: int, seed: int, deterministic: bool = True, attack: AttackSpec | None = None,
            video: Mp4Writer | list | None = None, overview_size: int = 256,
            on_step: Callable[[dict], None] | None = None, policy: LatentPolicy | None = None) -> EpisodeResult:
        """Episode ``index`` of the evaluation with run seed ``seed``; frames go to ``video`` if given,
        or every step's data to ``on_step`` (``slac.rollout.run_episode``) if given. ``policy`` (with
        its own settings) replaces the checkpoint's, e.g. to act otherwise under the same seeds."""
        if video is not None and on_step is not None:
            raise ValueError("Evaluator.run takes video or on_step, not both")
        if policy is not None and attack is not None:
            raise ValueError("Evaluator.run takes a policy or an attack on the checkpoint's policy, not both")
        s = episode_seed(seed, index, stream=1)
        policy = policy if policy is not None else self.policy(deterministic, attack)
        env = self.env
        if video is not None:
            env = OverviewTracker(self.env, overview_size)
            on_step = EpisodeRecorder(self.model, policy, env, video.append)
        cuda = [torch.cuda.current_device()] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # seeded per episode, the caller's RNG state kept
            torch.manual_seed(s)
            episode = run_episode(env, policy, s, on_step)
        moved = policy.attack.stats()["attack/objective_moved"] if policy.attack is not None else None
        return EpisodeResult(index, s, episode.episode_return, episode.episode_cost, episode.length, moved)

    def frames(self, index: int = 0, seed: int = 0, deterministic: bool = True,
               attack: AttackSpec | None = None, overview_size: int = 256) -> np.ndarray:
        """The video frames of one episode, (T, H, W, 3) uint8 (``slac.video.tensorboard_video`` for
        TensorBoard)."""
        frames: list[np.ndarray] = []
        self.run(index, seed, deterministic, attack, video=frames, overview_size=overview_size)
        return np.stack(frames)


# ------------------------------------------------------------------------------- worker processes
_LOADED: dict = {}  # per worker process: (checkpoint, env, device, counters) -> Evaluator


def _worker_run(load: tuple, threads: int, episode: tuple) -> EpisodeResult:
    """Run one episode in a worker, loading the checkpoint on its first call (errors reach the parent)."""
    torch.set_num_threads(threads)
    if load not in _LOADED:
        path, env, device, counters = load
        evaluator = Evaluator(path, env, device)
        if json.dumps(evaluator.counters, sort_keys=True) != counters:  # e.g. a run still writing latest.pt
            raise InputError(f"checkpoint {path!r} changed while it was being evaluated (a worker loaded "
                             f"step {evaluator.counters['step']}); evaluate a copy of it, or use --workers 1")
        _LOADED[load] = evaluator
    return _LOADED[load].run(*episode)


def evaluate(evaluator: Evaluator, episodes: int = 10, seed: int = 0, deterministic: bool = True,
             attack: AttackSpec | None = None, workers: int = 1, video: str | Path | None = None,
             video_episodes: int = 1, overview_size: int = 256, fps: float = 20.0) -> dict:
    """Run ``episodes`` episodes and return the metrics dict (:func:`summarize` plus the run's facts).

    With ``workers`` > 1 the episodes not recorded on video run in that many spawned processes (each
    loads the checkpoint itself and uses as many torch threads as this one); the first
    ``video_episodes`` episodes run here, into one mp4 at ``video``.
    """
    if episodes < 1:
        raise InputError(f"--episodes must be >= 1, got {episodes}")
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    n_video = min(video_episodes, episodes) if video is not None else 0
    if video is not None:
        check_writable(video, "video")
    local = list(range(n_video)) if workers > 1 else list(range(episodes))
    remote = [k for k in range(episodes) if k not in local]
    results: dict[int, EpisodeResult] = {}
    pool = None
    try:
        if remote:
            threads = torch.get_num_threads()  # as here: the same kernels, the same numbers
            counters = json.dumps(evaluator.counters, sort_keys=True)
            load = (evaluator.path, evaluator.env_name, str(evaluator.device), counters)
            pool = mp.get_context("spawn").Pool(min(workers, len(remote)))
            pending = pool.starmap_async(_worker_run, [(load, threads, (k, seed, deterministic, attack))
                                                       for k in remote], chunksize=1)
        writer = Mp4Writer(video, fps) if n_video else None
        try:
            for k in local:
                results[k] = evaluator.run(k, seed, deterministic, attack, writer if k < n_video else None,
                                           overview_size)
        finally:
            if writer is not None:
                writer.close()
        if remote:
            results.update({r.index: r for r in pending.get()})
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    ordered = [results[k] for k in range(episodes)]
    out = {"checkpoint": evaluator.path, "phase": evaluator.phase, "step": int(evaluator.counters["step"]),
           "env_steps": int(evaluator.counters.get("env_steps", 0)), "trained_env": evaluator.cfg.env,
           "env": evaluator.env_name, "seed": seed, "deterministic": deterministic,
           "attack": attack.name if attack else "none", "epsilon": attack.epsilon if attack else 0.0,
           "attack_steps": attack.steps if attack else 0}
    out.update(summarize(ordered, evaluator.budget))
    if attack is not None:
        out["attack_objective_moved"] = float(np.mean([r.attack_objective_moved for r in ordered]))
    if video is not None:
        out["video"] = str(video)
        out["video_episodes"] = n_video
    return out


def log_tensorboard(evaluator: Evaluator, metrics: dict, logdir: str | Path, overview_size: int = 256) -> str:
    """Write an evaluation's mean return and cost, violation rate and episode 0 as a video to TensorBoard
    at the checkpoint's step, under ``evaluate/<env>[/<attack>-eps<ε>]/``; returns that prefix."""
    from torch.utils.tensorboard import SummaryWriter

    attack = None if metrics["attack"] == "none" else AttackSpec(metrics["attack"], metrics["epsilon"],
                                                                  metrics["attack_steps"])
    prefix = f"evaluate/{metrics['env']}" + (f"/{attack.name}-eps{attack.epsilon:g}" if attack else "")
    frames = evaluator.frames(0, metrics["seed"], metrics["deterministic"], attack, overview_size)
    step = metrics["step"]
    with SummaryWriter(str(logdir)) as writer:
        writer.add_scalar(f"{prefix}/return", metrics["return"]["mean"], step)
        writer.add_scalar(f"{prefix}/cost", metrics["cost"]["mean"], step)
        writer.add_scalar(f"{prefix}/violation_rate", metrics["violation_rate"], step)
        add_video(writer, f"{prefix}/video", frames, step)
    return prefix


# --------------------------------------------------------------------------------------- metrics
def summarize(results: list[EpisodeResult], budget: float) -> dict:
    """Mean, std (ddof=1), 95 % t-interval of return and cost; violation rate against ``budget``."""
    returns = np.array([r.episode_return for r in results], dtype=np.float64)
    costs = np.array([r.episode_cost for r in results], dtype=np.float64)
    return {"episodes": len(results), "budget": float(budget),
            "return": episode_stats(returns), "cost": episode_stats(costs, floor=0.0),
            "length": {"mean": float(np.mean([r.length for r in results]))},
            "violation_rate": float(np.mean(costs > budget)),
            "per_episode": [_episode_record(r, budget) for r in results]}


def _episode_record(r: EpisodeResult, budget: float) -> dict:
    record = {"index": r.index, "seed": r.seed, "return": r.episode_return, "cost": r.episode_cost,
              "length": r.length, "violation": bool(r.episode_cost > budget)}
    if r.attack_objective_moved is not None:
        record["attack_objective_moved"] = r.attack_objective_moved
    return record


# ---------------------------------------------------------------------------------- presentation
def _interval(stats: dict) -> str:
    ci = stats["ci95"]
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"


def _run_name(path: str) -> str:
    """RUN for RUN/checkpoints/latest.pt; the file name for a checkpoint elsewhere."""
    p = Path(path)
    return p.parent.parent.name if p.parent.name == "checkpoints" and p.name == checkpoints.LATEST else p.name


def table(rows: list[dict], label: str = "checkpoint", label_of=None) -> str:
    """A plain-text table, one row per metrics dict (``label_of(row)`` names it)."""
    label_of = label_of or (lambda r: f"{_run_name(r['checkpoint'])} ({r['phase']} @ {r['step']})")
    head = [label, "episodes", "return mean ± std", "return 95% CI", "cost mean ± std", "cost 95% CI",
            "budget", "violations"]
    body = [[label_of(r), str(r["episodes"]), f"{r['return']['mean']:.2f} ± {r['return']['std']:.2f}",
             _interval(r["return"]), f"{r['cost']['mean']:.2f} ± {r['cost']['std']:.2f}",
             _interval(r["cost"]), f"{r['budget']:.3g}", f"{r['violation_rate']:.0%}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def describe(metrics: dict, sweep: bool = False) -> str:
    """A heading naming the env, seeds and attack of an evaluation (for the table printed below it)."""
    epsilon = "ε swept" if sweep else f"ε={metrics['epsilon']:g}"
    attack = "no attack" if metrics["attack"] == "none" else \
        f"attack {metrics['attack']} {epsilon} ({metrics['attack_steps']} steps)"
    policy = "deterministic" if metrics["deterministic"] else "stochastic"
    return (f"env {metrics['env']} (trained on {metrics['trained_env']}), seed {metrics['seed']}, "
            f"{metrics['episodes']} episodes, {policy} policy, {attack}")


def plot_sweep(rows: list[dict], path: str | Path) -> None:
    """Return and cost (mean with 95 % interval) against ε, one PNG with two panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = [r["epsilon"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("return", "cost"), strict=True):
        mean = np.array([r[key]["mean"] for r in rows])
        ax.plot(eps, mean, marker="o")
        if all(r[key]["ci95"] for r in rows):
            low, high = zip(*(r[key]["ci95"] for r in rows), strict=True)
            ax.fill_between(eps, low, high, alpha=0.25)
        if key == "cost":
            ax.axhline(rows[0]["budget"], color="red", linestyle="--", label="budget")
            ax.legend()
        ax.set_xlabel("ε")
        ax.set_ylabel(f"episode {key}")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{rows[0]['attack']} on {rows[0]['env']} ({rows[0]['episodes']} episodes per ε, 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------ input checks
def env_name_for(env: str | None, shift: str | None, side: str) -> str | None:
    """--env NAME, or the source/target side of --shift NAME; None means the checkpoint's own env."""
    if env is None and shift is None:
        return None
    if side not in ("source", "target"):
        raise InputError(f"unknown shift side {side!r}; valid: source, target")
    return env_for(RunRequest(phase=side, env=env, shift=shift))


def check_writable(path: str | Path, what: str) -> None:
    """Raise InputError if ``path`` cannot be created or written (checked before any episode runs)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} path {str(path)!r} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the folder of {what} path {str(path)!r}: {e.strerror}") from None
    try:  # the real test: create (and remove) a file beside it; os.access trusts root too much
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as e:
        raise InputError(f"{what} path {str(path)!r} is not writable: {e.strerror}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} path {str(path)!r} is not writable")


def parse_epsilons(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--epsilon-sweep expects comma-separated numbers, e.g. 0,0.01,0.02; "
                         f"got {text!r}") from None
    if not values or any(v < 0 or not math.isfinite(v) for v in values):
        raise InputError(f"--epsilon-sweep needs one or more finite values >= 0, got {text!r}")
    return values
