"""Image- and latent-space adversaries: attacks, test-time attacks and the adversarial-training hook.

- :mod:`latent_adversary.balls`: perturbation balls (pixel/latent L∞, L2) and PGD inside them
- :mod:`latent_adversary.objectives`: what attacks maximise (MC, MR, MAD)
- :mod:`latent_adversary.attacks`: batched image/latent attacks and online (test-time) attacks
- :mod:`latent_adversary.training`: adversarial training, the trainer's inputs on perturbed latents
- :mod:`latent_adversary.config`: the ``adversary`` config section and the run config that carries it
- :mod:`latent_adversary.run`: the entry points' wiring of the core with the adversary
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
from latent_adversary.config import OBJECTIVES, AdversaryConfig, RobustConfig
from latent_adversary.objectives import objective_value
from latent_adversary.training import AdversarialTraining, learner_inputs

__all__ = ["ATTACKS", "OBJECTIVES", "AdversarialTraining", "AdversaryConfig", "ImageAttack", "LatentAttack",
           "OnlineAttack", "RobustConfig", "attack_image_sequence", "attack_latent", "learner_inputs",
           "make_online_attack", "objective_value"]
