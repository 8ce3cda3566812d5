"""The training loop: the only place that knows env, buffer, model, agent and logger together.

Phases (DESIGN.md):
- ``source``: random-action collection (``train.initial_collection_steps``), model pre-training
  (``train.initial_learning_steps`` model-only updates), then act with π and update model and agent.
- ``target``: starts from a source checkpoint (model, actor, critics and targets, α, λ, optimiser
  states), evaluates zero-shot before any update, then fine-tunes all of it. Its initial collection
  acts with the loaded policy, never at random: every step in the target task pays real cost.
  ``target/lifetime_cost`` sums the cost of every training step in the target env (exploration
  included; evaluation episodes excluded).
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import envs
from latent_adversary import AdversarialTraining, AgentInputs
from slac import checkpoint
from slac.agent import SafeSACAgent
from slac.buffer import SequenceReplayBuffer, last_steps
from slac.config import Config, from_dict, save_yaml, to_dict
from slac.errors import InputError
from slac.latent import LatentModel, to_float
from slac.logger import Logger
from slac.rollout import LatentPolicy, episode_stats, run_episode

PHASES = ("source", "target")
# fields of the model config that fix parameter shapes: a checkpoint must agree on all of them
MODEL_SHAPE_KEYS = ("feature_dim", "z1_dim", "z2_dim", "hidden_units")
AGENT_SHAPE_KEYS = ("hidden_units",)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf; the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but CUDA is not available here; "
                         "use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


def episode_seed(seed: int, index: int, stream: int = 0) -> int:
    """A distinct, reproducible env seed per (run seed, episode index, stream: 0 train / 1 eval)."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def env_spec(env) -> dict:
    u = env.unwrapped
    return {"obs_shape": list(env.observation_space.shape), "action_dim": int(env.action_space.shape[0]),
            "action_repeat": int(u.action_repeat), "episode_steps": int(u.max_episode_steps)}


def build_learner(cfg: Config, spec: dict, device: torch.device) -> tuple[LatentModel, SafeSACAgent]:
    model = LatentModel(cfg.model, spec["action_dim"], tuple(spec["obs_shape"])).to(device)
    agent = SafeSACAgent(cfg.agent, model.latent_dim, spec["action_dim"], spec["action_repeat"],
                         spec["episode_steps"]).to(device)
    return model, agent


def check_compatible(state: dict, cfg: Config, spec: dict, env_name: str) -> None:
    """Raise InputError, naming both sides, if a checkpoint does not fit this env or model config."""
    saved = state["env_spec"]
    for key, what in (("obs_shape", "observation shape"), ("action_dim", "action size")):
        if list(np.atleast_1d(saved[key])) != list(np.atleast_1d(spec[key])):
            raise InputError(f"checkpoint {state['path']!r} does not fit env {env_name!r}: its {what} is "
                             f"{saved[key]} but the env's is {spec[key]}")
    saved_cfg = state["config"]
    for section, keys in (("model", MODEL_SHAPE_KEYS), ("agent", AGENT_SHAPE_KEYS)):
        for key in keys:
            a, b = saved_cfg[section][key], getattr(getattr(cfg, section), key)
            if a != b:
                raise InputError(f"checkpoint {state['path']!r} has {section}.{key}={a} but the config asks "
                                 f"{section}.{key}={b}; drop the override or train a new source model")


def architecture(model: LatentModel, agent: SafeSACAgent) -> str:
    """A fingerprint of the networks' structure (layers, sizes, activations), stored in checkpoints.

    Parameter shapes alone do not pin a network down: a code change of an activation keeps every
    shape, and such a checkpoint would load silently and compute something else.
    """
    return hashlib.sha256((repr(model) + repr(agent)).encode()).hexdigest()[:16]


def check_architecture(state: dict, model: LatentModel, agent: SafeSACAgent) -> None:
    saved = state.get("architecture")
    if saved is not None and saved != architecture(model, agent):
        raise InputError(f"checkpoint {state['path']!r} was written by networks of another structure "
                         f"(fingerprint {saved}, this code builds {architecture(model, agent)}): the code "
                         f"changed since (it was written by commit {state.get('code_version', 'unknown')}); "
                         "evaluate or resume it with that commit, or train again")


def code_version() -> str:
    """The git commit of this checkout (with '+changes' if the tree is dirty), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+changes" if dirty else "")) if commit else "unknown"


class Trainer:
    def __init__(self, cfg: Config, out_dir: str | Path, phase: str, init_from: dict | None = None,
                 resume_from: dict | None = None, progress: bool = True):
        if phase not in PHASES:
            raise InputError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
        self.cfg, self.phase, self.progress = cfg, phase, progress
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.device = resolve_device(cfg.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)

        self.env = envs.make(cfg.env, seed=cfg.seed, **cfg.env_overrides)
        self.eval_env = envs.make(cfg.env, **cfg.env_overrides)
        self.spec = env_spec(self.env)
        for state in (init_from, resume_from):
            if state is not None:
                check_compatible(state, cfg, self.spec, cfg.env)
        self.model, self.agent = build_learner(cfg, self.spec, self.device)
        self.adversary = AdversarialTraining(cfg.adversary, self.model, self.agent,
                                             start_step=cfg.train.initial_collection_steps)
        self.buffer = SequenceReplayBuffer(cfg.train.buffer_size, tuple(self.spec["obs_shape"]),
                                           self.spec["action_dim"], cfg.model.sequence_length)
        self.counters = {"step": 0, "env_steps": 0, "episodes": 0, "updates": 0, "model_updates": 0,
                         "lifetime_cost": 0.0, "pretrained": False, "zero_shot_done": False}
        self.source_checkpoint = ""
        self._update_credit = 0.0
        self._stop_signal: int | None = None
        self.interrupted = False  # set when a signal stopped the run (a checkpoint was saved)
        self.code_version = code_version()

        for state in (init_from, resume_from):
            if state is not None:
                self._load_learner(state)
        if init_from is not None:
            self.source_checkpoint = init_from["path"]
        if resume_from is not None:
            self.counters.update(resume_from["counters"])
            self.source_checkpoint = resume_from.get("source_checkpoint", "")
            self._update_credit = float(resume_from["update_credit"])
            self._restore_rng(resume_from["rng"])
            replay = checkpoint.load_replay(self.ckpt_dir / checkpoint.REPLAY)
            if replay is None:
                raise InputError(f"cannot resume {str(self.out_dir)!r}: replay buffer "
                                 f"{checkpoint.REPLAY} is missing beside the checkpoint")
            self.buffer.load_state_dict(replay)

        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, self.out_dir / "config.yaml")
        self.logger = Logger(self.out_dir)

    # ----------------------------------------------------------------- state
    def _load_learner(self, state: dict) -> None:
        check_architecture(state, self.model, self.agent)
        try:
            self.model.load_state_dict(state["model"])
            self.model.optimizer.load_state_dict(state["model_optimizer"])
            self.agent.load_state_dict(state["agent"])
            for name, opt in self.agent.optimizers.items():
                opt.load_state_dict(state["agent_optimizers"][name])
        except (RuntimeError, KeyError, ValueError) as e:
            raise InputError(f"checkpoint {state['path']!r} does not fit this model: "
                             f"{str(e).splitlines()[0]}") from None

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "numpy": json.dumps(self.rng.bit_generator.state)}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "phase": self.phase,
            "architecture": architecture(self.model, self.agent),
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
        }

    def _restore_rng(self, rng: dict) -> None:
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.rng.bit_generator.state = json.loads(rng["numpy"])

    def save(self, with_replay: bool = True, keep: bool = False) -> Path:
        """Write ``checkpoints/latest.pt`` (and the replay buffer for resuming); ``keep`` adds a copy."""
        state = self.state_dict()
        latest = self.ckpt_dir / checkpoint.LATEST
        if with_replay:  # replay first: a latest.pt always has a replay at least as new
            checkpoint.save_replay(self.ckpt_dir / checkpoint.REPLAY, self.buffer.state_dict())
        checkpoint.save(latest, state)
        if keep:
            checkpoint.save(self.ckpt_dir / f"step_{self.counters['step']:09d}.pt", state)
        return latest

    # ---------------------------------------------------------------- updates
    def _batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        arrays = self.buffer.sample(batch_size, self.rng)
        batch = {k: torch.as_tensor(v, device=self.device) for k, v in arrays.items()}
        batch["images"] = to_float(batch.pop("frames"))  # (B, S+1, C, H, W) in [0, 1]
        return batch

    def update_model(self) -> dict[str, float]:
        b = self._batch(self.cfg.model.batch_size)
        images, adversary = self.adversary.model_images(b["images"], b["action"], self.counters["step"])
        metrics = self.model.update(images, b["action"], b["reward"], b["cost"])
        self.counters["model_updates"] += 1
        return {**metrics, **adversary}

    def agent_batch(self) -> tuple[AgentInputs, dict[str, torch.Tensor]]:
        """A sampled batch as the agent learns from it: its latent transitions and their a, r, c, done."""
        b = self._batch(self.cfg.agent.batch_size)
        # the agent learns from the last k transitions of each sequence: (z_t, a_t, r_t, c_t, z_{t+1}),
        # t = S-k .. S-1, as rows (B·k, ...), no grad; latent_adversary/ perturbs a share (source phase)
        k = self.cfg.agent.sequence_transitions
        x = self.adversary.agent_inputs(b["images"], b["action"], self.counters["step"], transitions=k)
        return x, {key: last_steps(b[key], k) for key in ("action", "reward", "cost", "terminated")}

    def update_agent(self, batch: tuple[AgentInputs, dict[str, torch.Tensor]] | None = None) -> dict[str, float]:
        """One agent update, on ``batch`` (from ``agent_batch``) or on a freshly sampled one."""
        x, last = batch or self.agent_batch()
        metrics = self.agent.update(x.z, last["action"], last["reward"], last["cost"], x.next_z,
                                    last["terminated"], penalties=x.penalties, actor_z=x.actor_z)
        self.counters["updates"] += 1
        return {**metrics, **x.metrics}

    def _agent_batches(self, n: int):
        """The batches of the n agent updates after a model update: n sampled ones, or with
        ``train.split_agent_batch`` one sampled and filtered batch dealt out in n disjoint random
        shares of its transitions (None: ``update_agent`` samples its own)."""
        if not self.cfg.train.split_agent_batch:
            yield from [None] * n
            return
        x, last = self.agent_batch()
        for rows in np.array_split(self.rng.permutation(x.z.shape[0]), n):
            rows = torch.as_tensor(rows, device=self.device)
            yield (replace(x, z=x.z[rows], next_z=x.next_z[rows],
                           actor_z=None if x.actor_z is None else x.actor_z[rows]),
                   {key: value[rows] for key, value in last.items()})

    def _record(self, metrics: dict[str, float]) -> None:
        """Stop on a non-finite metric, else add the metrics to the next log record's averages."""
        self._check_finite(metrics)
        self.logger.accumulate(metrics)

    def _check_finite(self, metrics: dict[str, float]) -> None:
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"non-finite {', '.join(bad)} at step {self.counters['step']}; stopped without saving. "
                f"The last good checkpoint is {self.ckpt_dir / checkpoint.LATEST} (if one was written).")

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
                    self.logger.write(self.counters["step"])
                    return False
                self._record(self.update_model())
            self.logger.write(self.counters["step"])
        self.counters["pretrained"] = True
        return True

    # ------------------------------------------------------------- evaluation
    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        policy = LatentPolicy(self.model, self.agent, self.device, deterministic=True)
        results = [run_episode(self.eval_env, policy, episode_seed(self.cfg.seed, k, stream=1))
                   for k in range(episodes or self.cfg.train.eval_episodes)]
        returns = np.array([r.episode_return for r in results])
        costs = np.array([r.episode_cost for r in results])
        budget = self.agent.budget_per_episode
        ret, cost = episode_stats(returns), episode_stats(costs, floor=0.0)  # as evaluate.py reports them
        return {"eval/return": ret["mean"], "eval/return_std": ret["std"], "eval/cost": cost["mean"],
                "eval/cost_std": cost["std"], "eval/violation_rate": float((costs > budget).mean()),
                "eval/budget": budget}

    # ------------------------------------------------------------------- loop
    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def run(self) -> dict[str, float]:
        """Train until ``train.steps`` agent steps; returns the final evaluation metrics."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.logger.close()

    def _run(self) -> dict[str, float]:
        cfg, c = self.cfg.train, self.counters
        if self.phase == "target" and not c["zero_shot_done"]:
            zero_shot = self.evaluate()
            zero_shot.update({"target/zero_shot_return": zero_shot["eval/return"],
                              "target/zero_shot_cost": zero_shot["eval/cost"]})
            self.logger.write(c["step"], zero_shot)
            c["zero_shot_done"] = True

        policy = LatentPolicy(self.model, self.agent, self.device, deterministic=False)
        obs, _ = self.env.reset(seed=episode_seed(self.cfg.seed, c["episodes"]))
        self.buffer.add_first(obs)
        policy.reset(obs)
        ep_return = ep_cost = 0.0
        ep_by_policy = True

        def mark(now: float) -> dict:
            return {"time": now, **{k: c[k] for k in ("env_steps", "updates", "model_updates")}}

        last = mark(time.perf_counter())
        bar = tqdm(total=cfg.steps, initial=c["step"], desc=f"{self.phase} {self.cfg.env}",
                   disable=not self.progress, dynamic_ncols=True, unit="step")
        final: dict[str, float] = {}
        while c["step"] < cfg.steps:
            if self._stop_signal is not None:
                path = self.save()
                self.interrupted = True
                bar.close()
                print(f"\nstopped by signal {self._stop_signal} at step {c['step']}; saved {path}. "
                      f"Resume with: python train.py --resume {self.out_dir}")
                return final
            random_phase = self.phase == "source" and c["step"] < cfg.initial_collection_steps
            ep_by_policy &= not random_phase
            if random_phase:
                action = self.rng.uniform(-1.0, 1.0, self.spec["action_dim"]).astype(np.float32)
            else:
                action = policy.act()
            obs, reward, terminated, truncated, info = self.env.step(action)
            cost = float(info["cost"])
            self.buffer.add(action, reward, cost, terminated, obs)
            c["step"] += 1
            c["env_steps"] += self.spec["action_repeat"]
            c["lifetime_cost"] += cost
            ep_return += float(reward)
            ep_cost += cost
            if not random_phase:
                self.agent.lagrangian.observe_step(cost)
            bar.update(1)
            if terminated or truncated:
                c["episodes"] += 1
                episode = {"train/episode_return": ep_return, "train/episode_cost": ep_cost}
                if ep_by_policy:
                    episode.update(self.agent.lagrangian.observe_episode(ep_cost))
                self.logger.accumulate(episode)
                bar.set_postfix(ret=f"{ep_return:.1f}", cost=f"{ep_cost:.1f}",
                                lam=f"{float(self.agent.lagrangian.value):.3g}")
                obs, _ = self.env.reset(seed=episode_seed(self.cfg.seed, c["episodes"]))
                self.buffer.add_first(obs)
                policy.reset(obs)
                ep_return = ep_cost = 0.0
                ep_by_policy = True
            else:
                policy.observe(action, obs)

            if c["step"] >= cfg.initial_collection_steps:
                if not c["pretrained"] and not self.pretrain_model():
                    continue  # stopped by a signal: save at the top of the loop
                if c["step"] % cfg.update_every == 0 and self._can_update():
                    self._update_credit += cfg.update_every * cfg.updates_per_step
                    while self._update_credit >= 1:
                        self._update_credit -= 1
                        self._record(self.update_model())
                        for batch in self._agent_batches(cfg.agent_updates_per_model_update):
                            self._record(self.update_agent(batch))
            if c["step"] % cfg.log_interval == 0:
                now = time.perf_counter()
                dt = max(now - last["time"], 1e-9)
                scalars = {"train/lifetime_cost": c["lifetime_cost"],
                           "train/lambda": float(self.agent.lagrangian.value),
                           "train/episodes": c["episodes"], "train/updates": c["updates"],
                           "train/model_updates": c["model_updates"],
                           "perf/env_steps_per_s": (c["env_steps"] - last["env_steps"]) / dt,
                           # agent updates: agent_updates_per_model_update x the model's rate
                           "perf/updates_per_s": (c["updates"] - last["updates"]) / dt,
                           "perf/model_updates_per_s": (c["model_updates"] - last["model_updates"]) / dt}
                if self.phase == "target":
                    scalars["target/lifetime_cost"] = c["lifetime_cost"]
                self.logger.write(c["step"], scalars)
                last = mark(now)
            if cfg.image_log_interval and c["step"] % cfg.image_log_interval == 0 and self._can_update():
                self.log_reconstruction()
            if c["step"] % cfg.eval_interval == 0 or c["step"] == cfg.steps:
                final = self.evaluate()
                self.logger.write(c["step"], final)
                bar.set_description(f"{self.phase} {self.cfg.env} eval ret {final['eval/return']:.1f} "
                                    f"cost {final['eval/cost']:.1f}")
            if c["step"] % cfg.checkpoint_interval == 0 or c["step"] == cfg.steps:
                self.save(keep=c["step"] % cfg.checkpoint_interval == 0)
        bar.close()
        return final

    @torch.no_grad()
    def log_reconstruction(self) -> None:
        """Observed frames (top row) and their reconstructions from the posterior (bottom row)."""
        b = self._batch(1)
        post = self.model.filter_sequence(self.model.encode(b["images"]), b["action"], sample=False)
        recon = self.model.decode(post["z1"], post["z2"]).clamp(0, 1)
        rows = torch.cat([b["images"][0], recon[0]], dim=-2)  # (S+1, C, 2H, W)
        grid = torch.cat(list(rows), dim=-1)  # (C, 2H, (S+1)W)
        self.logger.image("model/reconstruction", grid.cpu().numpy(), self.counters["step"])


def load_config_of(state: dict) -> Config:
    return from_dict(state["config"])
