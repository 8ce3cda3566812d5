"""What the learners see of a sampled batch: the interface a source-training method implements.

At every update the trainer samples sequences from the replay buffer and asks its *inputs* object
  - ``model_images(images, actions, step)``: the images the world model's ELBO learns from, and
  - ``agent_batch(batch, step, transitions)``: the latent transitions (:class:`~slac.agent.AgentBatch`)
    the actor and critics learn from,
each with a dict of metrics. :class:`CleanInputs` is Safe SLAC's own: the images as sampled, and the
filtered latents of the last k transitions of each sequence. A source-training method (e.g.
adversarial training) implements the same two methods in its own package; the entry points
hand the trainer a factory ``(config, model, agent) -> inputs`` for it, so ``slac`` never imports it.
"""

from __future__ import annotations

from typing import Protocol

import torch

from slac.agent import AgentBatch, SafeSACAgent
from slac.buffer import last_steps
from slac.config import Config
from slac.latent import LatentModel


class LearnerInputs(Protocol):
    def model_images(self, images: torch.Tensor, actions: torch.Tensor,
                     step: int) -> tuple[torch.Tensor, dict[str, float]]: ...

    def agent_batch(self, batch: dict[str, torch.Tensor], step: int,
                    transitions: int) -> tuple[AgentBatch, dict[str, float]]: ...


def last_transitions(batch: dict[str, torch.Tensor], z: torch.Tensor, k: int) -> AgentBatch:
    """The last k transitions (z_t, a_t, r_t, c_t, z_{t+1}), t = S-k .. S-1, of each sequence as rows
    (B·k, ...), sequence-major, from latents z (B, S+1, L) and the batch's (B, S, ...) fields."""
    return AgentBatch(z=last_steps(z[:, :-1], k), action=last_steps(batch["action"], k),
                      reward=last_steps(batch["reward"], k), cost=last_steps(batch["cost"], k),
                      next_z=last_steps(z, k), terminated=last_steps(batch["terminated"], k))


class CleanInputs:
    """Safe SLAC's inputs: sampled images for the model, their filtered latents for the agent."""

    def __init__(self, cfg: Config, model: LatentModel, agent: SafeSACAgent):
        self.model = model
        self.sample = cfg.agent.latent_input == "sample"  # posterior draws, or the filter's means

    def model_images(self, images, actions, step):
        return images, {}

    def agent_batch(self, batch, step, transitions):
        z = self.model.latents(batch["images"], batch["action"], self.sample)  # (B, S+1, L), no grad
        return last_transitions(batch, z, transitions), {}
