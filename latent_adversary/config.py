"""The adversary's configuration: its section of the run config, and the config that carries it.

:class:`RobustConfig` is ``slac.config.Config`` plus an ``adversary`` section; the entry points
(``latent_adversary.run``) resolve presets, files and ``--set`` overrides into it, so
``--set adversary.epsilon=0.5`` works like any core key, and the core never sees the section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from slac.config import Config, check_fields
from slac.errors import InputError

# the valid values of the adversary's choice fields, declared once (attacks.py and training.py import them)
KINDS = ("none", "random", "image", "latent")
PIXEL_KINDS = ("random", "image")  # kinds whose epsilon is in pixel units, [0, 1]
OBJECTIVES = ("mc", "mr", "mad")
SCHEDULES = ("constant", "linear")
GATES = ("always", "under_budget")
LATENT_PARTS = ("z1", "z2", "both")
LATENT_NORMS = ("std", "linf", "l2")
TARGETS = ("clean", "perturbed")
TRAIN_ON = ("perturbed", "actor", "clean")
CRITIC_INPUTS = ("clean", "perturbed")


@dataclass
class AdversaryConfig:
    """Adversarial perturbation of what the agent learns from (source phase)."""

    # none | random (uniform pixel noise) | image (PGD on pixels) | latent (PGD on the filtered latent)
    kind: str = "none"
    # mc (max cost critic) | mr (min reward critic) | mad (max action deviation)
    objective: str = "mc"
    # ball radius: in [0, 1] for image and random (pixels live in [0, 1]); any finite value >= 0 for
    # latent (posterior-std or norm units)
    epsilon: float = 0.0
    # projected gradient steps (1 = FGSM)
    steps: int = 3
    # step size per gradient step (>= 0); null means 2.5 * epsilon / steps
    step_size: float | None = None
    # constant | linear (ramp epsilon from 0 over ramp_steps)
    schedule: str = "constant"
    # agent steps of the linear ramp, counted from the first update (end of initial collection)
    ramp_steps: int = 100_000
    # when the attack runs: always (from the first update, as the schedule says) | under_budget (only
    # while the last episode the policy acted in cost at most the episode budget: epsilon is 0, no
    # attack, before the first such episode and after any over the budget; the ramp still counts from
    # the first update)
    gate: str = "always"
    # share of each agent batch that is perturbed
    fraction: float = 0.5
    # latent attacks: which latent is perturbed: z1 | z2 | both
    latent_part: str = "both"
    # latent attacks: ball norm: std (L-inf in posterior-std units) | linf | l2
    latent_norm: str = "std"
    # critic targets from clean or perturbed next latents
    targets: str = "clean"
    # what the losses see on the perturbed share: perturbed (actor and critics), actor (the actor acts on
    # z~ and the critics, trained on clean z, value its action at z: Liu et al.'s adversarial training),
    # or clean (z~ only in the smoothness regulariser)
    train_on: str = "perturbed"
    # attack objectives evaluate the critic at the clean z (Liu et al.: Q(z, pi(z~))) or the perturbed one
    critic_input: str = "clean"
    # also train the world model's ELBO on perturbed images
    perturb_model: bool = False
    # weight of the smoothness regulariser (change of pi and Qc, clean vs perturbed); 0 = off
    smoothness_coef: float = 0.0


@dataclass
class RobustConfig(Config):
    """The run config with the source phase's adversary."""

    adversary: AdversaryConfig = field(default_factory=AdversaryConfig)

    # a target phase starts without an adversary (or the core's source-only sections)
    SOURCE_ONLY_SECTIONS: ClassVar[tuple[str, ...]] = (*Config.SOURCE_ONLY_SECTIONS, "adversary")

    def check(self) -> None:
        super().check()
        a = self.adversary
        check_fields(self, choices={"adversary.kind": KINDS, "adversary.objective": OBJECTIVES,
                                    "adversary.schedule": SCHEDULES, "adversary.gate": GATES,
                                    "adversary.latent_part": LATENT_PARTS,
                                    "adversary.latent_norm": LATENT_NORMS, "adversary.targets": TARGETS,
                                    "adversary.train_on": TRAIN_ON, "adversary.critic_input": CRITIC_INPUTS},
                     nonnegative=["adversary.epsilon", "adversary.smoothness_coef", "adversary.step_size",
                                  "adversary.ramp_steps"], unit=["adversary.fraction"])
        if a.steps < 1:
            raise InputError(f"config key 'adversary.steps' must be >= 1, got {a.steps}")
        if a.kind in PIXEL_KINDS and a.epsilon > 1:
            raise InputError(f"config key 'adversary.epsilon' is {a.epsilon} but kind {a.kind!r} perturbs pixels, "
                             "which live in [0, 1]: epsilon must be in [0, 1] (a latent adversary's is in "
                             "posterior stds: any value >= 0)")
        if a.perturb_model and a.kind not in ("image", "random"):
            raise InputError("config key 'adversary.perturb_model' needs adversary.kind image or random "
                             f"(perturbed images), got kind {a.kind!r}")
        if a.train_on == "clean" and a.kind != "none" and a.smoothness_coef == 0:
            raise InputError("config key 'adversary.train_on' is 'clean': the perturbed latents are then used only "
                             "by the smoothness regulariser; set adversary.smoothness_coef > 0")
        if a.train_on == "actor" and a.targets != "clean":
            raise InputError("config key 'adversary.train_on' is 'actor': the critics learn the values of clean "
                             "latents, so adversary.targets must be 'clean'")
        if self.train.split_agent_batch and a.smoothness_coef > 0:
            raise InputError("config key 'train.split_agent_batch' cannot split the smoothness regulariser's "
                             "penalties (adversary.smoothness_coef > 0); set one of them off")
