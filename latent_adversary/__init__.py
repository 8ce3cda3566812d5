"""Image- and latent-space adversaries: attacks, test-time attacks and the adversarial-training hook.

- :mod:`latent_adversary.balls`: perturbation balls (pixel/latent L∞, L2) and PGD inside them
- :mod:`latent_adversary.objectives`: what attacks maximise (MC, MR, MAD)
- :mod:`latent_adversary.attacks`: batched image/latent attacks and online (test-time) attacks
- :mod:`latent_adversary.training`: the hook the trainer calls to train on perturbed latents
"""

from latent_adversary.attacks import (
    ATTACKS,
    ImageAttack,
    LatentAttack,
    OnlineAttack,
    attack_image_sequence,
    attack_latent,
    make_online_attack,
)
from latent_adversary.objectives import OBJECTIVES, objective_value
from latent_adversary.training import AdversarialTraining, AgentInputs

__all__ = ["ATTACKS", "OBJECTIVES", "AdversarialTraining", "AgentInputs", "ImageAttack", "LatentAttack",
           "OnlineAttack", "attack_image_sequence", "attack_latent", "make_online_attack", "objective_value"]
