"""envs/gym_adapter.py: any gymnasium env as ``--env gym:ID``, on the tiny envs of tests/tiny_gym_env.py
(registered through gymnasium's ``module:ID`` form, so gymnasium imports the module)."""

import json

import cv2
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
import evaluate
from slac import checkpoint
from slac.errors import InputError
from slac.run import RunRequest, env_for, make_trainer

MODULE = "tests.tiny_gym_env"
TINY = f"gym:{MODULE}:Tiny-v0"
TINY_STEPS = 40  # its registered max_episode_steps


def inner(env):
    """The tiny env under the adapter (and gymnasium's wrappers)."""
    return env.unwrapped.env.unwrapped


def rollout(env, actions, seed):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated, info["cost"]))
        if terminated or truncated:
            break
    return out


def test_observations_are_the_rendered_frame_resized_to_uint8_chw():
    env = envs.make(TINY, image_size=32)
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 32, 32) and obs.dtype == np.uint8 and info == {"cost": 0.0}
    assert env.observation_space.shape == (3, 32, 32) and env.observation_space.contains(obs)
    frame = inner(env).render()
    assert frame.shape == (24, 40, 3)  # not square: stretched
    expected = cv2.resize(frame, (32, 32), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    np.testing.assert_array_equal(obs, expected)
    obs, reward, terminated, truncated, info = env.step(np.array([0.3], np.float32))
    assert obs.shape == (3, 32, 32) and obs.dtype == np.uint8 and 0 <= obs.min() and obs.max() <= 255
    assert isinstance(reward, float) and isinstance(info["cost"], float)
    assert obs.min() < 100 < obs.max()  # the point and the background, not a blank frame
    overview = env.unwrapped.render_overview(100)
    assert overview.shape == (100, 100, 3) and overview.dtype == np.uint8
    np.testing.assert_array_equal(overview, cv2.resize(inner(env).render(), (100, 100), interpolation=cv2.INTER_AREA))
    assert envs.make(TINY).observation_space.shape == (3, 64, 64)  # the default image_size


def test_interface_the_learner_reads():
    env = envs.make(TINY, action_repeat=3)
    u = env.unwrapped
    assert u.action_repeat == 3 and u.max_episode_steps == TINY_STEPS // 3
    assert env.action_space.shape == (1,) and env.action_space.low[0] == -1 and env.action_space.high[0] == 1
    assert envs.known(TINY) and not envs.known("nope") and TINY not in envs.names()
    check_env(envs.make(TINY), skip_render_check=True)


@pytest.mark.parametrize("action, native", [(-1.0, -0.5), (1.0, 1.5), (0.0, 0.5), (0.5, 1.0), (-0.5, 0.0),
                                            (3.0, 1.5), (-7.0, -0.5)])
def test_actions_in_minus_one_one_map_linearly_onto_the_box(action, native):
    env = envs.make(TINY, seed=0)
    env.step(np.array([action], np.float32))
    received = inner(env).native_actions[-1]
    assert received.dtype == np.float32 and received.shape == (1,)
    assert received[0] == pytest.approx(native, abs=1e-6)


def test_action_repeat_sums_reward_and_cost_over_the_env_steps():
    repeat, once = envs.make(TINY, action_repeat=3), envs.make(TINY, action_repeat=1)
    repeat.reset(seed=4)
    once.reset(seed=4)
    total_cost = 0.0
    for _ in range(4):  # rightwards into the hazard (x > 0.3)
        a = np.array([0.2], np.float32)
        obs, reward, terminated, truncated, info = repeat.step(a)
        steps = [once.step(a) for _ in range(3)]
        assert reward == pytest.approx(sum(s[1] for s in steps))
        assert info["cost"] == pytest.approx(sum(s[4]["cost"] for s in steps))
        np.testing.assert_array_equal(obs, steps[-1][0])
        assert not terminated and not truncated
        total_cost += info["cost"]
    assert total_cost > 0, "the test never reached the hazard"
    assert len(inner(repeat).native_actions) == 1 + 12  # the construction's probe step, then 4 x 3


def test_repeat_stops_when_the_env_terminates():
    env = envs.make(TINY, action_repeat=8, speed=0.5)  # speed: a keyword argument of the env's constructor
    assert inner(env).speed == 0.5
    env.reset(seed=0)
    before = len(inner(env).native_actions)
    _, _, terminated, truncated, _ = env.step(np.array([1.0], np.float32))  # velocity +1: x hits 1 in <= 3 steps
    assert terminated and not truncated
    assert 1 <= len(inner(env).native_actions) - before <= 3


@pytest.mark.parametrize("overrides, length", [({}, TINY_STEPS), ({"action_repeat": 3}, TINY_STEPS // 3),
                                               ({"time_limit": 5}, 5), ({"time_limit": 55}, 55),
                                               ({"time_limit": 7, "action_repeat": 2}, 7)])
def test_episodes_last_max_episode_steps_agent_steps(overrides, length):
    """The registered limit // action_repeat, or time_limit (which also moves gymnasium's TimeLimit: 55 > 40)."""
    env = envs.make(TINY, **overrides)
    assert env.unwrapped.max_episode_steps == length
    out = rollout(env, [np.zeros(1, np.float32)] * 100, seed=0)  # zero: velocity 0, never terminates
    assert len(out) - 1 == length
    assert out[-1][3] and not out[-1][2] and not any(o[3] for o in out[1:-1])


def test_a_seed_fixes_the_episode():
    actions = [np.array([a], np.float32) for a in np.random.default_rng(0).uniform(-1, 1, 12)]

    def same(a, b):
        return all(np.array_equal(x[0] if isinstance(x, tuple) else x, y[0] if isinstance(y, tuple) else y)
                   and (not isinstance(x, tuple) or x[1:] == y[1:]) for x, y in zip(a, b, strict=True))

    first = rollout(envs.make(TINY), actions, seed=11)
    assert same(first, rollout(envs.make(TINY), actions, seed=11))
    assert not np.array_equal(first[0], rollout(envs.make(TINY), actions, seed=12)[0])
    # envs.make(seed=...): unseeded resets then follow the seeded stream
    a, b = envs.make(TINY, seed=3), envs.make(TINY, seed=3)
    a.reset()
    b.reset()
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])


@pytest.mark.parametrize("name, overrides, message", [
    (f"gym:{MODULE}:TinyNoCost-v0", {}, "reports no info['cost'] at env step 1"),
    (f"gym:{MODULE}:TinyNoRender-v0", {}, "cannot render RGB arrays"),
    (f"gym:{MODULE}:TinyFloatFrame-v0", {}, "render() with render_mode='rgb_array' returned float32 array of shape "
                                            "(24, 40, 3); it must return a uint8 (H, W, 3) array"),
    (f"gym:{MODULE}:TinyDiscrete-v0", {}, "has action space Discrete(3); the agent needs a 1-D Box"),
    (f"gym:{MODULE}:TinyNoLimit-v0", {}, "registered without max_episode_steps; give the episode length in agent "
                                         "steps with the override time_limit"),
    ("gym:tests.no_such_module:Tiny-v0", {}, "cannot import module 'tests.no_such_module'"),
    (f"gym:{MODULE}:Nope-v0", {}, "gymnasium has no env 'Nope-v0'"),
    ("gym:NoSuchEnv-v0", {}, "give the module that registers it as gym:MODULE:ENV_ID"),
    ("gym:", {}, "give gym:ENV_ID or gym:MODULE:ENV_ID"),
    (TINY, {"colour": 1}, "unknown override 'colour' for env 'gym:tests.tiny_gym_env:Tiny-v0': not a keyword argument"),
    (TINY, {"image_size": 40}, "'image_size' for env 'gym:tests.tiny_gym_env:Tiny-v0' must be a multiple of 16"),
    (TINY, {"image_size": "big"}, "'image_size' for env 'gym:tests.tiny_gym_env:Tiny-v0' expects int"),
    (TINY, {"action_repeat": 0}, "'action_repeat' for env 'gym:tests.tiny_gym_env:Tiny-v0' must be >= 1"),
    (TINY, {"action_repeat": 41}, "episodes of 40 env steps are shorter than one agent step"),
    (TINY, {"time_limit": 0}, "'time_limit' for env 'gym:tests.tiny_gym_env:Tiny-v0' must be >= 1"),
    (TINY, {"max_episode_steps": 9}, "the episode length is 'time_limit'"),
    (TINY, {"render_mode": "human"}, "override 'render_mode' for env 'gym:tests.tiny_gym_env:Tiny-v0' is the "
                                     "adapter's to set"),
])
@pytest.mark.filterwarnings("ignore:.*RGB-array rendering should return:UserWarning")  # gymnasium's env checker
def test_bad_input_is_one_clear_error(name, overrides, message):
    with pytest.raises(InputError) as err:
        envs.make(name, **overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_run_requests_accept_gym_names():
    assert env_for(RunRequest(env=TINY)) == TINY
    with pytest.raises(InputError, match="unknown env 'nope'; valid: .*gym:ENV_ID"):
        env_for(RunRequest(env="nope"))


def test_train_and_evaluate_end_to_end(tmp_path, capsys):
    """train.py --env gym:... --preset smoke, then evaluate.py on its checkpoint (with a video)."""
    out = tmp_path / "run"
    final = make_trainer(RunRequest(phase="source", env=TINY, preset="smoke", seed=0, steps=120, out=str(out)),
                         progress=False).run()
    assert {"eval/return", "eval/cost"} <= set(final)
    state = checkpoint.load(out)
    assert state["config"]["env"] == TINY and state["counters"]["step"] == 120
    assert state["env_spec"] == {"obs_shape": [3, 64, 64], "action_dim": 1, "action_repeat": 1,
                                 "episode_steps": TINY_STEPS}
    metrics, video = tmp_path / "metrics.json", tmp_path / "episode.mp4"
    assert evaluate.main(["--checkpoint", str(out), "--env", TINY, "--episodes", "2", "--device", "cpu",
                          "--out", str(metrics), "--video", str(video), "--overview-size", "64"]) == 0
    m = json.loads(metrics.read_text())
    assert m["env"] == TINY and m["episodes"] == 2
    assert all(0 < e["length"] <= TINY_STEPS for e in m["per_episode"])
    assert video.stat().st_size > 0
    capsys.readouterr()
