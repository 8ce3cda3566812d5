"""dm-control tasks with safety costs, as pixel envs.

- ``dmc-cartpole-balance`` / ``dmc-cartpole-swingup``: cost 1 per simulator step while the cart
  is outside a central zone |x| > ``cart_limit`` or the pole leaves an angle band |θ| >
  ``angle_limit`` (when set), in the spirit of the Real-World RL suite's slider-position and
  balance constraints (Dulac-Arnold et al., 2020).
- ``dmc-walker-walk``: cost 1 per simulator step while any joint speed exceeds
  ``joint_velocity_limit`` (the RWRL suite's joint-velocity constraint).

Action repeat defaults follow PlaNet/SLAC for these domains (cartpole 8, walker 2). An episode is
1000 simulator steps (the suite's default), i.e. ``1000 // action_repeat`` agent steps, unless
``time_limit`` (agent steps) is given. Shift parameters (masses, lengths, gravity, gains, friction,
colours, light) edit the MuJoCo model after it is compiled, so a shifted env differs from its
source only in what its parameters say.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from envs.params import check_rgba, fill, require
from envs.pixel_env import PixelEnv

SIM_STEPS_PER_EPISODE = 1000


@dataclass
class CommonParams:
    """Parameters every dm-control env accepts."""

    image_size: int = 64
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
    pole_length: float = 1.0
    pole_mass: float = 0.1
    cart_mass: float = 1.0
    gravity: float = 9.81
    actuator_gain: float = 10.0
    body_rgba: tuple | None = None  # colour of cart and pole

    def validate(self, env_name: str) -> None:
        super().validate(env_name)
        for name in ("cart_limit", "pole_length", "pole_mass", "cart_mass", "gravity", "actuator_gain"):
            require(getattr(self, name) > 0, f"override {name!r} for env {env_name!r} must be > 0")
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
    import mujoco

    return mujoco.mj_name2id(physics.model.ptr, mujoco.mjtObj.mjOBJ_MATERIAL, name)


def _apply_common(physics, p: CommonParams) -> None:
    if p.light_diffuse is not None:
        physics.model.light_diffuse[:] = p.light_diffuse
    if p.floor_rgba is not None:
        physics.model.mat_rgba[_material(physics, "grid")] = p.floor_rgba


def _build_cartpole(task_name: str, p: CartpoleParams):
    from dm_control.rl import control
    from dm_control.suite import cartpole

    xml, assets = cartpole.get_model_and_assets()
    xml = xml.replace(b'fromto="0 0 0 0 0 1"', f'fromto="0 0 0 0 0 {p.pole_length}"'.encode())
    xml = xml.replace(b'material="self" mass=".1"', f'material="self" mass="{p.pole_mass}"'.encode())
    physics = cartpole.Physics.from_xml_string(xml, assets)
    model = physics.model
    model.body_mass[model.name2id("cart", "body")] = p.cart_mass
    model.opt.gravity[2] = -p.gravity
    model.actuator_gear[0, 0] = p.actuator_gain
    if p.body_rgba is not None:
        model.mat_rgba[_material(physics, "self")] = p.body_rgba
    _apply_common(physics, p)
    task = cartpole.Balance(swing_up=task_name == "swingup", sparse=False)
    env = control.Environment(physics, task, time_limit=float("inf"))

    def cost(physics) -> float:
        outside = abs(float(physics.cart_position())) > p.cart_limit
        if p.angle_limit is not None:
            outside |= float(physics.pole_angle_cosine()[0]) < np.cos(p.angle_limit)
        return float(outside)

    return env, cost, 8, "fixed"


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
    env = control.Environment(physics, task, time_limit=float("inf"))

    def cost(physics) -> float:
        return float(np.abs(physics.data.qvel[3:]).max() > p.joint_velocity_limit)  # skip the root's 3 dofs

    return env, cost, 2, "side"


DOMAINS = {
    "dmc-cartpole-balance": (CartpoleParams, _build_cartpole, "balance"),
    "dmc-cartpole-swingup": (CartpoleParams, _build_cartpole, "swingup"),
    "dmc-walker-walk": (WalkerParams, _build_walker, "walk"),
}


class DMCSafetyEnv(PixelEnv):
    """A dm-control task with a cost, observed as (3, H, W) uint8 images."""

    def __init__(self, name: str, **overrides):
        params_cls, build, task_name = DOMAINS[name]
        self.name = name
        self.params = fill(params_cls, overrides, name)
        self._env, self._cost, default_repeat, camera = build(task_name, self.params)
        self.physics = self._env.physics
        action_repeat = self.params.action_repeat or default_repeat
        spec = self._env.action_spec()
        super().__init__(self.params.image_size, action_repeat,
                         self.params.time_limit or SIM_STEPS_PER_EPISODE // action_repeat,
                         spec.minimum, spec.maximum, camera=camera, overview_camera=camera)

    def mujoco_handles(self):
        return self.physics.model.ptr, self.physics.data.ptr

    def reset_simulation(self, seed: int) -> None:
        self._env.task._random = np.random.RandomState(seed)  # the task's initial-state RNG
        self._env.reset()

    def simulation_step(self, action: np.ndarray) -> tuple[float, float, bool, bool]:
        time_step = self._env.step(action)
        return time_step.reward or 0.0, self._cost(self.physics), False, False


def param_names(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(DOMAINS[name][0])]
