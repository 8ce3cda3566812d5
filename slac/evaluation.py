"""Evaluation rollouts: the one evaluation path of the trainer and of ``evaluate.py``.

:func:`evaluate_policy` runs a policy's evaluation episodes in an env and summarises them; the
trainer's periodic evaluations call it. :class:`Evaluator` loads a checkpoint of any phase into the
latent model and agent (``slac.learner``) for a named env, after the same fit checks as training;
:func:`evaluate` runs its episodes (optionally under a test-time attack, in worker processes, or
recorded to video) through the same per-episode function; :meth:`Evaluator.with_env_overrides` sets env
parameters on top of the checkpoint's (``evaluate.py --env-sweep``). Episode k runs with env and torch seeds
``episode_seed(seed, k, EVAL_STREAM)`` (``slac.rollout.evaluation_episode``), so its result depends
only on (weights, env, seed, k, policy, attack): serial, parallel and in-training evaluations agree.

Metrics (:func:`summarize`): per-episode return, cost and length; for return and cost the mean,
the sample standard deviation (ddof = 1) and the 95 % Student-t interval of the mean (null for one
episode; the cost's is cut at 0, since a mean of non-negative costs cannot be below it); the
violation rate, the share of episodes whose cost exceeds the episode budget
(``agent.budget_per_episode``, the budget the agent was trained against, scaled to this env's
episode length and action repeat).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import multiprocessing as mp
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import envs
from slac import checkpoint as checkpoints
from slac.config import Config, from_dict
from slac.errors import InputError
from slac.learner import build_learner, check_compatible, env_spec, load_learner, resolve_device
from slac.rollout import LatentPolicy, episode_stats, evaluation_episode
from slac.video import EpisodeRecorder, Mp4Writer, OverviewTracker, add_video

DEFAULT_ATTACK_STEPS = 3


@dataclass(frozen=True)
class AttackSpec:
    """A test-time attack by name, its radius ε and PGD steps (the attack factory knows the names)."""

    name: str
    epsilon: float
    steps: int = DEFAULT_ATTACK_STEPS


# builds the online attack of a spec for a model and agent: an object with the interface LatentPolicy uses
AttackFactory = Callable[[AttackSpec, object, object], object]


@dataclass(frozen=True)
class EpisodeResult:
    index: int
    seed: int
    episode_return: float
    episode_cost: float
    length: int
    attack_objective_moved: float | None = None


def evaluate_policy(env, policy: LatentPolicy, seed: int, episodes: int, budget: float) -> dict:
    """Evaluation episodes 0 .. ``episodes``-1 of run seed ``seed``, summarised (:func:`summarize`)."""
    results = []
    for k in range(episodes):
        s, episode = evaluation_episode(env, policy, seed, k)
        results.append(EpisodeResult(k, s, episode.episode_return, episode.episode_cost, episode.length))
    return summarize(results, budget)


class Evaluator:
    """A checkpoint loaded into model + agent, acting in one env (by default the one it trained on).

    ``config_cls`` reads the checkpoint's config (a config class extending ``slac.config.Config``
    reads the sections it adds); ``attacks`` builds test-time attacks (none without it);
    ``env_overrides`` set env parameters on top of the checkpoint config's ``env_overrides``.
    """

    def __init__(self, checkpoint: str | Path, env: str | None = None, device: str = "auto",
                 config_cls: type[Config] = Config, attacks: AttackFactory | None = None,
                 env_overrides: dict | None = None):
        self.device = resolve_device(device)
        self.config_cls, self.attacks = config_cls, attacks
        self.state = checkpoints.load(checkpoint, map_location=self.device)
        try:
            self.cfg = from_dict(self.state["config"], config_cls)
            self.phase, self.counters = self.state["phase"], self.state["counters"]
            if "env_spec" not in self.state:  # check_compatible reads it
                raise KeyError("env_spec")
        except (KeyError, TypeError) as e:
            raise InputError(f"checkpoint {self.state['path']!r} lacks its {e} entry; is it a checkpoint of "
                             "this project's train.py?") from None
        self.path = self.state["path"]
        self.env_name = env or self.cfg.env
        self._act_in_env(env_overrides or {})

    def _act_in_env(self, extra: dict) -> None:
        """Build the env (the config's overrides, then ``extra``) and the networks that act in it (the
        agent's episode budget depends on the env's episode length and action repeat)."""
        self.extra_overrides = dict(extra)
        self.env = envs.make(self.env_name, **{**self.cfg.env_overrides, **extra})
        self.spec = env_spec(self.env)
        check_compatible(self.state, self.cfg, self.spec, self.env_name)
        self.model, self.agent = build_learner(self.cfg, self.spec, self.device)
        load_learner(self.state, self.model, self.agent, optimizers=False)
        self.model.eval()
        self.agent.eval()

    def with_env_overrides(self, **overrides) -> Evaluator:
        """The same checkpoint (not reloaded) in its env with ``overrides`` set on top of this one's."""
        other = copy.copy(self)
        other._act_in_env({**self.extra_overrides, **overrides})
        return other

    @property
    def budget(self) -> float:
        """The episode cost budget in this env (cost per 1000 simulator steps × episode length)."""
        return float(self.agent.budget_per_episode)

    def policy(self, deterministic: bool = True, attack: AttackSpec | None = None) -> LatentPolicy:
        online = None
        if attack is not None:
            if self.attacks is None:
                raise InputError("this evaluator was built without test-time attacks")
            online = self.attacks(attack, self.model, self.agent)
        return LatentPolicy(self.model, self.agent, self.device, deterministic=deterministic, attack=online)

    def run(self, index: int, seed: int, deterministic: bool = True, attack: AttackSpec | None = None,
            video: Mp4Writer | list | None = None, overview_size: int = 256) -> EpisodeResult:
        """Episode ``index`` of the evaluation with run seed ``seed``; frames go to ``video`` if given."""
        policy = self.policy(deterministic, attack)
        env, on_step = self.env, None
        if video is not None:
            env = OverviewTracker(self.env, overview_size)
            on_step = EpisodeRecorder(self.model, policy, env, video.append)
        s, episode = evaluation_episode(env, policy, seed, index, on_step)
        moved = policy.attack.stats()["attack/objective_moved"] if policy.attack is not None else None
        return EpisodeResult(index, s, episode.episode_return, episode.episode_cost, episode.length, moved)

    def frames(self, index: int = 0, seed: int = 0, deterministic: bool = True,
               attack: AttackSpec | None = None, overview_size: int = 256) -> np.ndarray:
        """The video frames of one episode, (T, H, W, 3) uint8 (``slac.video.tensorboard_video`` for
        TensorBoard)."""
        frames: list[np.ndarray] = []
        self.run(index, seed, deterministic, attack, video=frames, overview_size=overview_size)
        return np.stack(frames)


# ----------------------------------------------------------------------------------- env sweeps
def env_parameters(env) -> dict[str, tuple[type, ...]]:
    """The types each parameter of an ``envs.make`` env takes: the fields of its parameter dataclass
    (``env.unwrapped.params``), else its constructor's arguments (the toy env has no dataclass)."""
    u = env.unwrapped
    params = getattr(u, "params", None)
    if dataclasses.is_dataclass(params):
        hints = typing.get_type_hints(type(params))
        return {f.name: _types(hints[f.name]) for f in dataclasses.fields(params)}
    hints = typing.get_type_hints(type(u).__init__)
    return {name: _types(hint) for name, hint in hints.items() if name != "return"}


def env_value(env, key: str):
    """The value of parameter ``key`` that an ``envs.make`` env runs with (None where it has none)."""
    u = env.unwrapped
    return getattr(getattr(u, "params", u), key, None)


def _types(hint) -> tuple[type, ...]:
    """``float | None`` -> (float, NoneType); ``tuple[int, int, int]`` -> (tuple,)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return tuple(typing.get_origin(a) or a for a in (typing.get_args(hint) if union else (hint,)))


def sweep_values(env, env_name: str, key: str, values: list[float]) -> list[float | int]:
    """``values`` of parameter ``key`` of ``env`` (named ``env_name``) as the env takes them (whole
    numbers for integer keys); InputError for a key the env lacks or one that is not a number."""
    params = env_parameters(env)
    numeric = [k for k, t in params.items() if float in t or int in t]
    if key not in params:
        raise InputError(f"--env-sweep: env {env_name!r} has no parameter {key!r}; its numeric parameters: "
                         f"{', '.join(numeric)}")
    if key not in numeric:
        kinds = " or ".join(t.__name__ for t in params[key] if t is not type(None))
        raise InputError(f"--env-sweep sweeps numeric parameters; {key!r} of env {env_name!r} takes {kinds}; "
                         f"numeric: {', '.join(numeric)}")
    if float in params[key]:
        return [float(v) for v in values]
    fractional = [v for v in values if not v.is_integer()]
    if fractional:
        raise InputError(f"--env-sweep: {key!r} of env {env_name!r} takes whole numbers, got {fractional[0]:g}")
    return [int(v) for v in values]


def check_env_sweep(env_name: str, key: str, values: list[float]) -> list[float | int]:
    """:func:`sweep_values`, then env ``env_name`` built at each value, so that its own checks of the
    parameter's range run (before a checkpoint loads; evaluating builds it again with the checkpoint's
    ``env_overrides``)."""
    default = envs.make(env_name)
    default.close()
    values = sweep_values(default, env_name, key, values)
    for value in values:
        with _naming(key, value):
            envs.make(env_name, **{key: value}).close()
    return values


def sweep_evaluators(evaluator: Evaluator, key: str, values: list[float]) -> list[Evaluator]:
    """``evaluator`` at each value of its env's parameter ``key``, all built (so checked: the env's
    ranges, the checkpoint's fit) before any episode runs."""
    values = sweep_values(evaluator.env, evaluator.env_name, key, values)
    evaluators = []
    for value in values:
        with _naming(key, value):
            evaluators.append(evaluator.with_env_overrides(**{key: value}))
    return evaluators


@contextlib.contextmanager
def _naming(key: str, value: float):
    """Prefix an InputError raised in the block with the swept value it is about."""
    try:
        yield
    except InputError as e:
        raise InputError(f"--env-sweep {key}={value:g}: {e}") from None


# ------------------------------------------------------------------------------- worker processes
_LOADED: dict = {}  # per worker process: (checkpoint, env, device, counters, ...) -> Evaluator


def _worker_run(load: tuple, threads: int, episode: tuple) -> EpisodeResult:
    """Run one episode in a worker, loading the checkpoint on its first call (errors reach the parent)."""
    torch.set_num_threads(threads)
    if load not in _LOADED:
        path, env, device, counters, config_cls, attacks, overrides = load
        evaluator = Evaluator(path, env, device, config_cls, attacks, dict(overrides))
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
    local = list(range(n_video)) if workers > 1 else list(range(episodes))
    remote = [k for k in range(episodes) if k not in local]
    results: dict[int, EpisodeResult] = {}
    pool = None
    try:
        if remote:
            threads = torch.get_num_threads()  # as here: the same kernels, the same numbers
            counters = json.dumps(evaluator.counters, sort_keys=True)
            load = (evaluator.path, evaluator.env_name, str(evaluator.device), counters, evaluator.config_cls,
                    evaluator.attacks, tuple(sorted(evaluator.extra_overrides.items())))
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
    if evaluator.extra_overrides:
        out["env_overrides"] = dict(evaluator.extra_overrides)
    # a best.pt in its own env at its run's seed: these are the evaluation episodes that chose it
    out["chose_checkpoint"] = (Path(evaluator.path).name == checkpoints.BEST and seed == evaluator.cfg.seed
                               and evaluator.env_name == evaluator.cfg.env and not evaluator.extra_overrides
                               and attack is None)
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
