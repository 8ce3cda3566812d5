"""Acting online: filter the latent state step by step, query the actor, run and seed episodes.

The posterior is updated with each new frame (``LatentModel.filter_step``), never by re-encoding
the history. Seeds: training episode k of a run with seed s resets its env with
``episode_seed(s, k)``; evaluation episode k with ``episode_seed(s, k, EVAL_STREAM)``, which also
seeds torch for that episode (:func:`evaluation_episode`), so an evaluation episode's result depends
only on (weights, env, s, k, policy settings), wherever and in whatever order it runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from slac.latent import to_float

TRAIN_STREAM, EVAL_STREAM = 0, 1


def episode_seed(seed: int, index: int, stream: int = TRAIN_STREAM) -> int:
    """A distinct, reproducible env seed per (run seed, episode index, stream)."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


class LatentPolicy:
    """π(a | z_t) with z_t filtered from the observation/action history of the current episode.

    ``attack`` (an online attack, from the evaluator's attack factory) acts at
    every step: its ``image`` perturbs each incoming frame, given the previous filter state, before
    the frame is folded in (so the filter carries its effect forward); its ``latent`` perturbs the
    z the actor sees, which is not carried forward (``state`` stays the clean filter state).
    ``attacked_image`` is the last frame the filter saw, (C, H, W) uint8 (for videos).
    """

    def __init__(self, model, agent, device: torch.device, deterministic: bool = False, attack=None):
        self.model, self.agent, self.device = model, agent, device
        self.deterministic = deterministic
        # the filter draws its latents only when acting stochastically with agent.latent_input 'sample'
        self.sample_latent = not deterministic and agent.cfg.latent_input == "sample"
        self.attack = attack
        self.state: dict | None = None
        self.attacked_image: np.ndarray | None = None

    def _image(self, obs: np.ndarray, action: torch.Tensor | None = None) -> torch.Tensor:
        image = to_float(torch.as_tensor(obs, device=self.device).unsqueeze(0))  # (1, C, H, W)
        if self.attack is not None:
            image = self.attack.image(self.state if action is not None else None, image, action)
            self.attacked_image = (image[0] * 255).round().to(torch.uint8).cpu().numpy()
        return image

    @torch.no_grad()
    def reset(self, obs: np.ndarray) -> None:
        """Start a new episode from its first frame: q(z1_0 | x_0), p(z2_0 | z1_0)."""
        self.state = self.model.init_filter(self._image(obs), sample=self.sample_latent)

    @torch.no_grad()
    def act(self) -> np.ndarray:
        z = self.state["z"] if self.attack is None else self.attack.latent(self.state)
        action = self.agent.act(z, deterministic=self.deterministic)
        return action[0].cpu().numpy()

    @torch.no_grad()
    def observe(self, action: np.ndarray, obs: np.ndarray) -> None:
        """Fold in the action just taken and the frame it produced."""
        a = torch.as_tensor(action, dtype=torch.float32, device=self.device).unsqueeze(0)
        self.state = self.model.filter_step(self.state, self._image(obs, a), a, sample=self.sample_latent)

    def refilter(self, frames: np.ndarray, actions: np.ndarray) -> None:
        """Filter the episode so far again, from its first frame: frames (T+1, C, H, W), actions (T, A).
        For when the model has just changed a lot (after pre-training): the old model's filter state
        is not one the new model has learned to continue from."""
        self.reset(frames[0])
        for action, frame in zip(actions, frames[1:], strict=True):
            self.observe(action, frame)


@dataclass
class Episode:
    episode_return: float
    episode_cost: float
    length: int


def run_episode(env, policy: LatentPolicy, seed: int | None,
                on_step: Callable[[dict], None] | None = None) -> Episode:
    """Run one episode to its end; ``on_step`` (if given) sees every step's data (for videos)."""
    obs, info = env.reset(seed=seed)
    policy.reset(obs)
    total_reward = total_cost = 0.0
    length = 0
    done = False
    while not done:
        action = policy.act()
        next_obs, reward, terminated, truncated, info = env.step(action)
        total_reward += float(reward)
        total_cost += float(info["cost"])
        length += 1
        if on_step is not None:
            on_step({"obs": obs, "action": action, "reward": float(reward), "cost": float(info["cost"]),
                     "next_obs": next_obs, "policy_state": policy.state, "step": length})
        policy.observe(action, next_obs)
        obs = next_obs
        done = terminated or truncated
    return Episode(total_reward, total_cost, length)


def evaluation_episode(env, policy: LatentPolicy, seed: int, index: int,
                       on_step: Callable[[dict], None] | None = None) -> tuple[int, Episode]:
    """Evaluation episode ``index`` of run seed ``seed``: env and torch seeded with its episode seed
    (the caller's torch RNG state is kept). Returns that seed and the episode."""
    s = episode_seed(seed, index, EVAL_STREAM)
    device = policy.device
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(s)
        return s, run_episode(env, policy, s, on_step)


def episode_stats(x: np.ndarray, floor: float = -math.inf) -> dict:
    """Mean, sample std and 95 % t-interval of the mean, the interval cut at ``floor`` (a bound the
    mean is known to respect, e.g. 0 for costs: cutting there keeps every mean the interval held)."""
    n = len(x)
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "std": 0.0, "ci95": None}
    from scipy.stats import t  # scipy comes with dm-control

    std = float(x.std(ddof=1))
    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": [max(mean - half, floor), mean + half]}
