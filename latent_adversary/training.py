"""Adversarial training in the source phase: a source-training method for the trainer.

:class:`AdversarialTraining` implements ``slac.agent_inputs.LearnerInputs``. Its ``agent_batch``
turns a clean batch of sequences into the latent transitions the actor and critics learn from (the
last k of each sequence, ``agent.sequence_transitions``). For
the first ``fraction`` of the sequences (batches are random, so this is a random share) the states
z_t of those transitions are replaced by attacked ones:
  - ``image``: PGD in the pixel L∞ ball on the frames, through encoder and filter
    (:func:`~latent_adversary.attacks.attack_image_sequence`);
  - ``random``: uniform pixel noise in the same ball;
  - ``latent``: PGD on the filtered (sampled) latent in the latent ball.
Perturbed and clean sequences are filtered with the *same* posterior noise draws, so z̃ − z is the
attack's doing alone and ε = 0 gives back the clean latents bit for bit.

Targets: with ``targets: clean`` the critics bootstrap from the clean next latent z_{t+1} (the agent
is fooled about where it is, not about where it goes next); with ``targets: perturbed`` z_{t+1} is
attacked too (jointly with z_t for image attacks) and the targets use z̃_{t+1}.
``train_on`` picks what the losses see:
  - ``perturbed``: every loss sees z̃ (the critics learn values of perturbed states as if true);
  - ``actor``: the critics learn on the clean z, and the actor picks its action from z̃ while the
    critics value it at z: it minimises α log π(ã|z̃) − Q(z, ã) + λ Qc(z, ã), ã ~ π(·|z̃), the
    quantity an MC/MR attack with ``critic_input: clean`` pushes the other way (the min-max of
    adversarial training against observation attacks, Liu et al., 2022);
  - ``clean``: the losses see z only, and z̃ enters the smoothness regulariser (SA-MDP style, Zhang
    et al., 2020). The regulariser (``smoothness_coef`` > 0), on the perturbed rows:
    actor:       coef · KL(π(· | z) || π(· | z̃))
    cost critic: coef · (Qc(z, a) − Qc(z̃, a))²
``model_images`` gives the world model perturbed images for its ELBO when ``perturb_model``
(attacked against the objective summed over every latent of the sequence).
ε follows the schedule: constant, or linear from 0 over ``ramp_steps`` agent steps counted from
the first update (the end of the initial collection).

The ``gate`` says when the schedule applies. ``always``: from the first update. ``under_budget``:
only while the clean policy meets the budget, measured: ε is 0 (no attack and no perturbed rows:
exactly the clean path, in ``agent_batch`` and ``model_images`` alike) before the first episode the
policy acted in has ended (the random initial collection does not count) and while the last such
episode cost more than the episode budget D; else ε follows the schedule. The cost is the
Lagrangian's ``previous_cost`` buffer (``slac/lagrangian.py``, kept under every λ rule and saved in
checkpoints, so a resumed run gates as the straight one) and D its ``budget``. The adversary so
starts once the policy has learned to keep the budget and backs off whenever it breaks it. A linear
ramp still counts from the first update, not from the gate's first opening (no state of its own to
checkpoint): a gate that opens after ``ramp_steps`` opens at the full ε. ``adversary/gate_open``
(1 open, 0 closed, per agent batch; the log averages it) is logged with this gate.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import torch
from torch.nn import functional as F

from latent_adversary.attacks import attack_image_sequence, attack_latent
from latent_adversary.config import AdversaryConfig, RobustConfig
from latent_adversary.objectives import objective_value
from slac.agent import AgentBatch
from slac.agent_inputs import CleanInputs, LearnerInputs, last_transitions
from slac.buffer import last_steps


def learner_inputs(cfg: RobustConfig, model, agent) -> LearnerInputs:
    """The trainer's inputs for a run: Safe SLAC's own without an adversary, else adversarial training
    (ε ramps from the first update, at the end of the initial collection)."""
    if cfg.adversary.kind == "none":
        return CleanInputs(cfg, model, agent)
    return AdversarialTraining(cfg.adversary, model, agent, start_step=cfg.train.initial_collection_steps)


def _fork_rng(device: torch.device):
    """Save and restore the RNG around a block, so the next block draws the same noise."""
    if device.type != "cuda":
        return torch.random.fork_rng(devices=[])
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.random.fork_rng(devices=[index])


def _latents(post: dict) -> torch.Tensor:
    return torch.cat([post["z1"], post["z2"]], dim=-1)


class AdversarialTraining:
    def __init__(self, cfg: AdversaryConfig, model, agent, start_step: int = 0):
        self.cfg, self.model, self.agent, self.start_step = cfg, model, agent, start_step

    @property
    def active(self) -> bool:
        return self.cfg.kind != "none"

    @property
    def gated(self) -> bool:
        """Whether a gate other than ``always`` decides when the attack runs."""
        return self.cfg.gate != "always"

    def gate_open(self) -> bool:
        """Whether the schedule's ε applies now: always, or (``under_budget``) while the last episode
        the policy acted in cost at most the episode budget (closed before any such episode ended)."""
        if not self.gated:
            return True
        lagrangian = self.agent.lagrangian
        cost = float(lagrangian.previous_cost)  # NaN: no policy episode yet
        return not math.isnan(cost) and cost <= lagrangian.budget

    def epsilon(self, step: int, gate_open: bool | None = None) -> float:
        """ε at an agent step: 0 while the gate is closed, else constant or a linear ramp from the
        first update. ``gate_open``: the gate's state if already read (one read per batch)."""
        if not (self.gate_open() if gate_open is None else gate_open):
            return 0.0
        if self.cfg.schedule == "constant":
            return self.cfg.epsilon
        return self.cfg.epsilon * min(max((step - self.start_step) / max(self.cfg.ramp_steps, 1), 0.0), 1.0)

    def _metrics(self, epsilon: float, gate_open: bool) -> dict[str, float]:
        """ε and, with a gate (not with ``always``: its metrics stay as they were), whether it was open."""
        if not self.active:
            return {}
        return {"adversary/epsilon": epsilon, **({"adversary/gate_open": float(gate_open)} if self.gated else {})}

    def _rows(self, batch_size: int, epsilon: float) -> int:
        return round(self.cfg.fraction * batch_size) if self.active and epsilon > 0 else 0

    def _attack_images(self, images, actions, epsilon: float, index: list[int]) -> torch.Tensor:
        c = self.cfg
        return attack_image_sequence(self.model, self.agent, images, actions, epsilon, c.objective, c.steps,
                                     c.step_size, index=index, critic_input=c.critic_input,
                                     random=c.kind == "random")

    # ---------------------------------------------------------------- agent
    def agent_batch(self, batch: dict[str, torch.Tensor], step: int,
                    transitions: int = 1) -> tuple[AgentBatch, dict[str, float]]:
        """Latent transitions for the agent from a batch's images (B, S+1, C, H, W), actions (B, S, A),
        rewards, costs and flags (B, S).

        The last ``transitions`` = k transitions of each sequence, (z_t, z_{t+1}) for t = S-k .. S-1,
        as rows (B·k, L), sequence-major (row b·k + j is sequence b's j-th); the perturbed share is
        the first ``fraction`` of the sequences, all k of their transitions.
        """
        images, actions, k = batch["images"], batch["action"], transitions
        gate_open = self.gate_open()
        epsilon = self.epsilon(step, gate_open)
        n = self._rows(images.shape[0], epsilon)
        sample = self.agent.cfg.latent_input == "sample"  # posterior draws, or the filter's means
        if n == 0:
            z = self.model.latents(images, actions, sample)  # (B, S+1, L), exactly the unattacked trainer
            return last_transitions(batch, z, k), self._metrics(epsilon, gate_open)
        c = self.cfg
        # the latents attacked: z_t of every transition learned from, and z_{t+1} too for perturbed targets
        index = list(range(-k - 1, 0 if c.targets == "perturbed" else -1))
        with torch.no_grad():
            features = self.model.encode(images)  # (B, S+1, F)
            if c.kind == "latent":
                post = self.model.filter_sequence(features, actions, sample)
                z_clean = _latents(post)
                start = time.perf_counter()  # the attack's extra time starts after the clean latents
                z_adv = z_clean.clone()
                rows = z_clean[:n, index].flatten(0, 1)  # (n * len(index), L)
                z_adv[:n, index] = attack_latent(
                    self.agent, rows, epsilon, c.objective, c.steps, c.step_size, self.model.cfg.z1_dim,
                    c.latent_part, c.latent_norm, post["z1_std"][:n, index].flatten(0, 1),
                    post["z2_std"][:n, index].flatten(0, 1), c.critic_input).view(n, len(index), -1)
            else:
                with _fork_rng(images.device):  # the clean and perturbed passes draw the same noise,
                    z_clean = _latents(self.model.filter_sequence(features, actions, sample))
                start = time.perf_counter()  # the attack's extra time starts after the clean latents
                with _fork_rng(images.device):  # the one model.latents would draw without an adversary
                    images_adv = self._attack_images(images[:n], actions[:n], epsilon, index)
                features = features.clone()
                features[:n] = self.model.encode(images_adv)
                z_adv = _latents(self.model.filter_sequence(features, actions, sample))  # same noise as z_clean
        clean, attacked = last_transitions(batch, z_clean, k), last_transitions(batch, z_adv, k)
        z, z_tilde = clean.z, attacked.z
        m = n * k  # perturbed rows
        with torch.no_grad():
            before = objective_value(c.objective, self.agent, z[:m], z[:m], c.critic_input)
            after = objective_value(c.objective, self.agent, z[:m], z_tilde[:m], c.critic_input)
            scalars = {"adversary/objective_clean": before.mean(),
                       "adversary/objective_perturbed": after.mean(),
                       "adversary/success": (after - before).mean(),
                       "adversary/latent_shift": (z_tilde[:m] - z[:m]).norm(dim=-1).mean()}
            values = torch.stack(list(scalars.values())).tolist()  # one device sync
        metrics = {**self._metrics(epsilon, gate_open), **dict(zip(scalars, values, strict=True))}
        learned = replace(clean, z=z_tilde if c.train_on == "perturbed" else z,
                          next_z=attacked.next_z if c.targets == "perturbed" else clean.next_z,
                          actor_z=z_tilde if c.train_on == "actor" else None)
        if c.smoothness_coef > 0:
            learned.extra_losses = self._smoothness(z[:m], z_tilde[:m], last_steps(actions[:n], k))
        # the extra time of this update's attack (and its bookkeeping) beyond the clean latents
        metrics["adversary/attack_ms"] = 1e3 * (time.perf_counter() - start)
        return learned, metrics

    def _smoothness(self, z: torch.Tensor, z_adv: torch.Tensor, action: torch.Tensor) -> dict:
        """Loss terms (called inside the agent update, so gradients reach the actor and Qc)."""
        coef, agent = self.cfg.smoothness_coef, self.agent

        def actor() -> torch.Tensor:
            return coef * objective_value("mad", agent, z, z_adv).mean()

        def cost_critic() -> torch.Tensor:
            return coef * F.mse_loss(agent.cost_critic(z_adv, action), agent.cost_critic(z, action))

        return {"actor": actor, "cost_critic": cost_critic}

    # ---------------------------------------------------------------- model
    def model_images(self, images: torch.Tensor, actions: torch.Tensor,
                     step: int) -> tuple[torch.Tensor, dict]:
        """Images for the world model's ELBO: perturbed for ``fraction`` of the batch if ``perturb_model``."""
        epsilon = self.epsilon(step)
        n = self._rows(images.shape[0], epsilon)
        if not self.cfg.perturb_model or n == 0:
            return images, {}
        start = time.perf_counter()
        images = images.clone()
        index = tuple(range(images.shape[1]))  # every frame: the model learns from all of them
        images[:n] = self._attack_images(images[:n], actions[:n], epsilon, index)
        return images, {"adversary/model_attack_ms": 1e3 * (time.perf_counter() - start)}
