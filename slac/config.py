"""One typed configuration tree: defaults, named presets, YAML files and ``key=value`` overrides.

Defaults are Safe SLAC's published settings (Hogewind et al., ICLR 2023; the LAVA-LAB/safe-slac
``configuration.py``). Presets in ``configs/<name>.yaml`` override a subset. Every field has a
one-line docstring (the comment above it); unknown keys are an :class:`~slac.errors.InputError`.

Step counts are *agent steps* (one policy decision = ``action_repeat`` simulator steps).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, get_args, get_origin, get_type_hints

import yaml

from slac.errors import InputError

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"

# the valid values of the config's choice fields, declared once (the modules that act on them import these)
DEVICES = ("auto", "cpu", "cuda")
PHASES = ("source", "target")  # a run trains in the source task, or fine-tunes in the target task
LAGRANGE_RULES = ("step", "episode", "pid")
LATENT_INPUTS = ("sample", "mean")


@dataclass
class ModelConfig:
    """The latent variable model (Safe SLAC = SLAC + a cost head)."""

    # encoder output size per frame (Safe SLAC: 200)
    feature_dim: int = 200
    # size of the first latent level z1 (SLAC: 32)
    z1_dim: int = 32
    # size of the second latent level z2 (Safe SLAC: 200)
    z2_dim: int = 200
    # hidden layer sizes of every MLP inside the model
    hidden_units: list[int] = field(default_factory=lambda: [256, 256])
    # variance of the Gaussian image likelihood, pixels in [0, 1]: the decoder's std is its square root
    # (Safe SLAC's image_noise, 0.4)
    image_noise: float = 0.4
    # the cost head's loss: scale * BCE with positives (c_t > 0) weighted positive_weight (Safe SLAC:
    # -30 (100 y log p + (1 - y) log(1 - p)), y = sign(c_t))
    cost_loss_scale: float = 30.0
    cost_positive_weight: float = 100.0
    # number of transitions per training sequence S (each sample has S+1 frames)
    sequence_length: int = 10
    # sequences per model update
    batch_size: int = 32
    # Adam learning rate of the model
    lr: float = 1e-4
    # global gradient-norm clip for the model
    grad_clip_norm: float = 40.0
    # run encoder/decoder convolutions under bfloat16 autocast where the device has native bf16 (CPUs
    # with AVX512/AMX, GPUs: ~2x faster convolutions; weights, optimiser and losses stay float32);
    # elsewhere they run in float32 with a warning (emulated bf16 is ~10x slower on an AVX2-only CPU).
    # Off in Safe SLAC's settings.
    bf16_convs: bool = False


@dataclass
class AgentConfig:
    """The SAC-Lagrangian agent acting on the latent state (z1, z2)."""

    # hidden layer sizes of actor and critics
    hidden_units: list[int] = field(default_factory=lambda: [256, 256])
    # sequences per agent update; each gives its last `sequence_transitions` transitions
    batch_size: int = 64
    # transitions the agent learns from per sampled sequence, the last ones: 1 (SLAC and Safe SLAC: the
    # last transition only) up to model.sequence_length. Early ones start from latents filtered over
    # fewer frames (the first has seen a single image: no velocity)
    sequence_transitions: int = 1
    # Adam learning rate of actor, critics and alpha
    lr: float = 2e-4
    # reward discount
    gamma: float = 0.99
    # cost discount (Safe SLAC: 0.995)
    gamma_c: float = 0.995
    # soft target update coefficient
    tau: float = 5e-3
    # the cost critic's own soft target update coefficient; null means tau (Safe SLAC: one tau for all)
    cost_tau: float | None = None
    # initial entropy weight alpha (Safe SLAC: 4e-3)
    init_alpha: float = 4e-3
    # target entropy; null means -action_dim
    target_entropy: float | None = None
    # episode cost budget per 1000 simulator steps (Safety Gym convention: 25)
    budget: float = 25.0
    # how lambda moves (slac/lagrangian.py): 'step' (Safe SLAC: SGD on softplus-parameterised lambda
    # after every agent step), 'episode' (dual ascent once per episode) or 'pid' (Stooke et al., 2020)
    lagrangian: str = "step"
    # initial Lagrange multiplier (Safe SLAC: 0.02)
    init_lagrange: float = 0.02
    # learning rate of lambda's rule, 'step' and 'episode' (Safe SLAC: 2e-4, plain SGD)
    lagrange_lr: float = 2e-4
    # PID Lagrangian gains (used when lagrangian == 'pid')
    pid_kp: float = 0.05
    pid_ki: float = 0.005
    pid_kd: float = 0.1
    # what the actor and critics see (when learning and when acting): 'sample', a draw from the filtering
    # posterior (SLAC's critic input), or 'mean', the filter run on means (z1 its posterior mean, z2 the
    # mean of its transition given those): no sampling noise on top of what the images leave uncertain
    latent_input: str = "sample"
    # global gradient-norm clip for actor and critics
    grad_clip_norm: float = 40.0


@dataclass
class TrainConfig:
    """The training loop."""

    # total agent steps of this phase (Safe SLAC: 2e6 simulator steps = 1e6 at action repeat 2)
    steps: int = 1_000_000
    # agent steps of random-action collection before any update
    initial_collection_steps: int = 30_000
    # model-only updates after the initial collection (Safe SLAC: 30,000)
    initial_learning_steps: int = 30_000
    # replay buffer capacity in agent steps
    buffer_size: int = 200_000
    # model updates (each followed by agent_updates_per_model_update agent updates) per agent step
    updates_per_step: float = 1.0
    # agent updates after each model update (Safe SLAC: 1); more let the critics' values propagate
    # further per model update (docs/notebook.md, "The state agent")
    agent_updates_per_model_update: int = 1
    # the agent updates after a model update learn from disjoint random shares of one sampled and
    # filtered batch (false: Safe SLAC, each samples and filters its own); filtering is ~95 % of an
    # agent update's time at cpu-small's sizes (docs/notebook.md, "One filtered batch ...")
    split_agent_batch: bool = False
    # agent steps collected between bursts of updates (Safe SLAC: 100)
    update_every: int = 100
    # agent steps between evaluations (Safe SLAC: 25,000 simulator steps)
    eval_interval: int = 12_500
    # episodes per evaluation
    eval_episodes: int = 10
    # agent steps between metric logs
    log_interval: int = 1_000
    # agent steps between checkpoints (the latest is always overwritten; these are kept)
    checkpoint_interval: int = 50_000
    # agent steps between image reconstructions in TensorBoard; 0 = never
    image_log_interval: int = 25_000
    # torch threads (0 = torch default)
    threads: int = 0


@dataclass
class Config:
    """Everything a run needs; saved as YAML in the run directory and inside every checkpoint."""

    # env name accepted by envs.make (set from --env or --shift)
    env: str = ""
    # keyword overrides passed to envs.make (e.g. action_repeat, image_size)
    env_overrides: dict[str, Any] = field(default_factory=dict)
    # random seed for torch, numpy and the env
    seed: int = 0
    # auto | cpu | cuda
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # sections a target phase resets to their defaults rather than inherit from its source checkpoint
    # (a config that extends this one, e.g. with an adversary section, names its source-phase tools here)
    SOURCE_ONLY_SECTIONS: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Range, choice and consistency checks; raises InputError naming the key and what is valid."""
        check_fields(self, choices={"device": DEVICES, "agent.lagrangian": LAGRANGE_RULES,
                                    "agent.latent_input": LATENT_INPUTS},
                     positive=["model.feature_dim", "model.z1_dim", "model.z2_dim", "model.image_noise",
                               "model.sequence_length", "model.batch_size", "model.lr", "agent.batch_size",
                               "agent.lr", "train.steps", "train.buffer_size", "train.update_every",
                               "train.eval_episodes", "train.log_interval", "train.checkpoint_interval",
                               "train.eval_interval", "train.agent_updates_per_model_update"],
                     nonnegative=["train.initial_collection_steps", "train.initial_learning_steps",
                                  "train.updates_per_step", "agent.budget", "agent.init_lagrange",
                                  "agent.lagrange_lr", "agent.init_alpha", "model.cost_loss_scale",
                                  "model.cost_positive_weight", "train.image_log_interval", "train.threads"],
                     unit=["agent.gamma", "agent.gamma_c", "agent.tau", "agent.cost_tau"])
        if not 1 <= self.agent.sequence_transitions <= self.model.sequence_length:
            raise InputError(f"config key 'agent.sequence_transitions' must be in [1, model.sequence_length = "
                             f"{self.model.sequence_length}], got {self.agent.sequence_transitions}")
        rows = self.agent.batch_size * self.agent.sequence_transitions
        if self.train.split_agent_batch and rows < self.train.agent_updates_per_model_update:
            raise InputError(f"config key 'train.split_agent_batch' deals agent.batch_size x "
                             f"agent.sequence_transitions = {rows} transitions out to "
                             f"train.agent_updates_per_model_update = {self.train.agent_updates_per_model_update} "
                             "updates: it needs at least one each")
        if self.train.buffer_size < self.model.sequence_length + 1:
            raise InputError("config key 'train.buffer_size' must hold at least one sequence "
                             f"({self.model.sequence_length + 1} frames)")


def presets() -> list[str]:
    """Names of the preset files in configs/."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict, cls: type[Config] = Config, prefix: str = ""):
    """Build a config of class ``cls`` from a (partial) nested dict; unknown keys raise InputError."""
    if not isinstance(data, dict):
        raise InputError(f"config section {prefix or '<root>'!r} must be a mapping, got {data!r}")
    obj = cls()
    return _apply(obj, data, prefix)


def _apply(obj, data: dict, prefix: str):
    hints = get_type_hints(type(obj))
    valid = [f.name for f in dataclasses.fields(obj)]
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in valid:
            raise InputError(f"unknown config key {path!r}; valid keys here: {', '.join(valid)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise InputError(f"config key {path!r} is a section; give {path}.<key>=value")
            _apply(current, value, path + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], path))
    return obj


def _coerce(value, hint, path: str):
    """Check/convert a value to the field's declared type, with a clear error."""
    origin, args = get_origin(hint), get_args(hint)
    if args and type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = get_origin(hint), get_args(hint)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            if not isinstance(value, (bool, int)):
                raise ValueError
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, str):
                value = float(value) if any(c in value for c in ".eE") else int(value)
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            return str(value)
        if origin is list:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, list):
                raise ValueError
            return [_coerce(v, args[0], path) for v in value]
        if origin is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (ValueError, TypeError, yaml.YAMLError):
        raise InputError(f"config key {path!r} expects {_type_name(hint)}, got {value!r}") from None
    return value


def _type_name(hint) -> str:
    return getattr(hint, "__name__", str(hint))


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def split_set(item: str) -> tuple[str, str]:
    """'agent.lr=3e-4' -> ('agent.lr', '3e-4'); an item without '=' is an InputError."""
    if "=" not in item:
        raise InputError(f"--set expects key=value (e.g. agent.lr=3e-4), got {item!r}")
    key, raw = item.split("=", 1)
    return key, raw


def _parse_set(item: str) -> dict:
    """'agent.lr=3e-4' -> {'agent': {'lr': 3e-4}} (value parsed as YAML)."""
    key, raw = split_set(item)
    value = yaml.safe_load(raw) if raw else ""
    if key.startswith("env_overrides."):
        return {"env_overrides": {key.split(".", 1)[1]: value}}
    out: dict = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    return data


def resolve(preset: str | None = None, files: list[str | Path] = (), sets: list[str] = (),
            base: dict | None = None, cls: type[Config] = Config) -> Config:
    """defaults of ``cls`` ← base (e.g. a checkpoint's config) ← preset ← files ← --set overrides."""
    data: dict = base or {}
    if preset:
        if preset not in presets():
            raise InputError(f"unknown preset {preset!r}; valid: {', '.join(presets())}")
        data = _deep_merge(data, load_yaml(PRESET_DIR / f"{preset}.yaml"))
    for f in files:
        data = _deep_merge(data, load_yaml(f))
    for s in sets:
        data = _deep_merge(data, _parse_set(s))
    cfg = from_dict(data, cls)
    cfg.check()
    return cfg


def check_fields(cfg, choices: dict[str, tuple] | None = None, positive: list[str] = (), nonnegative: list[str] = (),
                 unit: list[str] = ()) -> None:
    """Check dotted config keys: one of ``choices``, > 0, >= 0, in [0, 1] (None passes: an optional key
    left unset). Raises InputError naming the key, its value and what is valid."""
    flat = _flatten(to_dict(cfg))
    for key, valid in (choices or {}).items():
        if flat[key] not in valid:
            raise InputError(f"config key {key!r} is {flat[key]!r}; valid: {', '.join(valid)}")
    for keys, ok, what in ((positive, lambda v: v > 0, "> 0"), (nonnegative, lambda v: v >= 0, ">= 0"),
                           (unit, lambda v: 0 <= v <= 1, "in [0, 1]")):
        for key in keys:
            if flat[key] is not None and not ok(flat[key]):
                raise InputError(f"config key {key!r} must be {what}, got {flat[key]!r}")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "env_overrides":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save_yaml(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
