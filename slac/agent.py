"""The SAC-Lagrangian agent on the latent state z = (z1, z2) (Safe SLAC, Hogewind et al., 2023).

Twin reward critics Q1, Q2 and one cost critic Qc, each with a Polyak-averaged target; a
tanh-Gaussian actor π(a | z); an entropy weight α tuned to a target entropy (Haarnoja et al.,
2018); and a Lagrange multiplier λ on the episode cost budget (``slac/lagrangian.py``).
    Q target:  r + γ (1 − term) [min_i Q̄_i(z', a') − α log π(a' | z')],   a' ~ π(· | z')
    Qc target: c + γ_c (1 − term) Q̄c(z', a')
    actor:     E[α log π(a | z) − min_i Q_i(z, a) + λ Qc(z, a)]
    α:         −log α · (H_target − H(π))
A time-limit truncation is not a termination: it bootstraps (only ``terminated`` masks).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import torch
from torch import nn
from torch.nn import functional as F

from slac.config import AgentConfig
from slac.lagrangian import Lagrangian
from slac.networks import mlp, tanh_gaussian_sample

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # clamp of the actor's log std (SLAC)


def _leaky_relu():
    return nn.LeakyReLU(0.2)  # the actor's and critics' hidden activation in Safe SLAC (sac.py)


class TanhGaussianActor(nn.Module):
    """π(a | z): a Gaussian squashed by tanh into [-1, 1]."""

    def __init__(self, latent_dim: int, action_dim: int, hidden: list[int]):
        super().__init__()
        self.net = mlp(latent_dim, 2 * action_dim, hidden, activation=_leaky_relu)

    def distribution(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the pre-tanh Gaussian."""
        mean, log_std = self.net(z).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def sample(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised a ~ π(· | z), (B, A), and log π(a | z), (B,), with the tanh change of variables."""
        return tanh_gaussian_sample(*self.distribution(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The deterministic action tanh(mean)."""
        return torch.tanh(self.distribution(z)[0])


class QNetwork(nn.Module):
    """Q(z, a) -> (B,).

    ``init_value`` (the cost critic) makes the network start near that constant: the output layer
    gets tiny weights and that bias (Safe SLAC sets the bias only), and, as Safe SLAC's cost critic,
    a LeakyReLU(0.01) on the output, so that it is hard for Qc of non-negative costs to go negative.
    """

    def __init__(self, latent_dim: int, action_dim: int, hidden: list[int], init_value: float | None = None):
        super().__init__()
        self.net = mlp(latent_dim + action_dim, 1, hidden, activation=_leaky_relu)
        if init_value is not None:
            last = self.net[-1]
            nn.init.uniform_(last.weight, -1e-3, 1e-3)
            nn.init.constant_(last.bias, init_value)
            self.net.append(nn.LeakyReLU(0.01))

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, action], dim=-1)).squeeze(-1)


class TwinQ(nn.Module):
    def __init__(self, latent_dim: int, action_dim: int, hidden: list[int]):
        super().__init__()
        self.q1 = QNetwork(latent_dim, action_dim, hidden)
        self.q2 = QNetwork(latent_dim, action_dim, hidden)

    def forward(self, z, action) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(z, action), self.q2(z, action)


def episode_budget(budget_per_1000: float, episode_agent_steps: int, action_repeat: int) -> float:
    """The cost budget D of one episode: d per 1000 simulator steps scaled to the episode's length,
    D = d · T · action_repeat / 1000 for T agent steps (25 for Safety Gym's 1000-step episodes)."""
    return budget_per_1000 * episode_agent_steps * action_repeat / 1000.0


def discounted_step_budget(episode_budget_: float, episode_agent_steps: int, gamma_c: float) -> float:
    """Qc's value when the budget is spent evenly, D/T per agent step: Σ_{t<T} γ_c^t D/T
    = D/T · (1 − γ_c^T) / (1 − γ_c). Safe SLAC (``slac/algo.py``) computes the same with
    T = 1000 / action_repeat and D = 25, and starts its cost critic's output bias there."""
    T = episode_agent_steps
    return episode_budget_ / T * (1 - gamma_c**T) / (1 - gamma_c)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ̄ ← (1 − τ) θ̄ + τ θ."""
    t_params, s_params = list(target.parameters()), list(source.parameters())
    torch._foreach_lerp_(t_params, s_params, tau)


@dataclass
class AgentBatch:
    """The latent transitions one agent update learns from, one row each: (B, L) latents, (B, A)
    actions, (B,) reward, cost and termination flag.

    ``actor_z`` is what the actor picks its action from when that is not ``z`` (the critics value
    the action at ``z`` all the same); ``extra_losses`` maps 'actor' and/or 'cost_critic' to a
    function returning a scalar added to that network's loss inside the update (so its gradient
    reaches the network). Both default to nothing: the plain SAC-Lagrangian update.
    """

    z: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    cost: torch.Tensor
    next_z: torch.Tensor
    terminated: torch.Tensor
    actor_z: torch.Tensor | None = None
    extra_losses: dict[str, Callable[[], torch.Tensor]] = field(default_factory=dict)

    def rows(self, index: torch.Tensor) -> AgentBatch:
        """The batch of rows ``index`` (extra losses cannot be split: they see the whole batch)."""
        if self.extra_losses:
            raise ValueError("a batch with extra losses cannot be split into rows")
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})


class SafeSACAgent(nn.Module):
    def __init__(self, cfg: AgentConfig, latent_dim: int, action_dim: int, action_repeat: int,
                 episode_agent_steps: int):
        super().__init__()
        self.cfg = cfg
        hidden = list(cfg.hidden_units)
        self.budget_per_episode = episode_budget(cfg.budget, episode_agent_steps, action_repeat)
        self.qc_init = discounted_step_budget(self.budget_per_episode, episode_agent_steps, cfg.gamma_c)
        self.target_entropy = -float(action_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.actor = TanhGaussianActor(latent_dim, action_dim, hidden)
        self.critic = TwinQ(latent_dim, action_dim, hidden)
        self.cost_critic = QNetwork(latent_dim, action_dim, hidden, init_value=self.qc_init)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.cost_critic_target = copy.deepcopy(self.cost_critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.init_alpha)))
        self.lagrangian = Lagrangian(cfg, self.budget_per_episode, episode_agent_steps)
        adam = lambda params: torch.optim.Adam(params, lr=cfg.lr, foreach=True)  # noqa: E731
        self.optimizers = {"actor": adam(self.actor.parameters()), "critic": adam(self.critic.parameters()),
                           "cost_critic": adam(self.cost_critic.parameters()),
                           "alpha": adam([self.log_alpha])}

    @property
    def cost_tau(self) -> float:
        return self.cfg.tau if self.cfg.cost_tau is None else self.cfg.cost_tau

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    @torch.no_grad()
    def act(self, z: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(z) if deterministic else self.actor.sample(z)[0]

    def critic_targets(self, reward, cost, next_z, terminated) -> tuple[torch.Tensor, torch.Tensor]:
        """Bellman targets for Q and Qc, (B,) each, no gradient; one a' ~ π(· | z') serves both."""
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_z)
            q1, q2 = self.critic_target(next_z, next_action)
            soft_value = torch.min(q1, q2) - self.alpha * next_log_prob  # V̄(z') = min_i Q̄_i − α log π
            bootstrap = 1.0 - terminated  # a termination ends the return; a truncation is never passed here
            target_q = reward + self.cfg.gamma * bootstrap * soft_value
            target_qc = cost + self.cfg.gamma_c * bootstrap * self.cost_critic_target(next_z, next_action)
        return target_q, target_qc

    def _step(self, name: str, loss: torch.Tensor, params, clip: float) -> torch.Tensor:
        """Backward, clip the global gradient norm at ``clip``, one step of optimiser ``name``;
        returns the norm before clipping (a tensor, so that no device sync happens here)."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(params, clip, foreach=True)
        opt.step()
        return norm

    def update(self, batch: AgentBatch) -> dict[str, float]:
        """One SAC-Lagrangian step on a batch of latent transitions (critics, cost critic, actor, α)."""
        clip = self.cfg.grad_clip_norm
        extra: dict[str, float] = {}

        def with_extra(name: str, loss: torch.Tensor) -> torch.Tensor:
            if name not in batch.extra_losses:
                return loss
            term = batch.extra_losses[name]()
            extra[f"loss/{name}_penalty"] = term.item()
            return loss + term

        z, action = batch.z, batch.action
        target_q, target_qc = self.critic_targets(batch.reward, batch.cost, batch.next_z, batch.terminated)  # (B,) each
        q1, q2 = self.critic(z, action)
        loss_critic = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        norm_critic = self._step("critic", loss_critic, self.critic.parameters(), clip)
        qc = self.cost_critic(z, action)
        loss_cost_critic = F.mse_loss(qc, target_qc)
        norm_cost_critic = self._step("cost_critic", with_extra("cost_critic", loss_cost_critic),
                                      self.cost_critic.parameters(), clip)

        # actor: critics are held fixed (their parameters get no gradient from this loss)
        self.critic.requires_grad_(False)
        self.cost_critic.requires_grad_(False)
        new_action, log_prob = self.actor.sample(z if batch.actor_z is None else batch.actor_z)
        q_new = torch.min(*self.critic(z, new_action))
        qc_new = self.cost_critic(z, new_action)
        lam = self.lagrangian.lam  # λ ≥ 0, a buffer: no gradient reaches it from here
        loss_actor = (self.alpha * log_prob - q_new + lam * qc_new).mean()
        # Safe SLAC clips the actor at 2x
        norm_actor = self._step("actor", with_extra("actor", loss_actor), self.actor.parameters(), 2 * clip)
        self.critic.requires_grad_(True)
        self.cost_critic.requires_grad_(True)

        entropy = -log_prob.detach().mean()
        loss_alpha = -self.log_alpha * (self.target_entropy - entropy)
        self._step("alpha", loss_alpha, [self.log_alpha], clip)

        soft_update(self.critic_target, self.critic, self.cfg.tau)
        soft_update(self.cost_critic_target, self.cost_critic, self.cost_tau)
        scalars = {"loss/critic": loss_critic, "loss/cost_critic": loss_cost_critic, "loss/actor": loss_actor,
                   "loss/alpha": loss_alpha, "train/alpha": self.alpha, "train/lambda": lam,
                   "train/entropy": entropy, "train/q": q1.mean(), "train/qc": qc.mean(),
                   "loss/critic_grad_norm": norm_critic, "loss/cost_critic_grad_norm": norm_cost_critic,
                   "loss/actor_grad_norm": norm_actor}
        values = torch.stack([v.detach().float().reshape(()) for v in scalars.values()]).tolist()  # one sync
        return {**dict(zip(scalars, values, strict=True)), **extra}
