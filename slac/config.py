"""One typed configuration tree: defaults, named presets, YAML files and ``key=value`` overrides.

Defaults are Safe SLAC's published settings (Hogewind et al., ICLR 2023; the LAVA-LAB/safe-slac
``configuration.py``). Presets in ``configs/presets/<name>.yaml`` override a subset. Every field has a
one-line docstring (the comment above it); unknown keys are an :class:`~slac.errors.InputError`.

Step counts are *agent steps* (one policy decision = ``action_repeat`` simulator steps).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, get_args, get_origin, get_type_hints

import yaml

from slac.errors import InputError

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs" / "presets"

# the valid values of the config's choice fields, declared once (the modules that act on them import these)
DEVICES = ("auto", "cpu", "cuda")
PHASES = ("source", "target")  # a run trains in the source task, or fine-tunes in the target task
LAGRANGE_RULES = ("step", "episode", "pid")
LATENT_INPUTS = ("sample", "mean")

# ranges of every run's numbers (bad input beyond them is refused before anything is built)
SEED_MAX = 2**32 - 1  # seeds are in [0, 2**32 - 1]: what numpy's SeedSequence and default_rng take
MAX_DIM = 65_536  # a layer width or latent size beyond this is clearly a typo (Safe SLAC's widest is 256)
MAX_THREADS = 1_024  # torch threads; more would start a thread per number asked for
INT_MAX = 2**63 - 1  # every integer must fit in 64 bits (numpy and torch take no more)
FLOAT_MAX = 3.4028234663852886e38  # every float must be finite and within float32, what the networks compute in


@dataclass
class ModelConfig:
    """The latent variable model (Safe SLAC = SLAC + a cost head)."""

    # encoder output size per frame (Safe SLAC: 200)
    feature_dim: int = 200
    # size of the first latent level z1 (SLAC: 32)
    z1_dim: int = 32
    # size of the second latent level z2 (Safe SLAC: 200)
    z2_dim: int = 200
    # hidden layer sizes of every MLP inside the model, each in [1, 65536]; [] makes every head linear
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
    # scales the decoder's hidden channel counts (SLAC's 256, 128, 64, 32 at 1.0); the decoder is about half
    # of a model update's time on a CPU: at 0.5 a cpu-small agent step takes 0.75x the time (docs/notebook.md)
    decoder_width: float = 1.0
    # with bf16_convs, also encode the online filter's single frames (acting, evaluation) in bf16; off: they
    # run in float32, which is faster for one frame at a time on a CPU (1.23 vs 0.83 ms per filter step)
    bf16_acting: bool = False


@dataclass
class AgentConfig:
    """The SAC-Lagrangian agent acting on the latent state (z1, z2)."""

    # hidden layer sizes of actor and critics, each in [1, 65536]; [] makes them linear
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
    # cost discount, in [0, 1) (Safe SLAC: 0.995); the cost critic starts at the budget's discounted
    # value, D/T (1 - gamma_c^T) / (1 - gamma_c), which 1 would divide by zero
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
    # source phase: also keep checkpoints/best.pt, the kept checkpoint whose evaluation (the one at its
    # step) was within the budget with the highest return; a run directory then means that checkpoint to
    # evaluate.py, --phase target, export and the study (--resume still continues latest.pt). Safe SLAC:
    # false (the final weights). A choice among checkpoints by source evaluations only: in a target,
    # evaluation episodes would be real episodes that the lifetime cost does not count
    keep_best_feasible: bool = False
    # agent steps between image reconstructions in TensorBoard; 0 = never
    image_log_interval: int = 25_000
    # torch threads (0 = torch default), at most 1024
    threads: int = 0


@dataclass
class RandomizeConfig:
    """Domain randomisation of the source task (envs.randomization): env parameters redrawn every episode."""

    # env parameter -> [low, high], e.g. {pole_mass: [0.05, 0.3]}; a colour takes two rgba corners,
    # {body_rgba: [[0, 0, 0, 1], [1, 1, 1, 1]]}; {} = no randomisation
    ranges: dict[str, Any] = field(default_factory=dict)
    # env parameter -> [low, high] intervals never drawn (held-out target values), e.g. {pole_mass: [[0.35, 0.45]]}
    exclude: dict[str, Any] = field(default_factory=dict)
    # uniform (domain randomisation) | worst_cost (an adversary on the physics: the candidate draw with the
    # highest predicted episode cost)
    sampler: str = "uniform"
    # worst_cost: candidate draws per episode; share of episodes drawn uniformly; nearest past episodes that
    # predict a candidate's cost; past episodes remembered
    candidates: int = 16
    explore: float = 0.25
    neighbours: int = 5
    memory: int = 100


@dataclass
class Config:
    """Everything a run needs; saved as YAML in the run directory and inside every checkpoint."""

    # env name accepted by envs.make (set from --env or --shift)
    env: str = ""
    # keyword overrides passed to envs.make (e.g. action_repeat, image_size)
    env_overrides: dict[str, Any] = field(default_factory=dict)
    # random seed for torch, numpy and the env, in [0, 2**32 - 1]
    seed: int = 0
    # auto | cpu | cuda
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    randomize: RandomizeConfig = field(default_factory=RandomizeConfig)

    # sections a target phase resets to their defaults rather than inherit from its source checkpoint
    # (a config that extends this one, e.g. with an adversary section, adds its source-phase tools here)
    SOURCE_ONLY_SECTIONS: ClassVar[tuple[str, ...]] = ("randomize",)

    def check(self) -> None:
        """Range, choice and consistency checks; raises InputError naming the key and what is valid.
        (Every float is already finite: ``_coerce`` refuses others.)"""
        check_fields(self, choices={"device": DEVICES, "agent.lagrangian": LAGRANGE_RULES,
                                    "agent.latent_input": LATENT_INPUTS},
                     positive=["model.feature_dim", "model.z1_dim", "model.z2_dim", "model.image_noise",
                               "model.decoder_width",
                               "model.sequence_length", "model.batch_size", "model.lr", "model.grad_clip_norm",
                               "agent.batch_size", "agent.lr", "agent.init_alpha", "agent.grad_clip_norm",
                               "train.steps", "train.buffer_size", "train.update_every",
                               "train.eval_episodes", "train.log_interval", "train.checkpoint_interval",
                               "train.eval_interval", "train.agent_updates_per_model_update"],
                     nonnegative=["train.initial_collection_steps", "train.initial_learning_steps",
                                  "train.updates_per_step", "agent.budget", "agent.init_lagrange",
                                  "agent.lagrange_lr", "agent.pid_kp", "agent.pid_ki", "agent.pid_kd",
                                  "model.cost_loss_scale", "model.cost_positive_weight",
                                  "train.image_log_interval", "train.threads"],
                     unit=["agent.gamma", "agent.tau", "agent.cost_tau"])
        if not 0 <= self.seed <= SEED_MAX:
            raise InputError(f"config key 'seed' must be an integer in [0, 2**32 - 1 = {SEED_MAX}], got {self.seed}")
        if not 0 <= self.agent.gamma_c < 1:
            raise InputError(f"config key 'agent.gamma_c' must be in [0, 1) (the cost critic's start value divides "
                             f"by 1 - gamma_c), got {self.agent.gamma_c!r}")
        for key in ("model.feature_dim", "model.z1_dim", "model.z2_dim"):
            section, name = key.split(".")
            if getattr(getattr(self, section), name) > MAX_DIM:
                raise InputError(f"config key {key!r} must be in [1, {MAX_DIM}], got "
                                 f"{getattr(getattr(self, section), name)}")
        for section in ("model", "agent"):
            hidden = getattr(self, section).hidden_units
            if any(not 1 <= h <= MAX_DIM for h in hidden):
                raise InputError(f"config key '{section}.hidden_units' must list layer sizes in [1, {MAX_DIM}] "
                                 f"([] for no hidden layer), got {hidden}")
        if self.train.threads > MAX_THREADS:
            raise InputError(f"config key 'train.threads' must be in [0, {MAX_THREADS}] (0: torch's default), "
                             f"got {self.train.threads}")
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
            raise InputError(f"config key 'train.buffer_size' is {self.train.buffer_size} but must hold at least one "
                             f"sequence of model.sequence_length + 1 = {self.model.sequence_length + 1} frames")
        r = self.randomize
        if r.ranges or r.exclude or r.sampler != "uniform":
            from envs.randomization import check_options, parse_ranges

            parse_ranges(r.ranges, r.exclude)
            check_options(r.sampler, r.candidates, r.explore, r.neighbours, r.memory)
        for key, value in _flatten(to_dict(self)).items():  # every int, of every section, fits in 64 bits
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_MAX:
                raise InputError(f"config key {key!r} must be an integer within 64 bits (|x| <= 2**63 - 1), "
                                 f"got {value}")


def upgrade_saved(data: dict) -> dict:
    """A config saved in an older checkpoint, with the keys added since set to what that code did (so a
    reloaded run acts as it did): ``model.bf16_acting`` follows ``model.bf16_convs`` (the online filter
    ran in bf16 whenever the convolutions did); ``model.decoder_width`` is 1 (the only width there was)."""
    model = data.get("model")
    if not isinstance(model, dict):
        return data
    added = {"decoder_width": 1.0} if "decoder_width" not in model else {}
    if "bf16_acting" not in model and "bf16_convs" in model:
        added["bf16_acting"] = model["bf16_convs"]
    return {**data, "model": {**model, **added}} if added else data


def presets() -> list[str]:
    """Names of the preset files in configs/presets/."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str, seen: tuple[str, ...] = ()) -> dict:
    """A preset's mapping; ``extends: OTHER`` at its top starts from preset OTHER's (so a preset lists only
    where it differs from the one it extends)."""
    data = load_yaml(PRESET_DIR / f"{name}.yaml")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if parent not in presets() or parent in (*seen, name):
        raise InputError(f"preset {name!r} extends {parent!r}, which is not a preset or extends it back; "
                         f"valid: {', '.join(presets())}")
    return _deep_merge(load_preset(parent, (*seen, name)), data)


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
    """Check/convert a value to the field's declared type, with a clear error. Floats must be finite and
    within float32's range, bools true/false (or 1/0); lists and dicts are not strings. (Ints are
    checked to fit in 64 bits by ``Config.check``, after the checks with narrower ranges.)"""
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
            if not isinstance(value, (bool, int)) or value not in (0, 1):
                raise ValueError
            return bool(value)
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            if isinstance(value, str):
                value = float(value) if any(c in value for c in ".eE") else int(value)
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number) or abs(number) > FLOAT_MAX:
                raise InputError(f"config key {path!r} must be a finite number (within float32's range, "
                                 f"|x| <= 3.4e38), got {value!r}")
            return number
        if hint is str:
            if value is None or isinstance(value, (list, dict)):
                raise ValueError
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
    except (ValueError, TypeError, OverflowError, yaml.YAMLError) as e:
        if isinstance(e, InputError):
            raise
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
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        raise InputError(f"--set {key}: the value {raw!r} is not valid YAML (e.g. 3e-4, true, [64, 64], "
                         "null, or a quoted string)") from None
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
    """A config file's mapping of sections; InputError if it is missing, unreadable, not UTF-8 text,
    not YAML, or its top level is not a mapping (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise InputError(f"config file {str(path)!r} cannot be read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"config file {str(path)!r} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                         f"{e.start}); a config is a YAML text file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        message = " ".join(str(e).split())  # one line
        raise InputError(f"config file {str(path)!r} is not valid YAML: {message}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"config file {str(path)!r} must hold a mapping of sections and keys (e.g. "
                         f"'model: {{lr: 3.0e-4}}'); its top level is of type {type(data).__name__}")
    return data


def resolve(preset: str | None = None, files: list[str | Path] = (), sets: list[str] = (),
            base: dict | None = None, cls: type[Config] = Config) -> Config:
    """defaults of ``cls`` ← base (e.g. a checkpoint's config) ← preset ← files ← --set overrides."""
    data: dict = base or {}
    if preset:
        if preset not in presets():
            raise InputError(f"unknown preset {preset!r}; valid: {', '.join(presets())}")
        data = _deep_merge(data, load_preset(preset))
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


MAPPING_KEYS = ("env_overrides", "randomize.ranges", "randomize.exclude")  # dict values, not sections


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in MAPPING_KEYS:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save_yaml(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


# ------------------------------------------------------------------------------------ memory
def _mlp_parameters(in_dim: int, out_dim: int, hidden: list[int]) -> int:
    """Parameters of ``slac.networks.mlp``: weights and biases of its linear layers."""
    sizes = [in_dim, *hidden, out_dim]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def decoder_channels(width: float) -> tuple[int, int, int, int]:
    """The decoder's hidden channel counts at ``model.decoder_width`` (SLAC's 256, 128, 64, 32 at 1)."""
    return tuple(max(1, round(n * width)) for n in (256, 128, 64, 32))


def network_parameters(cfg: Config, obs_shape: tuple[int, int, int], action_dim: int) -> dict[str, int]:
    """Parameter counts of the networks ``slac.learner.build_learner`` builds, from the layer sizes in
    ``slac/networks.py``, ``slac/latent.py`` and ``slac/agent.py`` (nothing is built): 'model' (the
    latent model, all trained), 'agent' (actor, critics, alpha: trained) and 'agent_targets' (the
    critics' Polyak copies: no gradient, no optimiser state)."""
    channels, height, width = obs_shape
    m, a = cfg.model, action_dim
    latent = m.z1_dim + m.z2_dim
    last = (height // 16) * (width // 16)  # the kernel of the encoder's last / decoder's first convolution
    conv = lambda c_in, c_out, kernel: c_in * c_out * kernel + c_out  # weights + biases
    encoder = (conv(channels, 32, 25) + conv(32, 64, 9) + conv(64, 128, 9) + conv(128, 256, 9)
               + conv(256, m.feature_dim, last))
    c1, c2, c3, c4 = decoder_channels(m.decoder_width)
    decoder = (conv(latent, c1, last) + conv(c1, c2, 9) + conv(c2, c3, 9) + conv(c3, c4, 9)
               + conv(c4, channels, 25))
    h = list(m.hidden_units)
    heads = (_mlp_parameters(m.z1_dim, 2 * m.z2_dim, h)  # p(z2_0 | z1_0)
             + _mlp_parameters(m.z2_dim + a, 2 * m.z1_dim, h)  # p(z1_{t+1} | z2_t, a_t)
             + _mlp_parameters(latent + a, 2 * m.z2_dim, h)  # p(z2_{t+1} | z1_{t+1}, z2_t, a_t)
             + _mlp_parameters(m.feature_dim, 2 * m.z1_dim, h)  # q(z1_0 | x_0)
             + _mlp_parameters(m.feature_dim + m.z2_dim + a, 2 * m.z1_dim, h)  # q(z1_{t+1} | ...)
             + _mlp_parameters(2 * latent + a, 2, h)  # reward (mean, std)
             + _mlp_parameters(2 * latent + a, 1, h))  # cost logit
    h = list(cfg.agent.hidden_units)
    critics = 3 * _mlp_parameters(latent + a, 1, h)  # twin Q and Qc
    return {"model": encoder + decoder + heads,
            "agent": _mlp_parameters(latent, 2 * a, h) + critics + 1,  # actor, critics, log alpha
            "agent_targets": critics}


def memory_estimate(cfg: Config, obs_shape: tuple[int, int, int], action_dim: int) -> dict[str, int]:
    """Bytes a training run allocates, by part: 'replay buffer' (exact: ``SequenceReplayBuffer.nbytes``),
    'networks' (float32 parameters, and for the trained ones their gradients and two Adam moments:
    exact), 'activations' (rough: what one model update keeps for its backward pass, the encoder's and
    decoder's feature maps of model.batch_size x (sequence_length + 1) frames, and the agent update's
    frames; within a factor of about 2)."""
    channels, height, width = obs_shape
    pixels = height * width
    replay = cfg.train.buffer_size * (channels * pixels + 4 * (action_dim + 2) + 2)
    params = network_parameters(cfg, obs_shape, action_dim)
    networks = 4 * (4 * (params["model"] + params["agent"]) + params["agent_targets"])
    frames = cfg.model.batch_size * (cfg.model.sequence_length + 1)
    # per frame (float32): the encoder's maps (32, 64, 128, 256 channels at 1/2 .. 1/16 size: 15 HW) and the
    # decoder's (15 HW + C HW), each kept twice (convolution output, activation output), plus the frame
    # itself and the image loss's terms (~6 C HW)
    model_update = frames * 4 * (60 * pixels + 8 * channels * pixels)
    agent_frames = cfg.agent.batch_size * (cfg.model.sequence_length + 1)
    agent_update = agent_frames * 4 * (16 * pixels + 2 * channels * pixels)  # encoded without gradients
    return {"replay buffer": replay, "networks": networks, "activations": model_update + agent_update}


# what drives each part of the estimate: the keys a message names
MEMORY_KEYS = {"replay buffer": "train.buffer_size (or a smaller env_overrides.image_size)",
               "networks": "model.feature_dim, model.z1_dim, model.z2_dim, model.hidden_units, agent.hidden_units",
               "activations": "model.batch_size, agent.batch_size, model.sequence_length"}


def available_memory() -> int | None:
    """Bytes this process can still allocate: /proc/meminfo's MemAvailable (else free physical pages from
    os.sysconf), capped by a cgroup's memory limit less its usage; None where none can be read."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
    cgroups = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # v2
               ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))  # v1
    for limit, usage in cgroups:
        try:
            cap = int(Path(limit).read_text()) - int(Path(usage).read_text())
        except (OSError, ValueError):  # no such cgroup, or "max": no limit
            continue
        available = min(available, max(cap, 0))
    return available


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def check_memory(cfg: Config, obs_shape: tuple[int, int, int], action_dim: int, available: int | None = None) -> None:
    """Raise InputError, before anything is allocated, if a run of ``cfg`` on observations ``obs_shape``
    (C, H, W, uint8) and ``action_dim`` actions would need more memory than is available (``available``
    bytes, default :func:`available_memory`; nothing is checked where that cannot be read). The estimate
    is :func:`memory_estimate`'s sum, all counted against host memory (on a GPU the networks and
    activations live in device memory instead: the check is then conservative by those parts). The
    message gives the estimate by part, what is available, and the keys that drive the largest part."""
    parts = memory_estimate(cfg, tuple(obs_shape), action_dim)
    need = sum(parts.values())
    available = available_memory() if available is None else available
    if available is None or need <= available:
        return
    biggest = max(parts, key=parts.get)
    detail = ", ".join(f"{name} {_size(b)}" for name, b in parts.items())
    raise InputError(f"the run would need about {_size(need)} of memory ({detail}; observations "
                     f"{'x'.join(map(str, obs_shape))} uint8, train.buffer_size={cfg.train.buffer_size}) but "
                     f"{_size(available)} is available; lower {MEMORY_KEYS[biggest]}")
