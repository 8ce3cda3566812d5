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


def test_every_preset_resolves():
    assert {"smoke", "paper"} <= set(config.presets())
    for name in config.presets():
        config.resolve(name, cls=RobustConfig)  # adv-*.yaml set the adversary's section


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
