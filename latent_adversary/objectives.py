"""What an attack maximises, per row: functions of the clean latent z and the perturbed one z̃.

With π(z) = tanh(mean of the actor at z), the deterministic action (Liu et al., ICLR 2023, §4):
    mc   (maximum cost):           Qc(z_c, π(z̃))
    mr   (maximum reward loss):   −min(Q1, Q2)(z_c, π(z̃))
    mad  (maximum action deviation): KL(π(· | z) || π(· | z̃))  (pre-tanh Gaussians; tanh is a
         bijection, so the squashed distributions have the same KL)
``critic_input`` picks z_c: ``clean`` evaluates the critic at the true state z and the action
the perturbed observation leads to (Liu et al.'s attacker: what the agent will really pay);
``perturbed`` evaluates Q(z̃, π(z̃)) (what the agent believes it will pay).
"""

from __future__ import annotations

import torch

from latent_adversary.config import OBJECTIVES
from slac.errors import unknown

CRITIC_INPUTS = ("clean", "perturbed")


def objective_value(name: str, agent, z: torch.Tensor, z_adv: torch.Tensor,
                    critic_input: str = "clean") -> torch.Tensor:
    """Per-row objective (N,) for clean latents z (N, L) and perturbed ones z_adv (N, L)."""
    if name not in OBJECTIVES:
        raise unknown("attack objective", name, OBJECTIVES)
    if critic_input not in CRITIC_INPUTS:
        raise unknown("critic input", critic_input, CRITIC_INPUTS)
    if name == "mad":
        mean, std = agent.actor.distribution(z)
        mean_adv, std_adv = agent.actor.distribution(z_adv)
        var_ratio = (std / std_adv) ** 2  # KL(N(mean, std^2) || N(mean_adv, std_adv^2)), per dimension
        kl = 0.5 * (var_ratio + ((mean - mean_adv) / std_adv) ** 2 - 1 - var_ratio.log())
        return kl.sum(-1)
    z_critic = z if critic_input == "clean" else z_adv
    action = agent.actor(z_adv)
    if name == "mc":
        return agent.cost_critic(z_critic, action)
    return -torch.min(*agent.critic(z_critic, action))
