"""The entry points' wiring: the core (``slac``) with the adversary, for ``train.py`` and ``evaluate.py``.

Runs resolve into :class:`~latent_adversary.config.RobustConfig` (the core config plus the
``adversary`` section), train with :func:`~latent_adversary.training.learner_inputs` (Safe SLAC's
own inputs without an adversary), and evaluate with test-time attacks available.
"""

from __future__ import annotations

from pathlib import Path

from latent_adversary.attacks import make_online_attack
from latent_adversary.config import RobustConfig
from latent_adversary.training import learner_inputs
from slac import run
from slac.evaluation import AttackSpec, Evaluator
from slac.trainer import Trainer


def make_trainer(request: run.RunRequest, progress: bool = True) -> Trainer:
    return run.make_trainer(request, progress, config_cls=RobustConfig, inputs=learner_inputs)


def online_attack(spec: AttackSpec, model, agent):
    """The test-time attack of an ``AttackSpec`` (``latent_adversary.attacks.ATTACKS``)."""
    return make_online_attack(spec.name, spec.epsilon, spec.steps, model, agent)


def make_evaluator(checkpoint: str | Path, env: str | None = None, device: str = "auto") -> Evaluator:
    return Evaluator(checkpoint, env, device, config_cls=RobustConfig, attacks=online_attack)
