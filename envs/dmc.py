"""dm-control tasks with safety costs, as pixel envs.

- ``dmc-cartpole-balance`` / ``dmc-cartpole-swingup``: cost 1 per control step while the cart
  is outside a central zone |x| > ``cart_limit`` or the pole leaves an angle band |θ| >
  ``angle_limit`` (when set), in the spirit of the Real-World RL suite's slider-position and
  balance constraints (Dulac-Arnold et al., 2020). ``init_angle`` widens the balance task's
  initial pole angle range (dm-control's is ±0.034 rad), which makes the cart constraint bind:
  ``dmc-cartpole-tilted`` (registered in ``envs``) is balance from ±0.2 rad with |x| ≤ 0.25.
- ``dmc-walker-walk``: cost 1 per control step while any joint speed exceeds
  ``joint_velocity_limit`` (the RWRL suite's joint-velocity constraint).

Action repeat defaults follow PlaNet for these domains (cartpole 8, walker 2; SLAC used 4 for
cartpole): with the learner as the bottleneck on a CPU, 8 gives 125 decisions per 10 s episode,
and a stabilising policy still reaches ~99 % of the balance task's return at 12.5 Hz. An episode
is 1000 control steps (the suite's default; a control step is 10 ms for cartpole, 25 ms for
walker), i.e. ``1000 // action_repeat`` agent steps, unless ``time_limit`` (agent steps) is given.

Stepping bypasses ``dm_control.rl.control.Environment.step``: it sets the control, steps the
physics as the suite does and computes reward and cost, but skips the suite's vector observation
(discarded here). The cartpole reward is computed in closed form from (qpos, qvel, ctrl), equal
to the suite's (a test checks it), because the suite's reward costs more than the physics.

Shift parameters (masses, lengths, gravity, gains, friction, colours, light) edit the MuJoCo
model after it is compiled, so a shifted env differs from its source only in what its parameters
say.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import mujoco
import numpy as np

from envs.params import RECOLOURED, check_rgba, fill, require
from envs.pixel_env import PixelEnv

CONTROL_STEPS_PER_EPISODE = 1000


@dataclass
class CommonParams:
    """Parameters every dm-control env accepts."""

    image_size: int = 64
    fast_render: bool = True  # observations without shadows, reflections, multisampling (envs.rendering)
    action_repeat: int = 0  # 0: the domain's default
    time_limit: int = 0  # agent steps per episode; 0: 1000 simulator steps
    light_diffuse: float | None = None  # brightness of the scene's lights, e.g. 0.3 (dim) to 1.0
    floor_rgba: tuple | None = None  # floor colour (multiplies its grid texture)

    def validate(self, env_name: str) -> None:
        require(16 <= self.image_size <= 1024, f"override 'image_size' for env {env_name!r} must be in [16, 1024]")
        require(self.action_repeat >= 0 and self.time_limit >= 0,
                f"overrides 'action_repeat' and 'time_limit' for env {env_name!r} must be >= 0")
        require(self.light_diffuse is None or 0 <= self.light_diffuse <= 1,
                f"override 'light_diffuse' for env {env_name!r} must be in [0, 1]")
        check_rgba("floor_rgba", self.floor_rgba, env_name)


@dataclass
class CartpoleParams(CommonParams):
    cart_limit: float = 0.5  # cost when |cart x| exceeds this (rails end at 1.8)
    angle_limit: float | None = None  # cost when |pole angle| exceeds this (radians); None: no band
    init_angle: float | None = None  # balance: initial pole angle ~ U(±init_angle) rad; None: the suite's 0.034
    pole_length: float = 1.0
    pole_mass: float = 0.1
    cart_mass: float = 1.0
    gravity: float = 9.81
    actuator_gain: float = 10.0
    body_rgba: tuple | None = None  # colour of cart and pole
    # drawn radius of the pole (the suite's is 0.045 m, under 2 pixels wide at 64x64); a wider pole is a
    # massless, contact-free capsule around it, so the dynamics do not change. None: the suite's look
    pole_visual_radius: float | None = None
    # fraction of the way from the env's look (body and floor colours, light) to RECOLOURED's, blended
    # linearly: one number for an appearance shift's size, e.g. --env-sweep recolour=0,0.5,1 (1 is
    # the recoloured envs' look; 0 leaves the look as it is)
    recolour: float = 0.0

    def validate(self, env_name: str) -> None:
        super().validate(env_name)
        for name in ("cart_limit", "pole_length", "pole_mass", "cart_mass", "gravity", "actuator_gain"):
            require(getattr(self, name) > 0, f"override {name!r} for env {env_name!r} must be > 0")
        require(self.pole_visual_radius is None or 0 < self.pole_visual_radius <= 0.3,
                f"override 'pole_visual_radius' for env {env_name!r} must be in (0, 0.3] (metres)")
        require(self.init_angle is None or 0 <= self.init_angle <= 1.5,
                f"override 'init_angle' for env {env_name!r} must be in [0, 1.5] (radians)")
        require(0 <= self.recolour <= 1, f"override 'recolour' for env {env_name!r} must be in [0, 1]")
        check_rgba("body_rgba", self.body_rgba, env_name)


@dataclass
class WalkerParams(CommonParams):
    joint_velocity_limit: float = 12.0  # rad/s; cost when any joint is faster
    torso_mass_scale: float = 1.0
    friction: float = 0.7  # floor sliding friction (the suite's default)
    actuator_gain_scale: float = 1.0
    body_rgba: tuple | None = None

    def validate(self, env_name: str) -> None:
        super().validate(env_name)
        for name in ("joint_velocity_limit", "torso_mass_scale", "friction", "actuator_gain_scale"):
            require(getattr(self, name) > 0, f"override {name!r} for env {env_name!r} must be > 0")
        check_rgba("body_rgba", self.body_rgba, env_name)


def _material(physics, name: str) -> int:
    return mujoco.mj_name2id(physics.model.ptr, mujoco.mjtObj.mjOBJ_MATERIAL, name)


def _apply_common(physics, p: CommonParams) -> None:
    if p.light_diffuse is not None:
        physics.model.light_diffuse[:] = p.light_diffuse
    if p.floor_rgba is not None:
        physics.model.mat_rgba[_material(physics, "grid")] = p.floor_rgba


def _recolour(physics, fraction: float) -> None:
    """Move the look ``fraction`` of the way to RECOLOURED's: x ← x + fraction · (target − x)."""
    if fraction:
        model = physics.model
        for rgba, material in ((RECOLOURED["body_rgba"], "self"), (RECOLOURED["floor_rgba"], "grid")):
            row = model.mat_rgba[_material(physics, material)]
            row += fraction * (np.asarray(rgba, dtype=row.dtype) - row)
        model.light_diffuse[:] += fraction * (RECOLOURED["light_diffuse"] - model.light_diffuse)


def _build_cartpole(task_name: str, p: CartpoleParams):
    from dm_control.rl import control
    from dm_control.suite import cartpole

    xml, assets = cartpole.get_model_and_assets()
    xml = xml.replace(b'fromto="0 0 0 0 0 1"', f'fromto="0 0 0 0 0 {p.pole_length}"'.encode())
    xml = xml.replace(b'material="self" mass=".1"', f'material="self" mass="{p.pole_mass}"'.encode())
    if p.pole_visual_radius is not None:  # a massless, contact-free capsule of the pole class around the pole
        xml = xml.replace(b'<geom name="pole_1"/>', f'<geom name="pole_1"/><geom name="pole_1_visual" '
                          f'size="{p.pole_visual_radius}" mass="0" contype="0" conaffinity="0"/>'.encode())
    physics = cartpole.Physics.from_xml_string(xml, assets)
    model = physics.model
    model.body_mass[model.name2id("cart", "body")] = p.cart_mass
    model.opt.gravity[2] = -p.gravity
    model.actuator_gear[0, 0] = p.actuator_gain
    if p.body_rgba is not None:
        model.mat_rgba[_material(physics, "self")] = p.body_rgba
    _apply_common(physics, p)
    _recolour(physics, p.recolour)

    class Balance(cartpole.Balance):
        def initialize_episode(self, physics):
            super().initialize_episode(physics)
            if p.init_angle is not None and not self._swing_up:
                physics.data.qpos[1] = self.random.uniform(-p.init_angle, p.init_angle)

    task = Balance(swing_up=task_name == "swingup", sparse=False)
    env = control.Environment(physics, task, time_limit=float("inf"))
    mj_model, mj_data = physics.model.ptr, physics.data.ptr
    cos_limit = -np.inf if p.angle_limit is None else np.cos(p.angle_limit)

    def step(action: np.ndarray) -> tuple[float, float]:
        # the suite's RK4 step (Physics.step adds an mj_step1, done once before a render instead)
        mj_data.ctrl[:] = action
        mujoco.mj_step(mj_model, mj_data)
        cost = abs(mj_data.qpos[0]) > p.cart_limit or np.cos(mj_data.qpos[1]) < cos_limit
        return cartpole_reward(mj_data.qpos, mj_data.qvel, mj_data.ctrl), float(cost)

    return env, step, lambda: mujoco.mj_step1(mj_model, mj_data), 8, "fixed"


_GAUSSIAN_SCALE = np.sqrt(-2 * np.log(0.1))  # dm_control.utils.rewards.tolerance: value 0.1 at the margin


def cartpole_reward(qpos: np.ndarray, qvel: np.ndarray, ctrl: np.ndarray) -> float:
    """The suite's dense cartpole reward (``cartpole.Balance._get_reward(sparse=False)``) in closed form.

    upright · centred · small control · small velocity, with θ = qpos[1] (the pole's zz axis
    component is cos θ), tolerance(v, bounds=(0, 0), margin m) = exp(-½ (v/m · √(-2 ln 0.1))²)
    for the Gaussian terms and max(0, 1 - u²) for the quadratic control term.
    """
    upright = (np.cos(qpos[1]) + 1) / 2
    centred = (1 + np.exp(-0.5 * (qpos[0] / 2 * _GAUSSIAN_SCALE) ** 2)) / 2
    small_control = (4 + max(0.0, 1 - float(ctrl[0]) ** 2)) / 5
    small_velocity = (1 + np.exp(-0.5 * (qvel[1] / 5 * _GAUSSIAN_SCALE) ** 2)) / 2
    return float(upright * centred * small_control * small_velocity)


def _build_walker(task_name: str, p: WalkerParams):
    from dm_control.rl import control
    from dm_control.suite import walker

    xml, assets = walker.get_model_and_assets()
    physics = walker.Physics.from_xml_string(xml, assets)
    model = physics.model
    model.body_mass[model.name2id("torso", "body")] *= p.torso_mass_scale
    model.geom_friction[model.name2id("floor", "geom"), 0] = p.friction
    model.actuator_gear[:, 0] *= p.actuator_gain_scale
    if p.body_rgba is not None:
        model.mat_rgba[_material(physics, "self")] = p.body_rgba
    _apply_common(physics, p)
    task = walker.PlanarWalker(move_speed=walker._WALK_SPEED)
    env = control.Environment(physics, task, time_limit=float("inf"), control_timestep=walker._CONTROL_TIMESTEP)

    n_sub_steps = env._n_sub_steps

    def step(action: np.ndarray) -> tuple[float, float]:
        # control.Environment.step without the vector observation: the task's before_step only sets
        # the control and its after_step does nothing
        physics.set_control(action)
        physics.step(n_sub_steps)
        cost = np.abs(physics.data.qvel[3:]).max() > p.joint_velocity_limit  # skip the root's 3 dofs
        return task.get_reward(physics), float(cost)

    return env, step, lambda: None, 2, "side"


DOMAINS = {
    "dmc-cartpole-balance": (CartpoleParams, _build_cartpole, "balance"),
    "dmc-cartpole-swingup": (CartpoleParams, _build_cartpole, "swingup"),
    "dmc-walker-walk": (WalkerParams, _build_walker, "walk"),
}


class DMCSafetyEnv(PixelEnv):
    """A dm-control task with a cost, observed as (3, H, W) uint8 images."""

    def __init__(self, name: str, env_name: str | None = None, **overrides):
        params_cls, build, task_name = DOMAINS[name]
        self.name, self._env_name, self._overrides = name, env_name or name, overrides
        self.params = fill(params_cls, overrides, self._env_name)  # errors name the env asked for
        self._env, self._step, self._sync, default_repeat, camera = build(task_name, self.params)
        self.physics = self._env.physics
        action_repeat = self.params.action_repeat or default_repeat
        spec = self._env.action_spec()
        super().__init__(self.params.image_size, action_repeat,
                         self.params.time_limit or CONTROL_STEPS_PER_EPISODE // action_repeat,
                         spec.minimum, spec.maximum, camera=camera, overview_camera=camera,
                         fast_render=self.params.fast_render)

    def set_params(self, **changes) -> None:
        """Rebuild the simulation with ``changes`` on top of the env's parameters, keeping its cameras
        (domain randomisation, ``envs.randomization``). The image, action repeat and episode length stay."""
        params_cls, build, task_name = DOMAINS[self.name]
        params = fill(params_cls, {**self._overrides, **changes}, self._env_name)
        fixed = [k for k in ("image_size", "action_repeat", "time_limit", "fast_render")
                 if getattr(params, k) != getattr(self.params, k)]
        require(not fixed, f"{', '.join(fixed)} of env {self._env_name!r} cannot change between episodes")
        self.params = params
        self._env, self._step, self._sync, _, _ = build(task_name, params)
        self.physics = self._env.physics

    def mujoco_handles(self):
        return self.physics.model.ptr, self.physics.data.ptr

    def reset_simulation(self, seed: int) -> None:
        self._env.task._random = np.random.RandomState(seed)  # the task's initial-state RNG
        self._env.reset()

    def simulation_step(self, action: np.ndarray) -> tuple[float, float, bool, bool]:
        return *self._step(action), False, False  # these tasks never terminate

    def before_render(self) -> None:
        self._sync()


def param_names(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(DOMAINS[name][0])]
