"""The training loop: the only place that knows env, buffer, model, agent and logger together.

Phases:
- ``source``: random-action collection (``train.initial_collection_steps``), model pre-training
  (``train.initial_learning_steps`` model-only updates), then act with π and update model and agent.
- ``target``: starts from a source checkpoint (model, actor, critics and targets, α, λ, optimiser
  states; an exported agent, ``agents/<name>``, has none: its optimisers start fresh), evaluates
  zero-shot before any update, then fine-tunes all of it. Its initial collection
  acts with the loaded policy, never at random: every step in the target task pays real cost.
``train/lifetime_cost`` sums the cost of every training step of the run (exploration included,
evaluation episodes excluded): in a target run it is the lifetime target cost (Knight & Achiam).

One loop iteration is one agent step: :meth:`Trainer._collect` (act, step the env, store, move λ),
:meth:`Trainer._learn` (pre-training once, then bursts of model and agent updates), and
:meth:`Trainer._periodic` (log, reconstructions, evaluation, checkpoint).
"""

from __future__ import annotations

import errno
import json
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import envs
from slac import checkpoint, provenance
from slac.agent import AgentBatch, SafeSACAgent
from slac.agent_inputs import CleanInputs, LearnerInputs
from slac.buffer import SequenceReplayBuffer
from slac.config import PHASES, Config, check_memory, save_yaml, to_dict
from slac.errors import InputError
from slac.evaluation import evaluate_policy
from slac.latent import LatentModel, to_float
from slac.learner import build_learner, check_compatible, env_spec, load_learner, resolve_device
from slac.logger import Logger
from slac.rollout import LatentPolicy, episode_seed
from slac.rundir import RunLock

InputsFactory = Callable[[Config, LatentModel, SafeSACAgent], LearnerInputs]


def make_training_env(cfg: Config):
    """The env a run learns in: the config's env, its parameters redrawn every episode where
    ``randomize.ranges`` asks for it (domain randomisation; the evaluation env stays nominal)."""
    r = cfg.randomize
    if not r.ranges:
        return envs.make(cfg.env, seed=cfg.seed, **cfg.env_overrides)
    from envs.randomization import make_randomized

    return make_randomized(cfg.env, r.ranges, r.exclude, r.sampler, cfg.seed, options={
        "candidates": r.candidates, "explore": r.explore, "neighbours": r.neighbours, "memory": r.memory}
        if r.sampler == "worst_cost" else None, **cfg.env_overrides)


class RunFailed(RuntimeError):
    """The run cannot go on (a full disk, a diverged loss); its last good checkpoint is kept."""


class TrainingDiverged(RunFailed):
    """A loss, or the action the policy chose, became NaN or inf."""


class Trainer:
    """A run: env, replay buffer, latent model, agent, logger and counters, in ``out_dir``.

    ``inputs`` builds what the learners see of each sampled batch (``slac.agent_inputs``): Safe SLAC's
    own by default, or a source-training method's. The run holds ``lock`` on its directory (taken
    here if not given) until :meth:`run` ends or :meth:`close` is called.

    Resuming is exact: a checkpoint holds, besides weights, optimisers, counters and RNG states, the
    pending log averages, the metrics file's length, the running episode's sums and the policy's
    filter state; the env is brought back to the same step by re-running the episode's stored actions
    from its seeded reset (each frame checked against the replay), so a run resumed from any
    checkpoint continues bit for bit as the run that wrote it would have.
    """

    def __init__(self, cfg: Config, out_dir: str | Path, phase: str, init_from: dict | None = None,
                 resume_from: dict | None = None, progress: bool = True, inputs: InputsFactory = CleanInputs,
                 lock: RunLock | None = None):
        if phase not in PHASES:
            raise InputError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
        self.cfg, self.phase, self.progress = cfg, phase, progress
        self.out_dir = Path(out_dir)
        self.lock = lock or RunLock(self.out_dir)
        self.ckpt_dir = self.out_dir / checkpoint.CHECKPOINTS
        self.device = resolve_device(cfg.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)

        self.env = make_training_env(cfg)
        self.eval_env = envs.make(cfg.env, **cfg.env_overrides)
        self.spec = env_spec(self.env)
        if cfg.model.sequence_length > self.spec["episode_steps"]:
            raise InputError(f"config key 'model.sequence_length' is {cfg.model.sequence_length} but episodes of "
                             f"{cfg.env} last {self.spec['episode_steps']} agent steps: sequences stay inside one "
                             "episode, so no update could ever happen; use a sequence_length up to the episode's")
        if resume_from is not None:  # first: an exported agent (no optimiser, RNG or replay state) cannot resume
            checkpoint.check_resumable(resume_from)
        for state in (init_from, resume_from):
            if state is not None:
                check_compatible(state, cfg, self.spec, cfg.env)
        check_memory(cfg, tuple(self.spec["obs_shape"]), self.spec["action_dim"])  # before allocating any of it
        self.model, self.agent = build_learner(cfg, self.spec, self.device)
        self.inputs = inputs(cfg, self.model, self.agent)
        self.buffer = SequenceReplayBuffer(cfg.train.buffer_size, tuple(self.spec["obs_shape"]),
                                           self.spec["action_dim"], cfg.model.sequence_length)
        self.counters = {"step": 0, "env_steps": 0, "episodes": 0, "updates": 0, "model_updates": 0,
                         "lifetime_cost": 0.0, "pretrained": False, "zero_shot_done": False,
                         "best_feasible_step": -1, "best_feasible_return": 0.0}  # best.pt's, -1: none yet
        self.source_checkpoint = ""
        self._update_credit = 0.0
        self.policy = LatentPolicy(self.model, self.agent, self.device, deterministic=False)
        self._episode: dict = {}  # the running episode's return, cost, and whether the policy acted all of it
        self._resumed: dict | None = None  # a resumed run's episode and filter state, until the loop restores them
        self._stop_signal: int | None = None
        self.interrupted: int | None = None  # the signal that stopped the run early (a checkpoint was saved)
        self.code_version = checkpoint.code_version()

        self.fresh_optimizers = False  # fine-tuning an exported agent: its optimisers start fresh
        for state in (init_from, resume_from):
            if state is not None:
                self.fresh_optimizers = not load_learner(state, self.model, self.agent)
        if init_from is not None:
            self.source_checkpoint = init_from["path"]
            if self.fresh_optimizers:
                print(f"{init_from['path']} holds no optimiser states (an exported agent): fine-tuning starts "
                      "with fresh Adam optimisers")
        if resume_from is not None:
            checkpoint.clean_stale(self.ckpt_dir, resume_from["replay_file"])
            self.buffer.load_state_dict(checkpoint.load_replay(self.ckpt_dir / resume_from["replay_file"]))
            self.counters.update(resume_from["counters"])
            self.source_checkpoint = resume_from.get("source_checkpoint", "")
            self._update_credit = float(resume_from["update_credit"])
            self._restore_rng(resume_from["rng"])
            self._resumed = {"episode": resume_from["episode"], "policy_state": resume_from["policy_state"]}
            if hasattr(self.env, "load_state_dict"):  # a randomised env's memory of finished episodes
                env_state = resume_from.get("env")
                if not isinstance(env_state, dict) or "sampler" not in env_state:
                    raise InputError(f"checkpoint {resume_from['path']!r} holds no state of the randomised env "
                                     "(randomize.*): it cannot be resumed exactly")
                self.env.load_state_dict(env_state)

        save_yaml(cfg, self.out_dir / "config.yaml")
        provenance.record(self.out_dir, self.counters["step"], self.device, self.code_version)
        self.logger = Logger(self.out_dir, resume=resume_from["logger"] if resume_from is not None else None)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "numpy": json.dumps(self.rng.bit_generator.state)}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "phase": self.phase,
            "architecture": checkpoint.architecture(self.model, self.agent),
            "code_version": self.code_version,
            "config": to_dict(self.cfg),
            "env_spec": self.spec,
            "counters": dict(self.counters),
            "source_checkpoint": self.source_checkpoint,
            "update_credit": self._update_credit,
            "model": self.model.state_dict(),
            "model_optimizer": self.model.optimizer.state_dict(),
            "agent": self.agent.state_dict(),
            "agent_optimizers": {k: o.state_dict() for k, o in self.agent.optimizers.items()},
            "rng": rng,
            "episode": dict(self._episode),
            "policy_state": {k: v.clone() for k, v in (self.policy.state or {}).items()},
            "logger": self.logger.state_dict(self.counters["step"]),
            "env": self.env.state_dict() if hasattr(self.env, "state_dict") else {},
        }

    def _restore_rng(self, rng: dict) -> None:
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.rng.bit_generator.state = json.loads(rng["numpy"])

    def save(self, keep: bool = False, best: bool = False) -> Path:
        """Write ``checkpoints/latest.pt`` and its replay buffer as one snapshot; ``keep`` adds a copy,
        ``best`` a ``best.pt``."""
        return checkpoint.save_snapshot(self.ckpt_dir, self.state_dict(), self.buffer.state_dict, keep, best)

    def _new_best_feasible(self, evaluation: dict[str, float]) -> bool:
        """Whether the checkpoint saved at this evaluation's step becomes ``best.pt``
        (``train.keep_best_feasible``, source phase): mean cost within the budget and a return at least
        the best kept so far (a tie goes to the later). Records it in the counters."""
        c = self.counters
        if not (self.cfg.train.keep_best_feasible and self.phase == "source"):
            return False
        if evaluation["eval/cost"] > evaluation["eval/budget"]:
            return False
        if c["best_feasible_step"] >= 0 and evaluation["eval/return"] < c["best_feasible_return"]:
            return False
        c["best_feasible_step"], c["best_feasible_return"] = c["step"], float(evaluation["eval/return"])
        return True

    # ---------------------------------------------------------------- updates
    def _batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        arrays = self.buffer.sample(batch_size, self.rng)
        batch = {k: torch.as_tensor(v, device=self.device) for k, v in arrays.items()}
        batch["images"] = to_float(batch.pop("frames"))  # (B, S+1, C, H, W) in [0, 1]
        return batch

    def update_model(self) -> dict[str, float]:
        b = self._batch(self.cfg.model.batch_size)
        images, extra = self.inputs.model_images(b["images"], b["action"], self.counters["step"])
        metrics = self.model.update(images, b["action"], b["reward"], b["cost"])
        self.counters["model_updates"] += 1
        return {**metrics, **extra}

    def agent_batch(self) -> tuple[AgentBatch, dict[str, float]]:
        """A sampled batch as the agent learns from it: the last ``agent.sequence_transitions``
        transitions of each sequence as rows (B·k, ...), and the inputs' metrics."""
        return self.inputs.agent_batch(self._batch(self.cfg.agent.batch_size), self.counters["step"],
                                       self.cfg.agent.sequence_transitions)

    def update_agent(self, batch: tuple[AgentBatch, dict[str, float]] | None = None) -> dict[str, float]:
        """One agent update, on ``batch`` (from ``agent_batch``) or on a freshly sampled one."""
        rows, extra = batch or self.agent_batch()
        metrics = self.agent.update(rows)
        self.counters["updates"] += 1
        return {**metrics, **extra}

    def _agent_batches(self, n: int):
        """The batches of the n agent updates after a model update: n sampled ones, or with
        ``train.split_agent_batch`` one sampled and filtered batch dealt out in n disjoint random
        shares of its transitions (None: ``update_agent`` samples its own)."""
        if not self.cfg.train.split_agent_batch:
            yield from [None] * n
            return
        rows, extra = self.agent_batch()
        for share in np.array_split(self.rng.permutation(rows.z.shape[0]), n):
            yield rows.rows(torch.as_tensor(share, device=self.device)), extra

    def _update_burst(self) -> None:
        """The model and agent updates due after ``train.update_every`` agent steps."""
        cfg = self.cfg.train
        self._update_credit += cfg.update_every * cfg.updates_per_step
        while self._update_credit >= 1:
            self._update_credit -= 1
            self._record(self.update_model())
            for batch in self._agent_batches(cfg.agent_updates_per_model_update):
                self._record(self.update_agent(batch))

    def _record(self, metrics: dict[str, float]) -> None:
        """Stop on a non-finite metric, else add the metrics to the next log record's averages."""
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"non-finite {', '.join(bad)} at step {self.counters['step']}; stopped without saving. "
                f"The last good checkpoint is {self.ckpt_dir / checkpoint.LATEST} (if one was written).")
        self.logger.accumulate(metrics)

    def _can_update(self) -> bool:
        return self.buffer.size > self.cfg.model.sequence_length and self.buffer.num_valid_starts() > 0

    def pretrain_model(self) -> bool:
        """Model-only updates after the initial collection (Safe SLAC's initial_learning_steps).

        A stop signal cuts it short (False is returned; the run saves and exits): Safe SLAC's 30,000
        updates take hours on a CPU. No other model update precedes pre-training, so
        ``model_updates`` counts the ones done, and a resumed run does the rest.
        """
        n = self.cfg.train.initial_learning_steps
        done = self.counters["model_updates"]
        if n > done and self._can_update():
            for _ in tqdm(range(done, n), initial=done, total=n, desc="model pre-training", disable=not self.progress,
                          leave=False, dynamic_ncols=True):
                if self._stop_signal is not None:
                    return False
                self._record(self.update_model())
                if self.counters["model_updates"] % self.cfg.train.checkpoint_interval == 0:
                    self.save()  # pre-training is checkpointed as often as training (in model updates)
            self.logger.write(self.counters["step"])
            # the running episode's filter state came from the untrained model; continuing it with the
            # trained one can diverge (seen: |z| x2 per step to inf within 120 steps), so filter it again
            self.policy.refilter(*self.buffer.current_episode())
        self.counters["pretrained"] = True
        return True

    # ------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, float]:
        """``train.eval_episodes`` deterministic episodes in the run's env, as ``evaluate.py`` runs them
        (the same per-episode seeds for the run's seed), as ``eval/`` scalars."""
        policy = LatentPolicy(self.model, self.agent, self.device, deterministic=True)
        summary = evaluate_policy(self.eval_env, policy, self.cfg.seed, self.cfg.train.eval_episodes,
                                  self.agent.budget_per_episode)
        return {"eval/return": summary["return"]["mean"], "eval/return_std": summary["return"]["std"],
                "eval/cost": summary["cost"]["mean"], "eval/cost_std": summary["cost"]["std"],
                "eval/violation_rate": summary["violation_rate"], "eval/budget": summary["budget"]}

    # ------------------------------------------------------------------- loop
    def request_stop(self, signum: int) -> None:
        """Save and stop at the next step boundary (SIGINT/SIGTERM while running call this)."""
        self._stop_signal = signum

    def _on_signal(self, signum, frame) -> None:
        self.request_stop(signum)

    def run(self) -> dict[str, float]:
        """Train until ``train.steps`` agent steps; returns the final evaluation metrics."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._run()
        except OSError as e:
            latest = self.ckpt_dir / checkpoint.LATEST
            reason = "the disk is full" if e.errno == errno.ENOSPC else f"a write failed ({e.strerror or e})"
            raise RunFailed(f"{reason} at step {self.counters['step']}"
                            f"{f' writing {e.filename}' if e.filename else ''}; the last complete checkpoint "
                            f"({latest}) and its replay are intact: free space, then "
                            f"python train.py --resume {self.out_dir}") from None
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.close()

    def close(self) -> None:
        """Close the logs and release the run directory."""
        self.logger.close()
        self.lock.release()

    def _run(self) -> dict[str, float]:
        c = self.counters
        if self.phase == "target" and not c["zero_shot_done"]:
            self._zero_shot()
        self._last_log = self._mark(time.perf_counter())
        self._bar = tqdm(total=self.cfg.train.steps, initial=c["step"], desc=f"{self.phase} {self.cfg.env}",
                         disable=not self.progress, dynamic_ncols=True, unit="step")
        final: dict[str, float] = {}
        if self._resumed is None:
            self._start_episode()
        else:
            self._restore_episode()
            if c["step"] >= self.cfg.train.initial_collection_steps and not c["pretrained"] and self._learn():
                final = self._periodic() or final  # saved inside pre-training: finish this step first
        while c["step"] < self.cfg.train.steps:
            if self._stop_signal is not None:
                self._stop()
                return final
            self._collect()
            if self._learn():
                final = self._periodic() or final
        self._bar.close()
        return final

    def _zero_shot(self) -> None:
        """The loaded policy in the target env, before any update."""
        zero_shot = self.evaluate()
        zero_shot.update({"target/zero_shot_return": zero_shot["eval/return"],
                          "target/zero_shot_cost": zero_shot["eval/cost"]})
        self.logger.write(self.counters["step"], zero_shot)
        self.counters["zero_shot_done"] = True

    def _start_episode(self) -> None:
        obs, _ = self.env.reset(seed=episode_seed(self.cfg.seed, self.counters["episodes"]))
        self.buffer.add_first(obs)
        self.policy.reset(obs)
        self._episode = {"return": 0.0, "cost": 0.0, "by_policy": True}

    def _restore_episode(self) -> None:
        """Bring a resumed run's env back to the saved step: reset it with the episode's seed and replay
        the episode's stored actions (the env is deterministic given both), checking every frame."""
        frames, actions = self.buffer.current_episode()
        obs, _ = self.env.reset(seed=episode_seed(self.cfg.seed, self.counters["episodes"]))
        for k, frame in enumerate(frames):
            if k > 0:
                obs = self.env.step(actions[k - 1])[0]
            if not np.array_equal(obs, frame):
                raise RunFailed(f"cannot resume exactly: replaying the running episode's actions gave another "
                                f"frame at its step {k} than the one stored (the env or its code changed?)")
        state = self._resumed["policy_state"]
        self.policy.state = {k: v.to(self.device) for k, v in state.items()} if state else None
        self._episode = dict(self._resumed["episode"])
        self._resumed = None

    def _random_phase(self) -> bool:
        """Source runs act at random for their first ``train.initial_collection_steps`` steps."""
        return self.phase == "source" and self.counters["step"] < self.cfg.train.initial_collection_steps

    def _collect(self) -> None:
        """One agent step: act, step the env, store the transition, count, move λ, end the episode."""
        c, episode = self.counters, self._episode
        by_policy = not self._random_phase()
        if by_policy:
            action = self.policy.act()
            if not np.isfinite(action).all():
                z = self.policy.state["z"]
                raise TrainingDiverged(
                    f"the policy's action is not finite at step {c['step']}: the online filter's latent state "
                    f"diverged (max |z| = {float(z.abs().max()):.3g}); stopped without saving. The last good "
                    f"checkpoint is {self.ckpt_dir / checkpoint.LATEST} (if one was written).")
        else:
            action = self.rng.uniform(-1.0, 1.0, self.spec["action_dim"]).astype(np.float32)
        obs, reward, terminated, truncated, info = self.env.step(action)
        cost = float(info["cost"])
        self.buffer.add(action, reward, cost, terminated, obs)
        c["step"] += 1
        c["env_steps"] += self.spec["action_repeat"]
        c["lifetime_cost"] += cost
        episode["return"] += float(reward)
        episode["cost"] += cost
        episode["by_policy"] &= by_policy
        if by_policy:
            self.agent.lagrangian.observe_step(cost)
        self._bar.update(1)
        if not (terminated or truncated):
            self.policy.observe(action, obs)
            return
        c["episodes"] += 1
        scalars = {"train/episode_return": episode["return"], "train/episode_cost": episode["cost"]}
        if hasattr(self.env, "episode_params"):  # domain randomisation: each episode's draw, one record each
            self.logger.event(c["step"], {"episode/return": episode["return"], "episode/cost": episode["cost"],
                                          **{f"episode/{k}": v for k, v in self.env.episode_params.items()}})
        if episode["by_policy"]:
            scalars.update(self.agent.lagrangian.observe_episode(episode["cost"]))
        self.logger.accumulate(scalars)
        self._bar.set_postfix(ret=f"{episode['return']:.1f}", cost=f"{episode['cost']:.1f}",
                              lam=f"{self.agent.lagrangian.value:.3g}")
        self._start_episode()

    def _learn(self) -> bool:
        """Pre-train the model once the initial collection is done, then update every
        ``train.update_every`` steps. False if a stop signal cut pre-training short."""
        c, cfg = self.counters, self.cfg.train
        if c["step"] < cfg.initial_collection_steps:
            return True
        if not c["pretrained"] and not self.pretrain_model():
            return False  # the loop saves and stops at its next check
        if c["step"] % cfg.update_every == 0 and self._can_update():
            self._update_burst()
        return True

    def _periodic(self) -> dict[str, float] | None:
        """Log, reconstructions, evaluation (not while acting at random) and checkpoint, each when due;
        returns the evaluation's metrics if one ran."""
        c, cfg = self.counters, self.cfg.train
        last_step = c["step"] == cfg.steps
        if c["step"] % cfg.log_interval == 0:
            self._log()
        if cfg.image_log_interval and c["step"] % cfg.image_log_interval == 0 and self._can_update():
            self.log_reconstruction()
        evaluation = None
        if (c["step"] % cfg.eval_interval == 0 and not self._random_phase()) or last_step:
            evaluation = self.evaluate()
            self.logger.write(c["step"], evaluation)
            self._bar.set_description(f"{self.phase} {self.cfg.env} eval ret {evaluation['eval/return']:.1f} "
                                      f"cost {evaluation['eval/cost']:.1f}")
        if c["step"] % cfg.checkpoint_interval == 0 or last_step:
            best = evaluation is not None and self._new_best_feasible(evaluation)
            self.save(keep=c["step"] % cfg.checkpoint_interval == 0, best=best)
        return evaluation

    def _mark(self, now: float) -> dict:
        return {"time": now, **{k: self.counters[k] for k in ("env_steps", "updates", "model_updates")}}

    def _log(self) -> None:
        c, last = self.counters, self._last_log
        now = time.perf_counter()
        dt = max(now - last["time"], 1e-9)
        self.logger.write(c["step"], {
            "train/lifetime_cost": c["lifetime_cost"], "train/lambda": self.agent.lagrangian.value,
            "train/episodes": c["episodes"], "train/updates": c["updates"],
            "train/model_updates": c["model_updates"],
            "perf/env_steps_per_s": (c["env_steps"] - last["env_steps"]) / dt,
            # agent updates: agent_updates_per_model_update x the model's rate
            "perf/updates_per_s": (c["updates"] - last["updates"]) / dt,
            "perf/model_updates_per_s": (c["model_updates"] - last["model_updates"]) / dt})
        self._last_log = self._mark(now)

    def _stop(self) -> None:
        path = self.save()
        self.interrupted = self._stop_signal
        self._bar.close()
        print(f"\nstopped by signal {self._stop_signal} at step {self.counters['step']}; saved {path}. "
              f"Resume with: python train.py --resume {self.out_dir}")

    @torch.no_grad()
    def log_reconstruction(self) -> None:
        """Observed frames (top row) and their reconstructions from the posterior (bottom row)."""
        b = self._batch(1)
        post = self.model.filter_sequence(self.model.encode(b["images"]), b["action"], sample=False)
        recon = self.model.decode(post["z1"], post["z2"]).clamp(0, 1)
        rows = torch.cat([b["images"][0], recon[0]], dim=-2)  # (S+1, C, 2H, W)
        grid = torch.cat(list(rows), dim=-1)  # (C, 2H, (S+1)W)
        self.logger.image("model/reconstruction", grid.cpu().numpy(), self.counters["step"])

