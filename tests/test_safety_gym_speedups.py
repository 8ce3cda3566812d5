"""envs/safety_gym_speedups.py: Safety-Gymnasium envs stepped with the fast task methods and with
Safety-Gymnasium's own step code give the same episodes, simulator step by simulator step: rewards,
costs (each term, before the indicator), terminations, goal placements, MuJoCo states and images."""

import numpy as np
import pytest

import envs
from envs.safety_gym import _make_builder
from envs.safety_gym_speedups import FastTask

# every robot and task, and the variant that changes what a cost is (hazards → pillars: contact costs);
# the other variants change the model after it is built (dynamics) or the look, not the step code
NAMES = sorted(name for name in envs.names() if name.startswith("sg-") and name.count("-") == 2)
NAMES.append("sg-point-goal1-pillars")


def stock_twin(name: str):
    """``envs.make(name)`` (one simulator step per env step) whose builder runs Safety-Gymnasium's own code."""
    env = envs.make(name, action_repeat=1)
    u = env.unwrapped
    robot, task = u.name.split("-")[1:3]
    u._builder = _make_builder(robot.capitalize(), task.capitalize(), u.params, fast=False)
    return env


def toward(env, body: str) -> np.ndarray:
    """An action steering the robot to ``body`` (the goal, or the box to push)."""
    task = env.unwrapped._builder.task
    model, data = task.model, task.data
    agent = model.body("agent").id
    x, y, _ = (data.xpos[model.body(body).id] - data.xpos[agent]) @ data.xmat[agent].reshape(3, 3)  # robot frame
    if env.unwrapped.name.split("-")[1] == "point":  # drives along its x axis: (push, turn rate)
        angle = np.arctan2(y, x)
        return np.array([float(abs(angle) < 0.5), np.clip(2 * angle, -1, 1)])
    angle = np.arctan2(x, -y)  # the car drives along its -y axis: (left wheel, right wheel)
    forward = float(abs(angle) < 0.5)
    return np.clip([forward + angle, forward - angle], -1, 1)


@pytest.mark.parametrize("name", NAMES)
def test_fast_step_computes_what_safety_gymnasium_computes(name):
    fast, stock = envs.make(name, action_repeat=1), stock_twin(name)
    fast_task, stock_task = fast.unwrapped._builder.task, stock.unwrapped._builder.task
    assert isinstance(fast_task, FastTask) and not isinstance(stock_task, FastTask)
    target = "push_box" if "push" in name else "goal"
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(fast.reset(seed=0)[0], stock.reset(seed=0)[0])
    goal, goals_placed, resets = fast_task.model.body("goal").pos.copy(), 0, 0
    for t in range(1200):  # 1000-step episodes: a time-limit reset on the way
        # alternate 100 random actions and 100 driving to the target: goals are reached and re-placed
        action = toward(fast, target) if t // 100 % 2 else rng.uniform(-1, 1, 2)
        (fast_obs, *fast_rest), (stock_obs, *stock_rest) = fast.step(action), stock.step(action)
        assert fast_rest == stock_rest, t  # reward, terminated, truncated, {"cost": ...}
        np.testing.assert_array_equal(fast_obs, stock_obs)
        for field in ("qpos", "qvel", "mocap_pos"):  # the tasks persist; their model and data are rebuilt at resets
            np.testing.assert_array_equal(getattr(fast_task.data, field), getattr(stock_task.data, field))
        np.testing.assert_array_equal(fast_task.model.body_pos, stock_task.model.body_pos)  # where the goal is
        assert fast_task.calculate_cost() == stock_task.calculate_cost()  # each term, before the indicator
        if not np.array_equal(goal, fast_task.model.body("goal").pos):  # reached: a new goal was placed
            goal, goals_placed = fast_task.model.body("goal").pos.copy(), goals_placed + 1
        if fast_rest[1] or fast_rest[2]:
            np.testing.assert_array_equal(fast.reset()[0], stock.reset()[0])
            goal, resets = fast_task.model.body("goal").pos.copy(), resets + 1
    assert resets >= 1
    if "push" not in name:  # pushing the box onto the goal is too hard for this driver
        assert goals_placed >= 1, "no goal reached: the goal placements were not compared"
