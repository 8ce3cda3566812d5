"""Bad input (issue 28): every case of the hostile-user audit is one clear error, or a success where
it is legitimately fine. A clear error is exit code 2 and one stderr line ``error: ...`` naming the bad
value and what is valid, with no traceback (docs/robustness.md lists the cases).

The CLI cases run ``train.py`` / ``evaluate.py`` as subprocesses, each erring before any training or
episode; the rest call the library in-process: the config checks (with two property-based tests over
config values and evaluate.py's arguments) and ``slac.config.check_memory``'s estimate against real
allocations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import evaluate
from latent_adversary import ATTACKS
from latent_adversary.config import RobustConfig
from slac import checkpoint as slac_checkpoint
from slac import config
from slac.agent import SafeSACAgent
from slac.buffer import SequenceReplayBuffer
from slac.errors import InputError
from slac.latent import LatentModel

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["--env", "toy-reach", "--preset", "smoke", "--no-progress"]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    """A folder with the bad files: a config whose top level is a list, one in Latin-1."""
    folder = tmp_path_factory.mktemp("bad_input")
    (folder / "list.yaml").write_text("- model\n- agent\n")
    (folder / "latin1.yaml").write_bytes("model:\n  lr: 3.0e-4  # d\u00e9j\u00e0 vu\n".encode("latin-1"))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp) -> Path:
    """One smoke run of the toy env (about 15 s), for the evaluate.py cases."""
    out = tmp / "run"
    proc = _cli("train.py", "--phase", "source", *TRAIN, "--seed", "0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def _cli(script: str, *args: str, mujoco_gl: str = "egl") -> subprocess.CompletedProcess:
    command = [sys.executable, *(["-m", "envs"] if script == "envs" else [script]), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MUJOCO_GL": mujoco_gl})


def _one_clear_error(proc: subprocess.CompletedProcess, names: list[str]) -> str:
    everything = proc.stdout + proc.stderr
    assert "Traceback" not in everything, everything
    assert proc.returncode == 2, everything
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------- the CLIs
def case(name: str, args: list[str], names: list[str], marks=()):
    """A CLI case: its id, the arguments (after the smoke run's; {tmp} is the fixture's folder) and
    what the one error line must name."""
    return pytest.param(name, args, names, id=name, marks=marks)


TRAIN_CASES = [
    case("config-top-level-list", ["--config", "{tmp}/list.yaml"], ["list.yaml", "mapping", "list"]),
    case("config-not-utf8", ["--config", "{tmp}/latin1.yaml"], ["latin1.yaml", "UTF-8"]),
    case("hidden-negative", ["--set", "model.hidden_units=[-1]"], ["model.hidden_units", "[-1]", "[1, 65536]"]),
    case("hidden-zero", ["--set", "model.hidden_units=[0]"], ["model.hidden_units", "[0]", "[1, 65536]"]),
    case("agent-hidden-zero", ["--set", "agent.hidden_units=[4, 0]"], ["agent.hidden_units", "[4, 0]"]),
    case("z1-dim-huge", ["--set", "model.z1_dim=1e9"], ["model.z1_dim", "1000000000", "[1, 65536]"]),
    case("buffer-huge", ["--set", "train.buffer_size=1e12"], ["train.buffer_size", "available"]),
    case("seed-negative", ["--seed", "-1"], ["seed", "-1", "4294967295"]),
    case("seed-overflow", ["--seed", "1180591620717411303424"], ["seed", "1180591620717411303424", "4294967295"]),
    case("budget-inf", ["--set", "agent.budget=.inf"], ["agent.budget", "inf", "finite"]),
    case("lr-inf", ["--set", "model.lr=inf"], ["model.lr", "inf", "finite"]),
    case("pixel-epsilon", ["--set", "adversary.kind=image", "adversary.epsilon=5"],
         ["adversary.epsilon", "5", "[0, 1]"]),
    case("sequence-longer-than-episodes", ["--set", "model.sequence_length=1000"], ["sequence_length", "1000"]),
]

EVALUATE_CASES = [
    case("video-gif", ["--video", "{tmp}/x.gif"], ["x.gif", ".mp4"]),
    case("pixel-epsilon", ["--attack", "image-mc", "--epsilon", "2"], ["--epsilon", "2", "[0, 1]"]),
    case("latent-epsilon-nan", ["--attack", "latent-mc", "--epsilon", "nan"], ["--epsilon", "nan", "finite"]),
    case("sweep-inf", ["--attack", "latent-mc", "--epsilon-sweep", "0,0.1,inf"], ["--epsilon-sweep", "0,0.1,inf"]),
    case("episodes-zero", ["--episodes", "0"], ["--episodes", "0", ">= 1"]),
    case("seed-negative", ["--seed", "-1"], ["--seed", "-1", "4294967295"]),
    case("seed-overflow", ["--seed", "1180591620717411303424"], ["--seed", "1180591620717411303424"]),
]


@pytest.mark.parametrize("case, args, names", TRAIN_CASES)
def test_train_cli(case, args, names, tmp):
    args = [a.format(tmp=tmp) for a in args]
    _one_clear_error(_cli("train.py", *TRAIN, "--out", str(tmp / f"train-{case}"), *args), names)
    assert not (tmp / f"train-{case}" / "checkpoints").exists()  # it erred before training


@pytest.mark.parametrize("case, args, names", EVALUATE_CASES)
def test_evaluate_cli(case, args, names, tmp, checkpoint):
    args = [a.format(tmp=tmp) for a in args]
    _one_clear_error(_cli("evaluate.py", "--checkpoint", str(checkpoint), "--episodes", "1", *args), names)


@pytest.mark.parametrize("backend", ["nonsense", ""])
def test_bad_rendering_backend_in_evaluate(backend, checkpoint):
    _one_clear_error(_cli("evaluate.py", "--checkpoint", str(checkpoint), mujoco_gl=backend),
                     [f"MUJOCO_GL={backend!r}", "egl, osmesa, glfw"])


@pytest.mark.parametrize("backend", ["nonsense", ""])
def test_bad_rendering_backend_in_the_env_list(backend):
    _one_clear_error(_cli("envs", "--list", mujoco_gl=backend), [f"MUJOCO_GL={backend!r}", "egl, osmesa, glfw"])


# --------------------------------------------------------------------------- config, in-process
def _leaf_keys(obj, prefix: str = "") -> list[str]:
    """Dotted names of every field of a config, recursively (sections' fields, not the sections)."""
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out += _leaf_keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [prefix + f.name]
    return out


KEYS = _leaf_keys(RobustConfig())
SECTIONS = [key.split(".")[0] for key in KEYS if "." in key]
SECTIONS = sorted(set(SECTIONS))
DEFAULTS = config._flatten(config.to_dict(RobustConfig()))
FLOAT_KEYS = [k for k in KEYS if isinstance(DEFAULTS[k], float)
              or k in ("agent.cost_tau", "agent.target_entropy", "adversary.step_size")]  # float | None, None


def test_every_float_key_refuses_non_finite_values():
    assert len(FLOAT_KEYS) >= 20 and "adversary.epsilon" in FLOAT_KEYS and "agent.cost_tau" in FLOAT_KEYS
    for key in FLOAT_KEYS:
        for value in (".nan", ".inf", "-.inf", "inf", "nan", "1e39", "-1e400"):
            with pytest.raises(InputError, match=f"'{key}' must be a finite number"):
                config.resolve("smoke", sets=[f"{key}={value}"], cls=RobustConfig)


def test_hidden_units_positive_and_an_empty_list_is_linear_heads():
    for section in ("model", "agent"):
        for bad in ("[-1]", "[0]", "[64, 0]", "[70000]", "[1.5]", "[true]"):
            with pytest.raises(InputError, match=f"'{section}.hidden_units'"):
                config.resolve("smoke", sets=[f"{section}.hidden_units={bad}"])
    cfg = config.resolve("smoke", sets=["model.hidden_units=[]", "agent.hidden_units=[]"])  # no hidden layer
    model = LatentModel(cfg.model, 2, (3, 32, 32))
    SafeSACAgent(cfg.agent, model.latent_dim, 2, 1, 50)


def test_seed_range():
    assert config.resolve("smoke", sets=[f"seed={2**32 - 1}"]).seed == 2**32 - 1
    for bad in ("-1", str(2**32), "1180591620717411303424", "1e30", "true", "0.5"):
        with pytest.raises(InputError, match="'seed'"):
            config.resolve("smoke", sets=[f"seed={bad}"])


def test_adversary_epsilon_is_in_pixel_units_for_pixel_kinds():
    for kind in ("image", "random"):
        with pytest.raises(InputError, match=r"'adversary.epsilon' is 5.0 .* must be in \[0, 1\]"):
            config.resolve("smoke", sets=[f"adversary.kind={kind}", "adversary.epsilon=5"], cls=RobustConfig)
        assert config.resolve("smoke", sets=[f"adversary.kind={kind}", "adversary.epsilon=1"],
                              cls=RobustConfig).adversary.epsilon == 1
    assert config.resolve("smoke", sets=["adversary.kind=latent", "adversary.epsilon=5"],
                          cls=RobustConfig).adversary.epsilon == 5  # posterior stds: any finite value >= 0
    for bad in ("adversary.epsilon=-0.1", "adversary.step_size=-1", "adversary.ramp_steps=-5"):
        with pytest.raises(InputError, match=bad.split("=")[0]):
            config.resolve("smoke", sets=["adversary.kind=latent", bad], cls=RobustConfig)


def test_config_files(tmp):
    for text, message in (("- a\n", "its top level is of type list"), ("3\n", "its top level is of type int"),
                          ("model: [1\n", "is not valid YAML"), ("model: 3\n", "'model' is a section")):
        (tmp / "f.yaml").write_text(text)
        with pytest.raises(InputError, match=message) as err:
            config.resolve("smoke", files=[tmp / "f.yaml"])
        assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="is not UTF-8 text"):
        config.resolve("smoke", files=[tmp / "latin1.yaml"])
    (tmp / "f.yaml").write_text("")
    assert config.resolve("smoke", files=[tmp / "f.yaml"]) == config.resolve("smoke")  # empty: no change


def test_other_values_that_crashed_later():
    """Values that passed the checks and then failed inside the run (a math error, a division by zero,
    a thread per number)."""
    for item, message in (("agent.init_alpha=0", "'agent.init_alpha' must be > 0"),
                          ("agent.gamma_c=1", r"'agent.gamma_c' must be in \[0, 1\)"),
                          ("model.grad_clip_norm=-1", "'model.grad_clip_norm' must be > 0"),
                          ("train.threads=100000", "'train.threads' must be in"),
                          ("train.steps=1e30", "'train.steps' must be an integer within 64 bits"),
                          ("model.bf16_convs=5", "'model.bf16_convs' expects bool"),
                          ("device=[cpu]", "'device' expects str"),
                          ("model.lr=[", "--set model.lr: the value '\\[' is not valid YAML")):
        with pytest.raises(InputError, match=message):
            config.resolve("smoke", sets=[item], cls=RobustConfig)


def _yaml(value) -> str:
    """A value as a --set writes it (one YAML flow scalar or collection)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31 - 1, allow_unicode=True)
    return text.removesuffix("\n...\n").removesuffix("\n")


TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 1e-320, 1e9, 1e12, 3.5e38, -1e300]), TEXT)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(TEXT, SCALARS, max_size=2))


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(KEYS + SECTIONS), value=VALUES)
def test_any_config_value_gives_a_config_or_an_error_naming_its_key(key, value):
    try:
        cfg = config.resolve("smoke", sets=[f"{key}={_yaml(value)}"], cls=RobustConfig)
    except InputError as e:
        assert key in str(e) and "\n" not in str(e), str(e)
    else:  # what passed is in range
        assert isinstance(cfg, RobustConfig) and 0 <= cfg.seed <= config.SEED_MAX
        for name, v in config._flatten(config.to_dict(cfg)).items():
            assert not isinstance(v, float) or abs(v) <= config.FLOAT_MAX, (name, v)  # finite, float32
            assert not isinstance(v, int) or abs(v) <= config.INT_MAX, (name, v)
        assert all(1 <= h <= config.MAX_DIM for h in cfg.model.hidden_units + cfg.agent.hidden_units)


def _argument(flag: str, value: str, joined: bool) -> list[str]:
    return [f"{flag}={value}"] if joined else [flag, value]


NUMBER_TEXT = st.one_of(st.integers(-2**70, 2**70).map(str), st.floats().map(repr),
                        st.sampled_from(["nan", "inf", "-inf", "1e999", "0", "1", "-1", "2", "0.5"]), TEXT)
EPSILONS = st.lists(st.one_of(st.floats().map(repr), st.sampled_from(["nan", "inf", "2", "0.5", "", "x"])),
                    min_size=1, max_size=3).map(",".join)


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> st.SearchStrategy:
    folder = tmp_path_factory.mktemp("evaluate_paths")
    names = st.tuples(st.sampled_from(["a", "b/c", "d"]), st.sampled_from([".mp4", ".MP4", ".gif", "", ".json"]))
    return st.one_of(st.just(str(folder)), names.map(lambda t: str(folder / (t[0] + t[1]))))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_evaluate_arguments_give_a_clear_error_or_pass_the_checks(data, paths):
    flags = {"--episodes": NUMBER_TEXT, "--seed": NUMBER_TEXT, "--workers": NUMBER_TEXT, "--threads": NUMBER_TEXT,
             "--attack-steps": NUMBER_TEXT, "--video-episodes": NUMBER_TEXT, "--overview-size": NUMBER_TEXT,
             "--epsilon": NUMBER_TEXT, "--epsilon-sweep": EPSILONS,
             "--attack": st.one_of(st.sampled_from(ATTACKS), TEXT), "--device": st.one_of(st.sampled_from(
                 config.DEVICES), TEXT), "--side": st.one_of(st.sampled_from(config.PHASES), TEXT),
             "--video": paths, "--out": paths, "--plot": paths, "--tensorboard": paths}
    chosen = data.draw(st.lists(st.sampled_from(sorted(flags)), max_size=5, unique=True))
    argv = ["--checkpoint", "run"]
    for flag in chosen:
        argv += _argument(flag, data.draw(flags[flag]), data.draw(st.booleans()))
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = evaluate.parse_args(argv)
    except SystemExit as e:  # argparse's own clear error (usage and one error line)
        assert e.code == 2
        return
    try:
        evaluate.check(args)
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:  # what passed the checks is in range
        assert 0 <= args.seed <= config.SEED_MAX and args.episodes >= 1 and args.workers >= 1
        if args.epsilon is not None:
            assert math.isfinite(args.epsilon) and args.epsilon >= 0
            assert args.attack not in evaluate.PIXEL_ATTACKS or args.epsilon <= 1


def test_evaluate_ranges_in_process(checkpoint, tmp, capsys):
    for argv, message in ((["--episodes", "-3"], "--episodes must be >= 1, got -3"),
                          (["--workers", "0"], "--workers must be >= 1, got 0"),
                          (["--attack", "random", "--epsilon", "1.5"], "--epsilon for --attack random"),
                          (["--attack", "image-mad", "--epsilon-sweep", "0,0.5,3"], "must be in [0, 1] for --attack"),
                          (["--attack", "latent-mr", "--epsilon=-inf"], "finite number >= 0, got -inf"),
                          (["--threads", "5000"], "--threads must be in [0, 1024]"),
                          (["--overview-size", "100000"], "--overview-size must be in [16, 4096]"),
                          (["--video", str(tmp / "v.avi")], "ending in .mp4")):
        assert evaluate.main(["--checkpoint", str(checkpoint), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


# ------------------------------------------------------------------------------------- memory
@pytest.mark.parametrize("preset, sets, obs_shape, action_dim", [
    ("smoke", [], (3, 64, 64), 2),
    ("cpu-small", [], (3, 64, 64), 1),
    ("cpu-fast", ["model.decoder_width=0.3"], (3, 32, 32), 1),
    ("paper", ["model.feature_dim=24", "model.hidden_units=[]", "agent.hidden_units=[7, 9, 11]"], (3, 32, 48), 3),
])
def test_parameter_formula_counts_the_real_networks(preset, sets, obs_shape, action_dim):
    cfg = config.resolve(preset, sets=sets)
    model = LatentModel(cfg.model, action_dim, obs_shape)
    agent = SafeSACAgent(cfg.agent, model.latent_dim, action_dim, 2, 100)
    assert config.network_parameters(cfg, obs_shape, action_dim) == {
        "model": sum(p.numel() for p in model.parameters()),
        "agent": sum(p.numel() for p in agent.parameters() if p.requires_grad),
        "agent_targets": sum(p.numel() for p in agent.parameters() if not p.requires_grad)}


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


@pytest.mark.parametrize("preset", ["smoke", "cpu-small"])
def test_memory_estimate_against_real_allocations(preset):
    """The buffer and the networks (parameters, gradients, Adam moments) measured after one optimiser step."""
    cfg = config.resolve(preset, sets=["model.bf16_convs=false"])
    obs_shape, action_dim = (3, 64, 64), 1
    buffer = SequenceReplayBuffer(cfg.train.buffer_size, obs_shape, action_dim, cfg.model.sequence_length)
    model = LatentModel(cfg.model, action_dim, obs_shape)
    agent = SafeSACAgent(cfg.agent, model.latent_dim, action_dim, 2, 100)
    optimizers = [model.optimizer, *agent.optimizers.values()]
    for p in [*model.parameters(), *agent.parameters()]:
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    for optimizer in optimizers:
        optimizer.step()
    grads = [p.grad for p in [*model.parameters(), *agent.parameters()]]
    states = [t for o in optimizers for s in o.state.values() for k, t in s.items() if k != "step"]
    measured = buffer.nbytes() + _tensor_bytes([*model.parameters(), *agent.parameters(), *grads, *states])
    estimate = config.memory_estimate(cfg, obs_shape, action_dim)
    assert measured / 1.5 <= estimate["replay buffer"] + estimate["networks"] <= measured * 1.5
    assert 0 < estimate["activations"] < sum(estimate.values())
    config.check_memory(cfg, obs_shape, action_dim)  # fits this machine (the test runs it)


def test_check_memory_refuses_what_cannot_fit():
    cfg = config.resolve("smoke", sets=["train.buffer_size=1e12"])
    with pytest.raises(InputError, match=r"train\.buffer_size=1000000000000\) but .* is available; lower "
                                         r"train\.buffer_size") as err:
        config.check_memory(cfg, (3, 64, 64), 2)
    assert "PiB" in str(err.value) and "\n" not in str(err.value)
    wide = config.resolve("smoke", sets=["model.hidden_units=[60000, 60000]"])
    with pytest.raises(InputError, match="lower model.feature_dim, .*model.hidden_units"):
        config.check_memory(wide, (3, 64, 64), 2, available=2**30)
    config.check_memory(config.resolve("smoke"), (3, 64, 64), 2, available=2**30)  # smoke: ~80 MiB
    assert config.available_memory() > 0


# ------------------------------------------------------------------------------ damaged files
@pytest.fixture(scope="module")
def snapshot_files(checkpoint) -> tuple[bytes, bytes, dict]:
    """The bytes of the smoke run's latest.pt and of its replay, and the run's env spec."""
    state = slac_checkpoint.load(checkpoint)
    ckpt = checkpoint / "checkpoints"
    return (ckpt / "latest.pt").read_bytes(), (ckpt / state["replay_file"]).read_bytes(), state


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_damage_to_a_checkpoint_or_replay_loads_or_is_one_clear_error(data, snapshot_files, tmp_path_factory):
    """Truncation at any byte, or any bytes overwritten: loading succeeds or raises InputError, nothing else."""
    pt, npz, state = snapshot_files
    which = data.draw(st.sampled_from(["checkpoint", "replay"]))
    raw = bytearray(pt if which == "checkpoint" else npz)
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    else:
        start = data.draw(st.integers(0, len(raw) - 1))
        raw[start:start + 8] = data.draw(st.binary(min_size=1, max_size=8))
    path = tmp_path_factory.mktemp("damaged") / ("latest.pt" if which == "checkpoint" else "replay.npz")
    path.write_bytes(bytes(raw))
    try:
        if which == "checkpoint":
            slac_checkpoint.load(path)
        else:
            spec, cfg = state["env_spec"], state["config"]
            buffer = SequenceReplayBuffer(cfg["train"]["buffer_size"], tuple(spec["obs_shape"]), spec["action_dim"],
                                          cfg["model"]["sequence_length"])
            buffer.load_state_dict(slac_checkpoint.load_replay(path))
    except InputError as e:
        assert "\n" not in str(e) and str(path.name) in str(e) or "replay buffer" in str(e), str(e)
