"""Safety-Gymnasium navigation tasks as pixel envs, seen from the robot's "vision" camera.

The task's own renderer crashes with mujoco 3, so frames come from ``mujoco.Renderer`` on the
task's model and data, with every geom group visible (hazards included). Shift parameters either
change the task's geoms before its world is built (hazard count, colour, hazards → pillars of the
same count) or edit the compiled model after each rebuild (robot mass, actuator gain, floor
friction, light). Safety-Gymnasium rebuilds the MuJoCo model at every reset, so the parameters
are re-applied and the cameras re-bound then.

Episodes are 1000 simulator steps (Safety Gym's length), i.e. 500 agent steps at the default
action repeat of 2 (Safe SLAC's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.params import check_rgba, fill, require
from envs.pixel_env import PixelEnv
from envs.safety_gym_compat import import_safety_gymnasium
from envs.safety_gym_speedups import fast_task_class, speed_up_obstacles

SIM_STEPS_PER_EPISODE = 1000
ROBOTS = ("Point", "Car")
TASKS = ("Goal1", "Goal2", "Button1", "Push1")


@dataclass
class SafetyGymParams:
    image_size: int = 64
    fast_render: bool = True  # observations without shadows, reflections, multisampling (envs.rendering)
    action_repeat: int = 2
    time_limit: int = 0  # agent steps per episode; 0: 1000 simulator steps
    hazards_num: int | None = None  # None: the task's own count
    hazards_rgba: tuple | None = None
    hazards_as_pillars: bool = False  # replace hazard discs (cost inside) by pillars (cost on contact)
    robot_mass_scale: float = 1.0
    actuator_gain_scale: float = 1.0
    floor_friction_scale: float = 1.0
    light_diffuse: float | None = None

    def validate(self, env_name: str) -> None:
        require(16 <= self.image_size <= 1024, f"override 'image_size' for env {env_name!r} must be in [16, 1024]")
        require(self.action_repeat >= 1 and self.time_limit >= 0,
                f"overrides 'action_repeat' (>= 1) and 'time_limit' (>= 0) out of range for env {env_name!r}")
        require(self.hazards_num is None or 0 <= self.hazards_num <= 40,
                f"override 'hazards_num' for env {env_name!r} must be in [0, 40]")
        for name in ("robot_mass_scale", "actuator_gain_scale", "floor_friction_scale"):
            require(getattr(self, name) > 0, f"override {name!r} for env {env_name!r} must be > 0")
        require(self.light_diffuse is None or 0 <= self.light_diffuse <= 1,
                f"override 'light_diffuse' for env {env_name!r} must be in [0, 1]")
        check_rgba("hazards_rgba", self.hazards_rgba, env_name)


def _make_builder(robot: str, task: str, p: SafetyGymParams, fast: bool = True):
    """Safety-Gymnasium's Builder for Safety{robot}{task}-v0 with the geoms ``p`` changes; ``fast``: with the
    task's per-step methods from envs.safety_gym_speedups (same results), else its own (for tests)."""
    import_safety_gymnasium()
    from safety_gymnasium import tasks
    from safety_gymnasium.assets.geoms import Pillars
    from safety_gymnasium.builder import Builder
    from safety_gymnasium.utils.task_utils import get_task_class_name

    class PixelTaskBuilder(Builder):
        """Builder whose task geoms are edited before the observation space is built."""

        def _get_task(self):
            task_class = getattr(tasks, get_task_class_name(self.task_id))  # as Builder._get_task
            task_obj = (fast_task_class(task_class) if fast else task_class)(config=self.config)
            hazards = getattr(task_obj, "hazards", None)
            if hazards is not None:
                if p.hazards_num is not None:
                    hazards.num = p.hazards_num
                if p.hazards_rgba is not None:
                    hazards.color = np.asarray(p.hazards_rgba, dtype=np.float64)
                if p.hazards_as_pillars:
                    del task_obj._geoms["hazards"]
                    delattr(task_obj, "hazards")
                    pillars = Pillars(num=hazards.num, size=hazards.size, keepout=hazards.keepout)
                    if p.hazards_rgba is not None:
                        pillars.color = hazards.color
                    task_obj._add_geoms(pillars)
            if fast:
                speed_up_obstacles(task_obj)
            task_obj.build_observation_space()
            return task_obj

    return PixelTaskBuilder(f"Safety{robot}{task}-v0", config={"agent_name": robot})


class SafetyGymPixelEnv(PixelEnv):
    """A Safety-Gymnasium task observed as (3, H, W) uint8 images from the robot's camera."""

    def __init__(self, name: str, env_name: str | None = None, **overrides):
        robot, task = name.split("-")[1:3]
        self.name = name
        self.params = fill(SafetyGymParams, overrides, env_name or name)  # errors name the env asked for
        self._builder = _make_builder(robot.capitalize(), task.capitalize(), self.params)
        space = self._builder.action_space
        super().__init__(self.params.image_size, self.params.action_repeat,
                         self.params.time_limit or SIM_STEPS_PER_EPISODE // self.params.action_repeat,
                         space.low, space.high, camera="vision", overview_camera="fixedfar",
                         fast_render=self.params.fast_render)

    @property
    def model(self):
        """The current MuJoCo model (rebuilt by Safety-Gymnasium at each reset)."""
        return self._builder.task.model

    def mujoco_handles(self):
        return self._builder.task.model, self._builder.task.data

    def on_new_model(self, model) -> None:
        p = self.params
        if p.robot_mass_scale != 1.0:
            model.body_mass[model.body("agent").id] *= p.robot_mass_scale
        if p.actuator_gain_scale != 1.0:
            model.actuator_gear[:, 0] *= p.actuator_gain_scale
        if p.floor_friction_scale != 1.0:
            model.geom_friction[model.geom("floor").id, 0] *= p.floor_friction_scale
        if p.light_diffuse is not None:
            model.light_diffuse[:] = p.light_diffuse

    def reset_simulation(self, seed: int) -> None:
        self._builder.reset(seed=seed)  # draws the layout

    def simulation_step(self, action: np.ndarray) -> tuple[float, float, bool, bool]:
        _, reward, cost, terminated, truncated, _ = self._builder.step(action)
        return float(reward), float(cost), bool(terminated), bool(truncated)


def register_envs_and_shifts(register, register_shift) -> None:
    for robot in ROBOTS:
        for task in TASKS:
            register(f"sg-{robot.lower()}-{task.lower()}", "safety-gym", f"sg-{robot.lower()}-{task.lower()}",
                     f"Safety-Gymnasium {robot}{task}, vision camera")
    register("sg-point-goal1-pillars", "safety-gym", "sg-point-goal1", "PointGoal1 with its 8 hazard discs as pillars",
             hazards_as_pillars=True)
    register("sg-point-goal1-orange-hazards", "safety-gym", "sg-point-goal1", "PointGoal1 with orange hazards",
             hazards_rgba=(1.0, 0.5, 0.0, 0.25))
    register("sg-point-goal1-dim", "safety-gym", "sg-point-goal1", "PointGoal1 under dim light", light_diffuse=0.25)
    register("sg-point-goal1-heavy", "safety-gym", "sg-point-goal1", "PointGoal1 with a 3x heavier robot",
             robot_mass_scale=3.0)
    register("sg-car-goal1-weak-motor", "safety-gym", "sg-car-goal1", "CarGoal1 with actuator gain x0.5",
             actuator_gain_scale=0.5)
    register_shift("point-goal-level", "sg-point-goal1", "sg-point-goal2", "layout",
                   "PointGoal level 1 → 2: 8 → 10 hazards and 1 → 10 vases (constrained) on a larger floor")
    register_shift("car-goal-level", "sg-car-goal1", "sg-car-goal2", "layout",
                   "CarGoal level 1 → 2: 8 → 10 hazards and 1 → 10 vases (constrained) on a larger floor")
    register_shift("point-hazards-to-pillars", "sg-point-goal1", "sg-point-goal1-pillars", "shape",
                   "PointGoal1: the 8 flat hazard discs become 8 solid pillars (cost on contact)")
    register_shift("point-hazard-colour", "sg-point-goal1", "sg-point-goal1-orange-hazards", "appearance",
                   "PointGoal1: hazards turn from blue to orange")
    register_shift("point-dim-light", "sg-point-goal1", "sg-point-goal1-dim", "appearance",
                   "PointGoal1: the scene's light dims to a quarter")
    register_shift("point-heavy-robot", "sg-point-goal1", "sg-point-goal1-heavy", "dynamics",
                   "PointGoal1: robot body mass x3")
    register_shift("car-weak-motor", "sg-car-goal1", "sg-car-goal1-weak-motor", "dynamics",
                   "CarGoal1: actuator gains halved")
