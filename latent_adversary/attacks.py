"""Image-space and latent-space attacks on the agent's latent state, batched and online.

Image attacks move pixels inside an L∞ ball of radius ε in the [0, 1] scale (clipped to [0, 1])
and back-propagate the objective through the encoder and the filtering posterior (with every draw
replaced by its mean, so the objective is a deterministic function of the pixels). Latent attacks
move the filtered z = (z1, z2) inside a ball over ``part`` (z1, z2 or both) whose ``norm`` is
``std`` (L∞ in units of the std each latent was drawn with), ``linf`` or ``l2``. Random noise
(uniform in the same ball) is the baseline every gradient attack must beat. ε = 0 returns the
input unchanged.

Online attacks (:func:`make_online_attack`) act at every step of a rollout
(``LatentPolicy(..., attack=...)``): an image attack perturbs each incoming frame, given the
previous filter state, before the frame is folded in, so its effect is carried forward by the
filter; a latent attack perturbs the z the actor sees at each step and is not carried forward
(the filter keeps the clean state: the attacker tampers with the agent's read-out, not its memory).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from latent_adversary.balls import BoxBall, L2Ball, pgd
from latent_adversary.config import LATENT_NORMS, LATENT_PARTS, OBJECTIVES
from latent_adversary.objectives import objective_value
from slac.errors import InputError, unknown


def default_step_size(epsilon: float, steps: int, step_size: float | None = None) -> float:
    """2.5 ε / K unless given (Madry et al., 2018): enough to reach the ball's edge from anywhere."""
    return 2.5 * epsilon / steps if step_size is None else step_size


def image_ball(images: torch.Tensor, epsilon: float) -> BoxBall:
    """The pixel L∞ ball of radius ε around images in [0, 1], clipped to [0, 1]."""
    return BoxBall(images, epsilon, 1.0, low=0.0, high=1.0)


def latent_ball(z: torch.Tensor, epsilon: float, z1_dim: int, part: str = "both", norm: str = "std",
                z1_std: torch.Tensor | None = None, z2_std: torch.Tensor | None = None) -> BoxBall | L2Ball:
    """The ball around latents z (..., z1_dim + z2_dim) over ``part``, measured by ``norm``."""
    if part not in LATENT_PARTS:
        raise unknown("latent part", part, LATENT_PARTS)
    if norm not in LATENT_NORMS:
        raise unknown("latent norm", norm, LATENT_NORMS)
    mask = torch.zeros_like(z)
    if part in ("z1", "both"):
        mask[..., :z1_dim] = 1.0
    if part in ("z2", "both"):
        mask[..., z1_dim:] = 1.0
    if norm == "l2":
        return L2Ball(z, epsilon, mask)
    if norm == "std":
        if z1_std is None or z2_std is None:
            raise InputError("latent_norm 'std' needs the posterior stds of z1 and z2")
        mask = mask * torch.cat([z1_std, z2_std], dim=-1).detach()
    return BoxBall(z, epsilon, mask)


def attack_latent(agent, z: torch.Tensor, epsilon: float, objective: str, steps: int,
                  step_size: float | None = None, z1_dim: int = 0, part: str = "both", norm: str = "std",
                  z1_std: torch.Tensor | None = None, z2_std: torch.Tensor | None = None,
                  critic_input: str = "clean", random: bool = False) -> torch.Tensor:
    """z̃ (N, L) maximising ``objective`` inside the latent ball around z (N, L); ``random``: uniform."""
    ball = latent_ball(z, epsilon, z1_dim, part, norm, z1_std, z2_std)
    if epsilon == 0:
        return z.detach().clone()
    if random:
        return ball.random()
    z = z.detach()
    return pgd(ball, lambda z_adv: objective_value(objective, agent, z, z_adv, critic_input), steps,
               default_step_size(epsilon, steps, step_size), random_start=objective == "mad")


def _sequence_latents(model, images: torch.Tensor, actions: torch.Tensor, index: list[int]) -> torch.Tensor:
    """Mean latents z_t at the given time indices: (N, len(index), L), differentiable in the images."""
    post = model.filter_sequence(model.encode(images), actions, sample=False)
    return torch.cat([post["z1"], post["z2"]], dim=-1)[:, index]


def attack_image_sequence(model, agent, images: torch.Tensor, actions: torch.Tensor, epsilon: float,
                          objective: str, steps: int, step_size: float | None = None,
                          index: Sequence[int] = (-2,), critic_input: str = "clean",
                          random: bool = False) -> torch.Tensor:
    """Perturbed sequences (N, S+1, C, H, W) in the pixel ball, maximising the objective summed over
    the filtered latents z_t at ``index`` (by default z_{S-1}, the state the agent learns from).

    Frames after the last attacked index cannot move those latents and are returned clean (they
    are not even encoded). ``random`` draws uniform noise in the ball instead.
    """
    if objective not in OBJECTIVES:
        raise unknown("attack objective", objective, OBJECTIVES)
    n_frames = images.shape[1]
    index = sorted({t % n_frames for t in index})
    last = index[-1] + 1  # frames 0..last-1 shape the attacked latents
    head, tail = images[:, :last], images[:, last:]
    ball = image_ball(head, epsilon)
    if epsilon == 0:
        return images.detach().clone()
    if random:
        return torch.cat([ball.random(), tail], dim=1)
    acts = actions[:, :last - 1]
    random_start = objective == "mad"  # KL has zero gradient at z̃ = z
    clean: dict[str, torch.Tensor] = {}
    if random_start:
        with torch.no_grad():
            clean["z"] = _sequence_latents(model, head, acts, index).flatten(0, 1)

    def value(x: torch.Tensor) -> torch.Tensor:
        z_adv = _sequence_latents(model, x, acts, index).flatten(0, 1)
        # without a random start the first step is taken at the clean frames: its pass gives the clean z
        z = clean.setdefault("z", z_adv.detach())
        return objective_value(objective, agent, z, z_adv, critic_input)

    head_adv = pgd(ball, value, steps, default_step_size(epsilon, steps, step_size), random_start)
    return torch.cat([head_adv, tail], dim=1)


# ----------------------------------------------------------------------------- online attacks
class OnlineAttack:
    """A test-time attack applied at every rollout step; the base class changes nothing.

    ``image(state, image, action)`` returns the frame the filter folds in (``state`` and ``action``
    are None at an episode's first frame); ``latent(state)`` returns the z the actor sees.
    ``stats()`` reports how much the attack moved its objective on average so far.
    """

    name = "none"

    def __init__(self, epsilon: float, steps: int, model, agent, objective: str = "mc",
                 step_size: float | None = None, critic_input: str = "clean"):
        if epsilon < 0:
            raise InputError(f"attack epsilon must be >= 0, got {epsilon}")
        if steps < 1:
            raise InputError(f"attack steps must be >= 1, got {steps}")
        self.epsilon, self.steps, self.model, self.agent = float(epsilon), int(steps), model, agent
        self.objective, self.step_size, self.critic_input = objective, step_size, critic_input
        self._moved, self._count = 0.0, 0

    def image(self, state: dict | None, image: torch.Tensor, action: torch.Tensor | None) -> torch.Tensor:
        return image

    def latent(self, state: dict) -> torch.Tensor:
        return state["z"]

    def _record(self, z: torch.Tensor, z_adv: torch.Tensor) -> None:
        with torch.no_grad():
            moved = objective_value(self.objective, self.agent, z, z_adv, self.critic_input) - \
                objective_value(self.objective, self.agent, z, z, self.critic_input)
        self._moved += float(moved.sum())
        self._count += moved.numel()

    def stats(self) -> dict[str, float]:
        return {"attack/epsilon": self.epsilon, "attack/steps": float(self.steps),
                "attack/objective_moved": self._moved / max(self._count, 1)}


class ImageAttack(OnlineAttack):
    """Perturb each incoming frame (pixel L∞ ball) against the latent it is filtered into."""

    def __init__(self, *args, random: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.random = random
        self.name = "random" if random else f"image-{self.objective}"

    def _filter(self, state: dict | None, image: torch.Tensor, action: torch.Tensor | None) -> torch.Tensor:
        if state is None:  # q(z1_0 | x_0), p(z2_0 | z1_0)
            return self.model.init_filter(image, sample=False)["z"]
        return self.model.filter_step(state, image, action, sample=False)["z"]  # q(z1_t | x_t, z2_{t-1}, a)

    def image(self, state, image, action):
        ball = image_ball(image, self.epsilon)
        if self.epsilon == 0:
            return image
        with torch.no_grad():
            z = self._filter(state, image, action)
        if self.random:
            image_adv = ball.random()
        else:
            def value(x: torch.Tensor) -> torch.Tensor:
                return objective_value(self.objective, self.agent, z, self._filter(state, x, action),
                                       self.critic_input)

            step_size = default_step_size(self.epsilon, self.steps, self.step_size)
            image_adv = pgd(ball, value, self.steps, step_size, random_start=self.objective == "mad")
        with torch.no_grad():
            self._record(z, self._filter(state, image_adv, action))
        return image_adv


class LatentAttack(OnlineAttack):
    """Perturb the filtered z the actor sees (not carried forward by the filter)."""

    def __init__(self, *args, part: str = "both", norm: str = "std", **kwargs):
        super().__init__(*args, **kwargs)
        self.part, self.norm = part, norm
        self.name = f"latent-{self.objective}"

    def latent(self, state):
        z = state["z"]
        z_adv = attack_latent(self.agent, z, self.epsilon, self.objective, self.steps, self.step_size,
                              z1_dim=state["z1"].shape[-1], part=self.part, norm=self.norm,
                              z1_std=state.get("z1_std"), z2_std=state.get("z2_std"),
                              critic_input=self.critic_input)
        self._record(z, z_adv)
        return z_adv


ATTACKS = ("random", "image-mc", "image-mr", "image-mad", "latent-mc", "latent-mr", "latent-mad")


def make_online_attack(name: str, epsilon: float, steps: int, model, agent, step_size: float | None = None,
                       critic_input: str = "clean", latent_part: str = "both",
                       latent_norm: str = "std") -> OnlineAttack:
    """A test-time attack by name (``ATTACKS``); ``random`` is uniform pixel noise in the ε ball."""
    if name not in ATTACKS:
        raise unknown("attack", name, ATTACKS)
    common = {"step_size": step_size, "critic_input": critic_input}
    if name == "random":
        return ImageAttack(epsilon, steps, model, agent, random=True, **common)
    space, objective = name.split("-")
    if space == "image":
        return ImageAttack(epsilon, steps, model, agent, objective=objective, **common)
    return LatentAttack(epsilon, steps, model, agent, objective=objective, part=latent_part, norm=latent_norm,
                        **common)
