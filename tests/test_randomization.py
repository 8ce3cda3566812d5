"""Domain randomisation and the physics adversary (envs.randomization): draws read back from the MuJoCo
model, exclusions, reproducibility, the worst-cost sampler's choice, and runs that use them."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from envs.randomization import Range, UniformSampler, WorstCostSampler, make_randomized, parse_ranges
from slac import checkpoint, config
from slac.errors import InputError
from slac.logger import read_metrics
from slac.run import RunRequest, make_trainer
from tests.test_train import assert_same_run

TILTED = "dmc-cartpole-tilted"
RANGES = {"pole_mass": [0.05, 0.5], "gravity": [6.0, 14.0], "light_diffuse": [0.3, 1.0],
          "body_rgba": [[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]}
HELD_OUT = {"pole_mass": [[0.35, 0.45]], "gravity": [[9.0, 11.0]]}


def model_values(env) -> dict[str, object]:
    """The randomised parameters as the simulator holds them (not as the wrapper names them)."""
    m = env.unwrapped.physics.model
    return {"pole_mass": float(m.body_mass[m.name2id("pole_1", "body")]), "gravity": -float(m.opt.gravity[2]),
            "light_diffuse": float(m.light_diffuse[0, 0]),
            "body_rgba": tuple(float(v) for v in m.mat_rgba[m.name2id("self", "material")])}


@pytest.fixture(scope="module")
def draws():
    env = make_randomized(TILTED, RANGES, HELD_OUT, image_size=16)
    seen = []
    for seed in list(range(12)) + [3, 7]:
        env.reset(seed=seed)
        seen.append(model_values(env))
    env.close()
    return seen


def test_draws_differ_repeat_stay_in_range_and_avoid_the_held_out_values(draws):
    first, repeats = draws[:12], draws[12:]
    for key in ("pole_mass", "gravity", "light_diffuse", "body_rgba"):
        assert len({d[key] for d in first}) == 12, f"{key} repeats across episodes"
    assert repeats == [first[3], first[7]]  # a seed gives the same parameters again
    for d in first:
        assert 0.05 <= d["pole_mass"] <= 0.5 and not 0.35 <= d["pole_mass"] <= 0.45
        assert 6.0 <= d["gravity"] <= 14.0 and not 9.0 <= d["gravity"] <= 11.0
        assert 0.3 <= d["light_diffuse"] <= 1.0
        assert all(0 <= c <= 1 for c in d["body_rgba"][:3]) and d["body_rgba"][3] == 1.0
    # float32 in MuJoCo for colour and light, float64 for masses and gravity: the draw is what the model holds
    assert len({round(d["pole_mass"], 12) for d in first}) == 12


def test_a_draw_changes_what_the_camera_sees_and_the_dynamics():
    env = make_randomized(TILTED, {"light_diffuse": [0.1, 1.0]}, image_size=16)
    means = set()
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        means.add(round(float(obs.mean()), 3))
    assert len(means) == 4
    env.close()
    heavy = make_randomized(TILTED, {"pole_mass": [1.0, 1.0]}, image_size=16)  # a point range: always 1.0
    light = make_randomized(TILTED, {"pole_mass": [0.1, 0.1]}, image_size=16)
    for env in (heavy, light):
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.array([1.0], dtype=np.float32))
    assert heavy.unwrapped.physics.data.qpos[0] < light.unwrapped.physics.data.qpos[0]  # a heavier pole moves slower
    heavy.close()
    light.close()


def test_episode_params_name_the_draw():
    env = make_randomized(TILTED, {"pole_mass": [0.05, 0.5], "body_rgba": RANGES["body_rgba"]}, image_size=16)
    env.reset(seed=4)
    params, m = env.episode_params, model_values(env)
    assert params["pole_mass"] == m["pole_mass"]
    assert [params[f"body_rgba_{i}"] for i in range(4)] == pytest.approx(list(m["body_rgba"]), abs=1e-6)
    env.close()


@pytest.mark.parametrize("ranges, exclude, message", [
    ({"pole_mass": [0.3, 0.1]}, {}, "finite low <= high"),
    ({"pole_mass": 0.3}, {}, "must be [low, high]"),
    ({"pole_mass": [0.1, float("nan")]}, {}, "finite low <= high"),
    ({"body_rgba": [[0, 0, 0, 1], [1, 1, 1]]}, {}, "must be [low, high]"),
    ({"pole_mass": [0.1, 0.3]}, {"gravity": [[9, 10]]}, "does not randomise"),
    ({"pole_mass": [0.1, 0.3]}, {"pole_mass": [[[0, 0], [1, 1]]]}, "does not have the shape"),
])
def test_bad_ranges_are_one_clear_error(ranges, exclude, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_ranges(ranges, exclude)


def test_the_env_refuses_unknown_keys_and_values_out_of_its_range():
    with pytest.raises(InputError, match="unknown override 'pole_weight'"):
        make_randomized(TILTED, {"pole_weight": [0.1, 0.3]}, image_size=16)
    with pytest.raises(InputError, match="'pole_mass' .* must be > 0"):
        make_randomized(TILTED, {"pole_mass": [-0.1, 0.3]}, image_size=16)
    with pytest.raises(InputError, match="'light_diffuse' .* must be in"):
        make_randomized(TILTED, {"light_diffuse": [0.5, 2.0]}, image_size=16)


def test_an_exclusion_covering_the_range_is_an_error():
    r = parse_ranges({"pole_mass": [0.1, 0.3]}, {"pole_mass": [[0.0, 1.0]]})[0]
    with pytest.raises(InputError, match="leaves .* nothing"):
        r.draw(np.random.default_rng(0))


def test_config_checks_the_randomize_section():
    cfg = config.resolve("smoke", sets=["randomize.ranges={pole_mass: [0.1, 0.3]}",
                                        "randomize.exclude={pole_mass: [[0.15, 0.2]]}"])
    assert cfg.randomize.ranges == {"pole_mass": [0.1, 0.3]}
    for sets, message in ((["randomize.sampler=worst"], "randomize.sampler"),
                          (["randomize.ranges={pole_mass: [1, 0]}"], "low <= high"),
                          (["randomize.sampler=worst_cost", "randomize.explore=2"], "explore"),
                          (["randomize.sampler=worst_cost", "randomize.memory=2"], "memory")):
        with pytest.raises(InputError, match=message):
            config.resolve("smoke", sets=sets)


def test_worst_cost_sampler_predicts_from_the_nearest_episodes_and_picks_the_costliest():
    r = Range("pole_mass", np.array([0.0]), np.array([1.0]), [], False)
    s = WorstCostSampler([r], candidates=8, explore=0.0, neighbours=2, memory=4)
    for x, cost in ((0.1, 0.0), (0.2, 10.0), (0.9, 100.0), (0.8, 50.0), (0.05, 1.0)):  # the first is forgotten
        s.observe([np.array([x])], cost)
    assert s.costs == [10.0, 100.0, 50.0, 1.0]
    assert s.predict([np.array([0.0])]) == pytest.approx((1.0 + 10.0) / 2)  # nearest: 0.05, 0.2
    assert s.predict([np.array([0.85])]) == pytest.approx((100.0 + 50.0) / 2)
    # with cost rising in the parameter, the adversary's draws sit higher than uniform ones
    picked = [float(s.draw(np.random.default_rng(k))[0][0]) for k in range(50)]
    uniform = [float(UniformSampler([r]).draw(np.random.default_rng(k))[0][0]) for k in range(50)]
    assert np.mean(picked) > np.mean(uniform) + 0.2
    # ... and each pick is the candidate of highest predicted cost among the ones drawn with that seed
    rng = np.random.default_rng(3)
    rng.random()
    candidates = [UniformSampler([r]).draw(rng) for _ in range(8)]
    assert s.draw(np.random.default_rng(3)) == max(candidates, key=s.predict)


def test_worst_cost_sampler_explores_uniformly_until_it_has_neighbours():
    r = Range("pole_mass", np.array([0.0]), np.array([1.0]), [], False)
    s = WorstCostSampler([r], candidates=8, explore=0.0, neighbours=3, memory=10)
    rng = np.random.default_rng(5)
    rng.random()
    assert s.draw(np.random.default_rng(5))[0][0] == UniformSampler([r]).draw(rng)[0][0]


RANDOMIZED = ["randomize.ranges={hazard_radius: [0.1, 0.3]}", "randomize.exclude={hazard_radius: [[0.17, 0.19]]}"]


def test_randomised_source_then_target_run(tmp_path):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    make_trainer(RunRequest(phase="source", env="toy-reach", preset="smoke", seed=2, steps=150, sets=RANDOMIZED,
                            out=str(src)), progress=False).run()
    episodes = [r for r in read_metrics(src / "metrics.jsonl") if "episode/hazard_radius" in r]
    assert len(episodes) == 3  # one record per finished episode (50 steps each)
    radii = [r["episode/hazard_radius"] for r in episodes]
    assert len(set(radii)) == 3 and all(0.1 <= x <= 0.3 and not 0.17 <= x <= 0.19 for x in radii)
    assert [r["step"] for r in episodes] == [50, 100, 150]
    trainer = make_trainer(RunRequest(phase="target", shift="toy-hazard-colour", checkpoint=str(src), steps=100,
                                      out=str(tgt)), progress=False)
    assert trainer.cfg.randomize.ranges == {} and not hasattr(trainer.env, "episode_params")  # source only
    trainer.run()
    assert checkpoint.load(tgt)["counters"]["step"] == 100


@pytest.fixture(scope="module")
def adversary_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("physics") / "run"
    sets = [*RANDOMIZED, "randomize.sampler=worst_cost", "randomize.neighbours=1", "randomize.explore=0"]
    make_trainer(RunRequest(phase="source", env="toy-reach", preset="smoke", seed=3, sets=sets, out=str(out)),
                 progress=False).run()
    return out, sets


def test_physics_adversary_run_resumes_bitwise(adversary_run, tmp_path):
    straight, sets = adversary_run
    out = tmp_path / "run"
    trainer = make_trainer(RunRequest(phase="source", env="toy-reach", preset="smoke", seed=3, sets=sets,
                                      out=str(out)), progress=False)
    env_step = trainer.env.step

    def step_then_interrupt(action):
        if trainer.counters["step"] == 126:  # mid-episode, after two episodes the adversary remembers
            trainer.request_stop(signal.SIGTERM)
        return env_step(action)

    trainer.env.step = step_then_interrupt
    trainer.run()
    assert checkpoint.load(out)["env"]["sampler"]["costs"]  # it remembered finished episodes
    make_trainer(RunRequest(resume=str(out)), progress=False).run()
    assert_same_run(straight, out)
    assert checkpoint.load(out)["env"] == checkpoint.load(straight)["env"]


def test_shipped_configs_randomise_the_tilted_cartpole_source_only(tmp_path):
    """configs/dr-*.yaml and physics-adversary.yaml through train.py's wiring (with the adversary's config
    class): a short source run records each episode's draw; the target run drops the randomisation."""
    from latent_adversary import run as robust

    files = ["configs/dr-dynamics.yaml", "configs/dr-appearance.yaml", "configs/physics-adversary.yaml"]
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    sets = ["env_overrides.image_size=16", "env_overrides.time_limit=40"]
    trainer = robust.make_trainer(RunRequest(phase="source", env=TILTED, preset="smoke", config_files=files,
                                             sets=sets, steps=90, out=str(src)), progress=False)
    assert trainer.cfg.randomize.sampler == "worst_cost" and len(trainer.cfg.randomize.ranges) == 6
    trainer.run()
    episodes = [r for r in read_metrics(src / "metrics.jsonl") if "episode/pole_mass" in r]
    assert len(episodes) == 2 and all(not 0.3 <= r["episode/pole_mass"] <= 0.5 for r in episodes)
    assert {f"episode/floor_rgba_{i}" for i in range(4)} <= set(episodes[0])
    target = robust.make_trainer(RunRequest(phase="target", shift="tilted-heavy-pole", checkpoint=str(src),
                                            steps=10, out=str(tgt)), progress=False)
    assert target.cfg.randomize.ranges == {} and target.cfg.adversary.kind == "none"
    assert not hasattr(target.env, "episode_params")
    target.run()
    assert checkpoint.load(tgt)["counters"]["step"] == 10
