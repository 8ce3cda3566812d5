"""Safe SLAC: a latent variable model learned from pixels (``latent``) and a SAC-Lagrangian agent on
its latent state (``agent``, ``lagrangian``), with the replay buffer, training loop, checkpoints,
configuration and evaluation around them. Imports nothing at package level, so ``slac.errors``
is cheap to import from anywhere."""
