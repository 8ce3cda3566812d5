"""The Lagrange multiplier λ ≥ 0 on the episode cost budget, updated once per episode.

- ``gradient``: projected dual ascent, λ ← max(0, λ + lr (C − d)), with C the measured episode
  cost and d the episode budget. (Safe SLAC, ``slac/algo.py`` ``update_lag``, instead takes an SGD
  step every env step on λ = softplus(ρ) with the per-step error c_t − d/T, scaled by
  1/softplus(ρ), i.e. nearly a step on log λ; summed over an episode its error is C − d, the
  signal used here once per episode.)
- ``pid``: the PID Lagrangian of Stooke, Achiam & Abbeel (2020, Algorithm 2):
  e = C − d,  I ← max(0, I + e),  ∂ = max(0, C − C_prev),  λ = max(0, K_p e + K_i I + K_d ∂).
  The buffer ``integral`` holds K_i I (the same, as K_i ≥ 0), started at the initial λ so both
  rules start equal; the first episode has no derivative term (Algorithm 2's C_prev = 0 would
  kick λ up by K_d C).
- ``log``: a step on log λ, as Safe SLAC's softplus-parameterised update nearly is:
  λ ← max(λ_min, λ · exp(η · clip((C − d) / max(d, 1), −1, 1))). λ changes by a factor of at most
  e^η per episode, up or down, so it falls as fast as it rose once the cost is under the budget
  (the gradient rule falls by only lr · d per safe episode: 5·10⁻⁴ at cpu-small's 2·10⁻⁵). With
  Adam normalising its per-step gradients, Safe SLAC's ρ moves by about its learning rate per agent
  step, 500 · 2·10⁻⁴ = 0.1 per 1000-step episode at action repeat 2: hence η = 0.1 by default. The
  floor λ_min > 0 lets λ rise again (a product cannot leave 0).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from envs.errors import InputError
from slac.config import AgentConfig


class Lagrangian(nn.Module):
    """λ ≥ 0 and the state of its update rule (buffers, so ``state_dict`` holds all of it)."""

    KINDS = ("gradient", "pid", "log")

    def __init__(self, cfg: AgentConfig, budget: float):
        super().__init__()
        if cfg.lagrangian not in self.KINDS:
            raise InputError(f"unknown agent.lagrangian {cfg.lagrangian!r}; valid: {', '.join(self.KINDS)}")
        self.kind, self.budget = cfg.lagrangian, float(budget)
        self.lr, self.kp, self.ki, self.kd = cfg.lagrange_lr, cfg.pid_kp, cfg.pid_ki, cfg.pid_kd
        self.log_lr, self.floor = cfg.lagrange_log_lr, cfg.lagrange_min
        self.register_buffer("lam", torch.tensor(float(cfg.init_lagrange)))
        # PID state: integral (starts at the initial λ so both rules start equal) and last cost
        self.register_buffer("integral", torch.tensor(float(cfg.init_lagrange)))
        self.register_buffer("previous_cost", torch.tensor(float("nan")))

    @property
    def value(self) -> float:
        return float(self.lam)

    def update(self, episode_cost: float) -> dict[str, float]:
        error = float(episode_cost) - self.budget
        if self.kind == "gradient":
            lam = max(0.0, self.value + self.lr * error)
        elif self.kind == "log":
            relative = min(1.0, max(-1.0, error / max(self.budget, 1.0)))
            lam = max(self.floor, max(self.value, self.floor) * math.exp(self.log_lr * relative))
        else:
            integral = max(0.0, float(self.integral) + self.ki * error)
            previous = float(self.previous_cost)
            first = math.isnan(previous)  # no previous episode yet
            derivative = 0.0 if first else max(0.0, float(episode_cost) - previous)
            lam = max(0.0, self.kp * error + integral + self.kd * derivative)
            self.integral.fill_(integral)
            self.previous_cost.fill_(float(episode_cost))
        self.lam.fill_(lam)
        return {"train/lambda": lam, "train/cost_minus_budget": error}
