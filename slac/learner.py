"""The learner of a run: the latent model and agent built for an env, and the checks that a
checkpoint fits them (env, config and network structure), shared by training and evaluation."""

from __future__ import annotations

import numpy as np
import torch

from slac.agent import SafeSACAgent
from slac.checkpoint import architecture
from slac.config import DEVICES, Config
from slac.errors import InputError, unknown
from slac.latent import LatentModel

# fields of the model config that fix parameter shapes: a checkpoint must agree on all of them
MODEL_SHAPE_KEYS = ("feature_dim", "z1_dim", "z2_dim", "hidden_units", "decoder_width")
AGENT_SHAPE_KEYS = ("hidden_units",)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but CUDA is not available here; "
                         "use --device cpu or auto")
    if name not in DEVICES:
        raise unknown("device", name, DEVICES)
    return torch.device(name)


def env_spec(env) -> dict:
    """What the networks and the budget need to know of an env: shapes, action repeat, episode length."""
    u = env.unwrapped
    return {"obs_shape": list(env.observation_space.shape), "action_dim": int(env.action_space.shape[0]),
            "action_repeat": int(u.action_repeat), "episode_steps": int(u.max_episode_steps)}


def build_learner(cfg: Config, spec: dict, device: torch.device) -> tuple[LatentModel, SafeSACAgent]:
    model = LatentModel(cfg.model, spec["action_dim"], tuple(spec["obs_shape"])).to(device)
    agent = SafeSACAgent(cfg.agent, model.latent_dim, spec["action_dim"], spec["action_repeat"],
                         spec["episode_steps"]).to(device)
    return model, agent


def check_compatible(state: dict, cfg: Config, spec: dict, env_name: str) -> None:
    """Raise InputError, naming both sides, if a checkpoint does not fit this env or model config."""
    saved = state["env_spec"]
    for key, what in (("obs_shape", "observation shape"), ("action_dim", "action size")):
        if list(np.atleast_1d(saved[key])) != list(np.atleast_1d(spec[key])):
            raise InputError(f"checkpoint {state['path']!r} does not fit env {env_name!r}: its {what} is "
                             f"{saved[key]} but the env's is {spec[key]}")
    saved_cfg = state["config"]
    for section, keys in (("model", MODEL_SHAPE_KEYS), ("agent", AGENT_SHAPE_KEYS)):
        for key in keys:
            a, b = saved_cfg[section][key], getattr(getattr(cfg, section), key)
            if a != b:
                raise InputError(f"checkpoint {state['path']!r} has {section}.{key}={a} but the config asks "
                                 f"{section}.{key}={b}; drop the override or train a new source model")


def check_architecture(state: dict, model: LatentModel, agent: SafeSACAgent) -> None:
    saved = state.get("architecture")
    if saved is not None and saved != architecture(model, agent):
        raise InputError(f"checkpoint {state['path']!r} was written by networks of another structure "
                         f"(fingerprint {saved}, this code builds {architecture(model, agent)}): the code "
                         f"changed since (it was written by commit {state.get('code_version', 'unknown')}); "
                         "evaluate or resume it with that commit, or train again")


OPTIMIZER_ENTRIES = ("model_optimizer", "agent_optimizers")


def load_learner(state: dict, model: LatentModel, agent: SafeSACAgent, optimizers: bool = True) -> bool:
    """Load a checkpoint's networks into ``model`` and ``agent``, and with ``optimizers`` its optimiser
    states where it has them. An exported agent (``scripts/export_agent.py``) has none: its optimisers
    stay as built, fresh. Returns whether optimiser states were loaded."""
    check_architecture(state, model, agent)
    present = [key for key in OPTIMIZER_ENTRIES if key in state]
    if optimizers and len(present) == 1:
        raise InputError(f"checkpoint {state['path']!r} is damaged: it holds {present[0]} but not "
                         f"{next(k for k in OPTIMIZER_ENTRIES if k not in present)}")
    optimizers = optimizers and len(present) == len(OPTIMIZER_ENTRIES)
    try:
        model.load_state_dict(state["model"])
        agent.load_state_dict(state["agent"])
        if optimizers:
            model.optimizer.load_state_dict(state["model_optimizer"])
            for name, opt in agent.optimizers.items():
                opt.load_state_dict(state["agent_optimizers"][name])
    except (RuntimeError, KeyError, ValueError) as e:
        raise InputError(f"checkpoint {state['path']!r} does not fit this model: "
                         f"{str(e).splitlines()[0]}") from None
    return optimizers
