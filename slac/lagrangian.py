"""The Lagrange multiplier λ ≥ 0 on the episode cost budget, and the rules that move it.

The trainer reports every agent step's cost (``observe_step``) and every finished episode's cost
(``observe_episode``) while the policy acts; each rule reacts to one of the two. D is the episode
budget and T the episode length in agent steps, so D/T is the budget per agent step.

- ``step`` (Safe SLAC, ``slac/algo.py`` ``update_lag``; the ``paper`` preset): λ = softplus(ρ), and
  after every agent step one plain SGD step (no momentum, no Adam) on the loss
      L(ρ) = softplus(ρ) / sg[softplus(ρ)] · (D/T − c_t),
  whose gradient is σ(ρ) / softplus(ρ) · (D/T − c_t) (sg: stop-gradient), clipped in norm at
  50 × ``agent.grad_clip_norm`` as Safe SLAC clips it. Since σ(ρ)/softplus(ρ) ≈ 1/λ for λ ≳ 1 and
  ≈ 1 for λ ≪ 1, this is nearly a step on log λ when λ is large and on λ when it is small.
- ``episode``: projected dual ascent once per episode, λ ← max(0, λ + lr (C − D)), with C the
  episode's cost: the rule every ``cpu-small`` result was measured with (docs/results.md; the
  ``step`` rule has not been tried at that preset's sizes).
- ``pid``: the PID Lagrangian of Stooke, Achiam & Abbeel (2020, Algorithm 2), once per episode:
  e = C − D,  I ← max(0, I + e),  ∂ = max(0, C − C_prev),  λ = max(0, K_p e + K_i I + K_d ∂).
  The buffer ``integral`` holds K_i I (the same, as K_i ≥ 0), started at the initial λ so that it
  starts where the other rules do; the first episode has no derivative term (Algorithm 2's
  C_prev = 0 would kick λ up by K_d C).

The buffer ``previous_cost`` is the last policy episode's cost (every rule keeps it; pid's
derivative and a source-training method's gate, e.g. an adversary's, read it); NaN until the
first episode the policy acted in has ended.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from slac.config import LAGRANGE_RULES, AgentConfig
from slac.errors import unknown


def inverse_softplus(y: float) -> float:
    """ρ with softplus(ρ) = y > 0 (Safe SLAC starts its ρ at log(e^λ0 − 1))."""
    return y + math.log(-math.expm1(-y))


class Lagrangian(nn.Module):
    """λ ≥ 0 and the state of its update rule (buffers, so ``state_dict`` holds all of it)."""

    def __init__(self, cfg: AgentConfig, episode_budget: float, episode_steps: int):
        super().__init__()
        if cfg.lagrangian not in LAGRANGE_RULES:
            raise unknown("agent.lagrangian", cfg.lagrangian, LAGRANGE_RULES)
        self.rule, self.budget = cfg.lagrangian, float(episode_budget)
        self.step_budget = self.budget / episode_steps  # D/T
        self.lr, self.kp, self.ki, self.kd = cfg.lagrange_lr, cfg.pid_kp, cfg.pid_ki, cfg.pid_kd
        self.max_step_grad = 50.0 * cfg.grad_clip_norm  # Safe SLAC: clip_grad_norm_(ρ, 50 * grad_clip_norm)
        # every rule's state is kept (so a checkpoint loads whichever rule fine-tunes it):
        # λ; ρ with λ = softplus(ρ) (float32, as in Safe SLAC); the PID integral
        self.register_buffer("lam", torch.tensor(float(cfg.init_lagrange)))
        self.register_buffer("rho", torch.tensor(0.0))
        self._sync_rho()
        self.register_buffer("integral", torch.tensor(float(cfg.init_lagrange)))
        # the last policy episode's cost (every rule keeps it; pid's derivative and the adversary's
        # gate read it); NaN: no policy episode has ended yet
        self.register_buffer("previous_cost", torch.tensor(float("nan")))

    def _sync_rho(self) -> None:
        """ρ for the current λ, after a rule other than ``step`` moved it (λ = 0 maps to softplus(ρ) ≈ 1e-8)."""
        self.rho.fill_(inverse_softplus(max(self.value, 1e-8)))

    @property
    def value(self) -> float:
        return float(self.lam)

    def observe_step(self, cost: float) -> None:
        """An agent step's cost c_t (summed over the action repeat); only the ``step`` rule moves."""
        if self.rule != "step":
            return
        rho = self.rho
        grad = torch.sigmoid(rho) / F.softplus(rho) * (self.step_budget - float(cost))  # dL/dρ
        grad = grad.clamp(-self.max_step_grad, self.max_step_grad)  # the norm clip of one number
        rho.sub_(self.lr * grad)
        self.lam.copy_(F.softplus(rho))

    def observe_episode(self, episode_cost: float) -> dict[str, float]:
        """A policy episode's cost C; the ``episode`` and ``pid`` rules move, and every rule keeps C
        as ``previous_cost``. Returns metrics."""
        error = float(episode_cost) - self.budget
        if self.rule == "episode":
            self.lam.fill_(max(0.0, self.value + self.lr * error))
        elif self.rule == "pid":
            integral = max(0.0, float(self.integral) + self.ki * error)
            previous = float(self.previous_cost)
            derivative = 0.0 if math.isnan(previous) else max(0.0, float(episode_cost) - previous)
            self.lam.fill_(max(0.0, self.kp * error + integral + self.kd * derivative))
            self.integral.fill_(integral)
        self.previous_cost.fill_(float(episode_cost))
        if self.rule != "step":
            self._sync_rho()
        return {"train/lambda": self.value, "train/cost_minus_budget": error}
