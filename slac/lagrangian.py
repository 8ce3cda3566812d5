"""The Lagrange multiplier λ ≥ 0 on the episode cost budget, updated once per episode.

- ``gradient``: projected dual ascent, λ ← max(0, λ + lr (C − d)), with C the measured episode
  cost and d the episode budget. (Safe SLAC updates a softplus-parametrised λ with SGD every
  step on the per-step error; summed over an episode that error is C − d, the signal used here.)
- ``pid``: the PID Lagrangian of Stooke, Achiam & Abbeel (2020, Algorithm 2):
  e = C − d,  I ← max(0, I + K_i e),  ∂ = max(0, C − C_prev),  λ = max(0, K_p e + I + K_d ∂).
"""

from __future__ import annotations

import torch
from torch import nn

from slac.config import AgentConfig


class Lagrangian(nn.Module):
    def __init__(self, cfg: AgentConfig, budget: float):
        super().__init__()
        self.kind, self.budget = cfg.lagrangian, float(budget)
        self.lr, self.kp, self.ki, self.kd = cfg.lagrange_lr, cfg.pid_kp, cfg.pid_ki, cfg.pid_kd
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
        else:
            integral = max(0.0, float(self.integral) + self.ki * error)
            previous = float(self.previous_cost)
            derivative = 0.0 if previous != previous else max(0.0, float(episode_cost) - previous)  # nan: first
            lam = max(0.0, self.kp * error + integral + self.kd * derivative)
            self.integral.fill_(integral)
            self.previous_cost.fill_(float(episode_cost))
        self.lam.fill_(lam)
        return {"train/lambda": lam, "train/cost_minus_budget": error}
