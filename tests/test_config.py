"""Config tree: presets, overrides, and clear errors for bad keys and values."""

import pytest

from latent_adversary.config import RobustConfig
from slac import config
from slac.errors import InputError


def test_defaults_are_safe_slacs_published_settings():
    cfg = config.Config()
    assert (cfg.model.feature_dim, cfg.model.z1_dim, cfg.model.z2_dim) == (200, 32, 200)
    assert cfg.model.hidden_units == [256, 256] and cfg.agent.hidden_units == [256, 256]
    assert (cfg.model.batch_size, cfg.agent.batch_size, cfg.model.sequence_length) == (32, 64, 10)
    assert (cfg.model.lr, cfg.agent.lr, cfg.agent.gamma_c) == (1e-4, 2e-4, 0.995)
    assert cfg.train.buffer_size == 200_000 and cfg.model.image_noise == 0.4
    assert (cfg.model.cost_loss_scale, cfg.model.cost_positive_weight) == (30.0, 100.0)
    assert (cfg.agent.lagrangian, cfg.agent.lagrange_lr, cfg.agent.init_lagrange) == ("step", 2e-4, 0.02)
    assert config.resolve("paper") == config.resolve()


def test_every_preset_resolves_and_every_overlay_on_it():
    assert set(config.presets()) == {"smoke", "cpu-small", "cpu-fast", "paper"}  # overlays are not presets
    for name in config.presets():
        config.resolve(name, cls=RobustConfig)
    overlays = sorted(config.PRESET_DIR.parent.glob("*.yaml"))
    assert {p.stem for p in overlays} >= {"adv-latent", "dr-dynamics", "physics-adversary"}
    for path in overlays:  # adv-*.yaml set the adversary's section, dr-*.yaml the randomisation's
        config.resolve("smoke", [path], cls=RobustConfig)


def test_overrides_are_typed_and_nested():
    cfg = config.resolve("smoke", sets=["agent.lr=3e-4", "model.hidden_units=[64, 64]",
                                        "env_overrides.action_repeat=4", "agent.target_entropy=null",
                                        "adversary.kind=image", "adversary.perturb_model=true", "train.steps=1e3"],
                         cls=RobustConfig)
    assert cfg.agent.lr == 3e-4 and cfg.model.hidden_units == [64, 64]
    assert cfg.env_overrides == {"action_repeat": 4} and cfg.agent.target_entropy is None
    assert cfg.adversary.perturb_model is True and cfg.train.steps == 1000


@pytest.mark.parametrize("item, message", [
    ("agent.lrr=1", "unknown config key 'agent.lrr'; valid keys here: hidden_units"),
    ("nope=1", "unknown config key 'nope'"),
    ("agent.lr=abc", "'agent.lr' expects float"),
    ("train.steps=1.5", "'train.steps' expects int"),
    ("agent.gamma=1.5", "'agent.gamma' must be in [0, 1]"),
    ("model.batch_size=0", "'model.batch_size' must be > 0"),
    ("agent.sequence_transitions=11", "'agent.sequence_transitions' must be in [1, model.sequence_length = 10]"),
    ("agent.sequence_transitions=0", "'agent.sequence_transitions' must be in [1"),
    ("adversary.kind=pixel", "'adversary.kind' is 'pixel'; valid: none, random, image, latent"),
    ("agent.lagrangian=pd", "valid: step, episode, pid"),
    ("agent.latent_input=mode", "'agent.latent_input' is 'mode'; valid: sample, mean"),
    ("agent=3", "'agent' is a section"),
    ("justakey", "--set expects key=value"),
])
def test_bad_input_is_one_clear_error(item, message):
    with pytest.raises(InputError) as err:
        config.resolve(sets=[item], cls=RobustConfig)
    assert message in str(err.value)


def test_the_core_config_has_no_adversary_section():
    """The adversary's section belongs to latent_adversary's config, not to the core's."""
    with pytest.raises(InputError, match="unknown config key 'adversary'"):
        config.resolve(sets=["adversary.kind=image"])
    assert config.resolve("smoke", cls=RobustConfig).adversary.kind == "none"


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="unknown preset 'huge'; valid: .*smoke"):
        config.resolve("huge")
    with pytest.raises(InputError, match="does not exist"):
        config.resolve(files=[tmp_path / "missing.yaml"])


def test_yaml_round_trip(tmp_path):
    cfg = config.resolve("smoke", sets=["seed=7"])
    config.save_yaml(cfg, tmp_path / "c.yaml")
    assert config.resolve(files=[tmp_path / "c.yaml"]) == cfg


def test_a_preset_extends_another_with_only_its_differences(tmp_path, monkeypatch):
    fast, small = config.resolve("cpu-fast"), config.resolve("cpu-small")
    assert fast.env_overrides == {"image_size": 32} and small.env_overrides == {}
    assert (fast.model.image_noise, small.model.image_noise) == (0.04, 0.16)
    train = ("steps", "keep_best_feasible", "eval_interval", "eval_episodes")
    assert [getattr(fast.train, k) for k in train] == [24000, True, 2000, 20]
    assert [getattr(small.train, k) for k in train] == [20000, False, 1000, 5]
    # everything else is cpu-small's
    same = lambda c: {**config.to_dict(c), "env_overrides": {},  # noqa: E731
                      "model": {**config.to_dict(c)["model"], "image_noise": 0},
                      "train": {**config.to_dict(c)["train"], **dict.fromkeys(train, 0)}}
    assert same(fast) == same(small)
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    monkeypatch.setattr(config, "PRESET_DIR", tmp_path)
    with pytest.raises(InputError, match="preset 'b' extends 'a', which is not a preset or extends it back"):
        config.resolve("a")


def test_cpu_fast_runs_a_few_steps(tmp_path):
    """The preset builds and trains on its env (a few steps, not a timing)."""
    from slac.checkpoint import load
    from slac.run import RunRequest, make_trainer

    sets = ["train.initial_collection_steps=10", "train.initial_learning_steps=2", "train.update_every=10",
            "train.eval_episodes=1", "train.eval_interval=30", "env_overrides.time_limit=15"]
    trainer = make_trainer(RunRequest(phase="source", env="dmc-cartpole-tilted", preset="cpu-fast", steps=30,
                                      sets=sets, out=str(tmp_path / "run")), progress=False)
    assert trainer.env.observation_space.shape == (3, 32, 32)
    trainer.run()
    assert load(tmp_path / "run")["counters"]["updates"] > 0
