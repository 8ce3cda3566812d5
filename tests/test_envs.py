"""envs/: every env constructs and steps; seeding; shifts change what they claim; errors."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from slac.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", envs.names())
def test_every_env_constructs_resets_and_steps(name):
    env = envs.make(name, seed=0)
    obs, info = env.reset(seed=1)
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert info["cost"] == 0.0
    assert isinstance(env.action_space, gym.spaces.Box)
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    u = env.unwrapped
    assert u.action_repeat >= 1 and u.max_episode_steps >= 1
    for _ in range(3):
        result = env.step(env.action_space.sample())
        assert len(result) == 5
        obs, reward, terminated, truncated, info = result
        assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
        assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
        assert isinstance(info["cost"], float) and info["cost"] >= 0
    overview = u.render_overview(96)
    assert overview.shape == (96, 96, 3) and overview.dtype == np.uint8
    env.close()


@pytest.mark.parametrize("name", ["toy-reach", "dmc-cartpole-swingup", "sg-point-goal1"])
def test_gymnasium_env_checker_passes(name):
    check_env(envs.make(name, seed=0), skip_render_check=True)


@pytest.mark.parametrize("name", ["toy-reach", "dmc-cartpole-swingup", "dmc-cartpole-tilted", "dmc-walker-walk",
                                  "sg-point-goal1", "sg-car-goal2"])
def test_same_seed_same_first_image_different_seed_different_layout(name):
    first = [envs.make(name).reset(seed=s)[0] for s in (7, 7, 8)]
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], first[2])


def test_safety_gym_layouts_follow_the_seed():
    def hazard_positions(seed):
        env = envs.make("sg-point-goal1")
        env.reset(seed=seed)
        model = env.unwrapped.model
        return np.array([model.body(f"hazard{i}").pos.copy() for i in range(8)])

    np.testing.assert_array_equal(hazard_positions(3), hazard_positions(3))
    assert not np.allclose(hazard_positions(3), hazard_positions(4))


def test_action_repeat_sums_reward_and_cost():
    one = envs.make("dmc-cartpole-balance", action_repeat=1, cart_limit=0.01)
    two = envs.make("dmc-cartpole-balance", action_repeat=2, cart_limit=0.01)
    one.reset(seed=0)
    two.reset(seed=0)
    action = np.array([1.0], np.float32)
    r1 = [one.step(action) for _ in range(6)]
    r2 = [two.step(action) for _ in range(3)]
    assert sum(r[1] for r in r1) == pytest.approx(sum(r[1] for r in r2))
    assert sum(r[4]["cost"] for r in r1) == sum(r[4]["cost"] for r in r2) > 0
    np.testing.assert_array_equal(r1[-1][0], r2[-1][0])


@pytest.mark.parametrize("name", ["dmc-cartpole-swingup", "dmc-cartpole-tilted", "dmc-walker-walk"])
def test_dmc_stepping_matches_the_suite(name):
    """The wrapper's own stepping (no vector observation, closed-form cartpole reward) equals
    dm_control's Environment.step: same rewards, same states, same frame."""
    env = envs.make(name, action_repeat=1)
    u = env.unwrapped
    env.reset(seed=0)
    state = u.physics.get_state().copy()
    actions = np.random.default_rng(0).uniform(-1, 1, (40, *env.action_space.shape)).astype(np.float32)
    ours = [env.step(a) for a in actions]
    our_state, our_frame = u.physics.get_state().copy(), ours[-1][0]
    with u.physics.reset_context():
        u.physics.set_state(state)
    suite = [u._env.step(a).reward for a in actions]
    np.testing.assert_allclose([r[1] for r in ours], suite, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(u.physics.get_state(), our_state)
    np.testing.assert_array_equal(u._observation(), our_frame)


def test_cartpole_closed_form_reward_equals_the_suite():
    from envs.dmc import cartpole_reward

    env = envs.make("dmc-cartpole-balance")
    physics, task = env.unwrapped.physics, env.unwrapped._env.task
    rng = np.random.default_rng(1)
    for _ in range(200):
        with physics.reset_context():
            physics.data.qpos[:] = rng.uniform([-1.8, -np.pi], [1.8, np.pi])
            physics.data.qvel[:] = rng.normal(0, 5, 2)
            physics.data.ctrl[:] = rng.uniform(-1.2, 1.2)
        d = physics.data
        assert cartpole_reward(d.qpos, d.qvel, d.ctrl) == pytest.approx(task.get_reward(physics), rel=1e-12, abs=1e-15)


def test_tilted_cartpole_starts_tilted_and_costs_outside_its_zone():
    env = envs.make("dmc-cartpole-tilted")
    u = env.unwrapped
    angles = []
    for seed in range(40):
        env.reset(seed=seed)
        angles.append(u.physics.data.qpos[1])
    assert 0.15 < np.max(np.abs(angles)) <= 0.2  # the suite's balance task starts within ±0.034
    with u.physics.reset_context():
        u.physics.data.qpos[:] = [0.3, 0.0]
    assert u._step(np.zeros(1))[1] == 1.0  # |x| > 0.25
    with u.physics.reset_context():
        u.physics.data.qpos[:] = [0.2, 0.0]
    assert u._step(np.zeros(1))[1] == 0.0


def test_thick_pole_changes_the_picture_not_the_dynamics():
    thin = envs.make("dmc-cartpole-tilted", pole_visual_radius=None)
    thick = envs.make("dmc-cartpole-tilted")  # pole_visual_radius 0.1
    obs_thin, _ = thin.reset(seed=3)
    obs_thick, _ = thick.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(30):
        action = rng.uniform(-1, 1, 1).astype(np.float32)
        obs_thin, r_thin, *_, info_thin = thin.step(action)
        obs_thick, r_thick, *_, info_thick = thick.step(action)
        d_thin, d_thick = thin.unwrapped.physics.data, thick.unwrapped.physics.data
        assert np.array_equal(d_thin.qpos, d_thick.qpos) and np.array_equal(d_thin.qvel, d_thick.qvel)
        assert r_thin == r_thick and info_thin["cost"] == info_thick["cost"]
    # the pole's colour (orange: red channel well above blue) covers more pixels when drawn thick
    orange = lambda obs: int(np.sum((obs[0].astype(int) - obs[2].astype(int)) > 60))  # noqa: E731
    assert orange(obs_thick) > orange(obs_thin) + 20


def _lqr_gain(physics, repeat: int, q_x: float, r: float) -> np.ndarray:
    """Discrete LQR gain of the cartpole linearised upright, its action held for ``repeat`` steps."""
    import mujoco
    import scipy.linalg

    model, data = physics.model.ptr, mujoco.MjData(physics.model.ptr)
    mujoco.mj_forward(model, data)
    a, b = np.zeros((4, 4)), np.zeros((4, 1))
    integrator = model.opt.integrator
    model.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER  # finite differences refuse RK4
    mujoco.mjd_transitionFD(model, data, 1e-6, True, a, b, None, None)
    model.opt.integrator = integrator
    a_held = np.linalg.matrix_power(a, repeat)
    b_held = sum(np.linalg.matrix_power(a, k) @ b for k in range(repeat))
    q, rr = np.diag([q_x, 1.0, 0.1, 0.1]), np.array([[r]])
    p = scipy.linalg.solve_discrete_are(a_held, b_held, q, rr)
    return np.linalg.solve(rr + b_held.T @ p @ b_held, b_held.T @ p @ a_held)[0]


def test_tilted_cartpole_constraint_binds_for_careless_balancing_only():
    """Two state-feedback balancers with the same return: one that ignores the cart's position
    exceeds the budget (25 per episode) on average, one that weighs it keeps well within."""
    env = envs.make("dmc-cartpole-tilted")
    u = env.unwrapped
    outcomes = {}
    for label, q_x, r in (("careless", 1.0, 10.0), ("careful", 30.0, 1.0)):
        gain = _lqr_gain(u.physics, u.action_repeat, q_x, r)
        returns, costs = [], []
        for seed in range(20):
            env.reset(seed=seed)
            ret = cost = 0.0
            for _ in range(u.max_episode_steps):
                state = np.concatenate([u.physics.data.qpos, u.physics.data.qvel])
                _, reward, _, _, info = env.step(np.clip(-gain @ state, -1, 1)[None].astype(np.float32))
                ret, cost = ret + reward, cost + info["cost"]
            returns.append(ret)
            costs.append(cost)
        outcomes[label] = np.mean(returns), np.mean(costs), np.mean(np.array(costs) > 25)
    (careless_return, careless_cost, careless_over), (careful_return, careful_cost, _) = outcomes.values()
    assert careless_return > 990 and careful_return > 990 and abs(careless_return - careful_return) < 5
    assert careless_cost > 25 and careless_over >= 0.25
    assert careful_cost < 10


def test_observations_render_fast_overview_keeps_full_quality():
    fast = envs.make("dmc-cartpole-balance")
    full = envs.make("dmc-cartpole-balance", fast_render=False)
    a, b = fast.reset(seed=0)[0], full.reset(seed=0)[0]
    assert a.shape == b.shape and not np.array_equal(a, b)  # no shadows, reflections, multisampling
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 20  # the same scene
    np.testing.assert_array_equal(fast.unwrapped.render_overview(64), full.unwrapped.render_overview(64))


def test_cameras_rebound_to_a_rebuilt_model_render_what_new_cameras_render():
    from envs.rendering import Camera

    env = envs.make("sg-point-goal1", seed=0)
    u = env.unwrapped
    first_model = u.model
    u.render_overview(64)
    obs, _ = env.reset(seed=5)  # Safety-Gymnasium rebuilds its model: the cameras are re-bound, not re-made
    assert u.model is not first_model
    for fast, frame in ((True, obs.transpose(1, 2, 0)), (False, u.render_overview(64))):
        fresh = Camera(u.model, 64, 64, "vision" if fast else "fixedfar", fast=fast)
        np.testing.assert_array_equal(frame, fresh.render(u._builder.task.data))
        fresh.close()


def test_closing_a_camera_leaves_the_others_rendering():
    from envs.rendering import Camera

    env = envs.make("sg-point-goal1")
    u = env.unwrapped
    first = env.reset(seed=0)[0]
    model, data = u.mujoco_handles()
    other = Camera(model, 64, 64, "vision", fast=True)
    other.render(data)
    env.reset(seed=1)  # the env's camera's GL context is current when the other camera is closed
    other.close()  # once freed its GL objects in that context: the env's camera then rendered garbage
    np.testing.assert_array_equal(env.reset(seed=0)[0], first)


def test_image_size_larger_than_the_default_framebuffer():
    env = envs.make("dmc-cartpole-balance", image_size=800)
    assert env.reset(seed=0)[0].shape == (3, 800, 800)


def test_episode_lengths_follow_the_suites():
    walker = envs.make("dmc-walker-walk", time_limit=5)
    walker.reset(seed=0)
    for _ in range(5):
        walker.step(walker.action_space.sample())
    assert walker.unwrapped.physics.data.time == pytest.approx(5 * 2 * 0.025)  # 25 ms control steps
    cartpole = envs.make("dmc-cartpole-tilted")
    assert (cartpole.unwrapped.action_repeat, cartpole.unwrapped.max_episode_steps) == (8, 125)


def test_time_limit_truncates():
    env = envs.make("dmc-cartpole-balance", time_limit=4)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[3] for _ in range(4)]
    assert flags == [False, False, False, True]


# ---------------------------------------------------------------- shifts
def _model(name):
    env = envs.make(name, seed=0)
    env.reset(seed=0)
    return env.unwrapped


def _named(model, kind, name):
    return getattr(model, kind)(name)


def _count(model, prefix):
    return sum(model.body(i).name.startswith(prefix) for i in range(model.nbody))


def _geoms_of_type(model, prefix):
    import mujoco

    return {int(model.geom_type[model.body(i).geomadr[0]]) for i in range(model.nbody)
            if model.body(i).name.startswith(prefix)} or {mujoco.mjtGeom.mjGEOM_NONE}


def _check_cartpole(src, tgt, field):
    s, t = src.physics.model, tgt.physics.model
    if field == "pole_length":
        assert t.geom("pole_1").size[1] == pytest.approx(1.6 * s.geom("pole_1").size[1])
    elif field == "pole_mass":
        assert (s.body("pole_1").mass[0], t.body("pole_1").mass[0]) == pytest.approx((0.1, 0.4))
    elif field == "gravity":
        assert (s.opt.gravity[2], t.opt.gravity[2]) == pytest.approx((-9.81, -15.0))
    elif field == "gear":
        assert (s.actuator_gear[0, 0], t.actuator_gear[0, 0]) == pytest.approx((10.0, 6.0))
    elif field == "colours":
        assert not np.allclose(s.mat_rgba[s.material("self").id], t.mat_rgba[t.material("self").id])
        assert not np.allclose(s.light_diffuse, t.light_diffuse)


def _check_walker(src, tgt, field):
    s, t = src.physics.model, tgt.physics.model
    if field == "torso":
        assert t.body("torso").mass[0] == pytest.approx(1.5 * s.body("torso").mass[0])
    else:
        assert (s.geom("floor").friction[0], t.geom("floor").friction[0]) == pytest.approx((0.7, 0.2))


def _check_sg(src, tgt, field):
    import mujoco

    s, t = src.model, tgt.model
    if field == "level":
        assert (_count(s, "hazard"), _count(t, "hazard")) == (8, 10)
        assert (_count(s, "vase"), _count(t, "vase")) == (1, 10)
    elif field == "pillars":
        assert (_count(s, "hazard"), _count(t, "hazard")) == (8, 0)
        assert (_count(s, "pillar"), _count(t, "pillar")) == (0, 8)
        assert _geoms_of_type(s, "hazard") == _geoms_of_type(t, "pillar") == {int(mujoco.mjtGeom.mjGEOM_CYLINDER)}
        assert t.geom_size[t.body("pillar0").geomadr[0]][1] > 10 * s.geom_size[s.body("hazard0").geomadr[0]][1]
    elif field == "colour":
        gs, gt = s.body("hazard0").geomadr[0], t.body("hazard0").geomadr[0]
        assert not np.allclose(s.geom_rgba[gs], t.geom_rgba[gt])
    elif field == "light":
        assert t.light_diffuse.max() < s.light_diffuse.max()
    elif field == "mass":
        assert t.body("agent").mass[0] == pytest.approx(3 * s.body("agent").mass[0])
    elif field == "gear":
        np.testing.assert_allclose(t.actuator_gear[:, 0], 0.5 * s.actuator_gear[:, 0])


SHIFT_CHECKS = {
    "cartpole-long-pole": (_check_cartpole, "pole_length"),
    "cartpole-heavy-pole": (_check_cartpole, "pole_mass"),
    "cartpole-gravity": (_check_cartpole, "gravity"),
    "cartpole-weak-motor": (_check_cartpole, "gear"),
    "cartpole-colours": (_check_cartpole, "colours"),
    "tilted-gravity": (_check_cartpole, "gravity"),
    "tilted-weak-motor": (_check_cartpole, "gear"),
    "tilted-heavy-pole": (_check_cartpole, "pole_mass"),
    "tilted-colours": (_check_cartpole, "colours"),
    "walker-heavy-torso": (_check_walker, "torso"),
    "walker-slippery": (_check_walker, "friction"),
    "point-goal-level": (_check_sg, "level"),
    "car-goal-level": (_check_sg, "level"),
    "point-hazards-to-pillars": (_check_sg, "pillars"),
    "point-hazard-colour": (_check_sg, "colour"),
    "point-dim-light": (_check_sg, "light"),
    "point-heavy-robot": (_check_sg, "mass"),
    "car-weak-motor": (_check_sg, "gear"),
}


def test_every_shift_is_checked_and_well_formed():
    assert set(SHIFT_CHECKS) | {"toy-hazard-colour"} == set(envs.SHIFTS)
    assert len([s for s in envs.SHIFTS if not s.startswith("toy")]) >= 8
    assert {s.kind for s in envs.SHIFTS.values()} == {"layout", "shape", "appearance", "dynamics"}
    for shift in envs.SHIFTS.values():
        assert shift.source in envs.names() and shift.target in envs.names() and shift.description


@pytest.mark.parametrize("shift", sorted(SHIFT_CHECKS))
def test_shift_target_differs_in_what_it_claims(shift):
    check, field = SHIFT_CHECKS[shift]
    check(_model(envs.SHIFTS[shift].source), _model(envs.SHIFTS[shift].target), field)


def test_toy_shift_changes_the_hazard_colour():
    src, tgt = (envs.make(envs.SHIFTS["toy-hazard-colour"].__getattribute__(side)) for side in ("source", "target"))
    assert not np.array_equal(src.unwrapped.hazard_color, tgt.unwrapped.hazard_color)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("call, message", [
    (lambda: envs.make("sg-point-goal9"), "unknown env 'sg-point-goal9'; valid: dmc-cartpole-balance"),
    (lambda: envs.make("dmc-cartpole-balance", colour=1), "unknown override 'colour' for env"),
    (lambda: envs.make("dmc-cartpole-balance", pole_length="long"), "'pole_length' for env 'dmc-cartpole-balance' "
                                                                     "expects float"),
    (lambda: envs.make("dmc-cartpole-balance", gravity=-1.0), "'gravity' for env 'dmc-cartpole-balance' must be > 0"),
    (lambda: envs.make("sg-point-goal1", hazards_num=99), "'hazards_num' for env 'sg-point-goal1' must be in"),
    (lambda: envs.make("sg-point-goal1", hazards_rgba=(1, 0, 0)), "must be 4 numbers in [0, 1]"),
    (lambda: envs.make("dmc-walker-walk", image_size=8), "'image_size' for env 'dmc-walker-walk' must be in"),
    (lambda: envs.make("dmc-cartpole-tilted", pole_visual_radius=0.5),
     "'pole_visual_radius' for env 'dmc-cartpole-tilted' must be in (0, 0.3]"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(InputError) as err:
        call()
    assert message in str(err.value)


@pytest.mark.parametrize("backend", ["nonsense", "osmesa"])
def test_missing_rendering_backend_is_a_clear_error(backend):
    import os

    code = "import envs; envs.make('dmc-cartpole-balance')"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "MUJOCO_GL": backend})
    if backend == "osmesa" and result.returncode == 0:
        pytest.skip("OSMesa is installed on this machine")
    assert result.returncode != 0
    assert f"cannot start the MuJoCo rendering backend MUJOCO_GL='{backend}'" in result.stderr
    assert "Valid backends: egl, osmesa, glfw" in result.stderr


def test_mujoco_imported_before_envs_with_another_backend_is_a_clear_error():
    import os

    code = "import mujoco, envs; envs.make('dmc-cartpole-balance')"
    environ = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}  # mujoco then picks glfw
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=environ)
    assert result.returncode != 0
    assert "mujoco was imported with the 'glfw' backend before envs set MUJOCO_GL" in result.stderr


def test_exit_is_quiet_whatever_order_the_families_are_made_in():
    # dm_control registers an eglTerminate exit hook when first imported, after the first camera
    code = ("import envs\nfor name in ('sg-point-goal1', 'dmc-cartpole-tilted', 'toy-reach'):\n"
            "    envs.make(name).reset(seed=0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == ""


def test_list_command_prints_envs_and_shifts():
    result = subprocess.run([sys.executable, "-m", "envs", "--list"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stderr == ""
    for name in envs.names() + list(envs.SHIFTS):
        assert name in result.stdout


def test_vectorised_hazard_cost_equals_safety_gymnasiums_own():
    from envs.safety_gym_compat import import_safety_gymnasium
    from envs.safety_gym_speedups import hazard_cost

    import_safety_gymnasium()  # Python 3.11 needs its fix before any safety_gymnasium import
    from safety_gymnasium.assets.geoms import Hazards

    env = envs.make("sg-point-goal1", seed=0)
    rng = np.random.default_rng(0)
    inside = 0
    for episode in range(2):
        env.reset(seed=episode)
        task = env.unwrapped._builder.task
        hazards, data = task.hazards, task.data
        assert hazards.cal_cost.func is hazard_cost  # the task calls ours, compared with theirs below
        agent = task.model.body("agent").id
        for _ in range(40):
            env.step(env.action_space.sample())
            # also put the robot at random offsets from a hazard centre, inside and outside the disc
            centre = data.body(f"hazard{rng.integers(hazards.num)}").xpos.copy()
            for offset in (np.zeros(2), rng.uniform(-0.3, 0.3, 2)):
                data.xpos[agent, :2] = centre[:2] + offset
                ours, theirs = hazards.cal_cost(), Hazards.cal_cost(hazards)
                assert ours == theirs
                inside += theirs["cost_hazards"] > 0
    assert inside >= 40  # the comparison covered costly states, not only zeros


def test_recolour_blends_the_look_towards_the_recoloured_envs_and_nothing_else():
    """recolour=t puts body colour, floor colour and light t of the way from the env's to the recoloured
    env's (checked on the MuJoCo models, against a blend computed here); 0 and 1 are the two envs."""
    def look(env):
        m = env.unwrapped.physics.model
        return {"body": m.mat_rgba[m.material("self").id].copy(), "floor": m.mat_rgba[m.material("grid").id].copy(),
                "light": m.light_diffuse.copy(), "mass": m.body("pole_1").mass.copy(), "gear": m.actuator_gear.copy()}

    nominal = look(envs.make("dmc-cartpole-tilted", seed=0))
    target = look(envs.make("dmc-cartpole-tilted-recoloured", seed=0))
    assert not np.allclose(nominal["body"], target["body"]) and not np.allclose(nominal["floor"], target["floor"])
    for t in (0.0, 0.3, 1.0):
        blended = look(envs.make("dmc-cartpole-tilted", seed=0, recolour=t))
        for key in ("body", "floor", "light"):
            np.testing.assert_allclose(blended[key], (1 - t) * nominal[key] + t * target[key], rtol=0, atol=1e-6)
        for key in ("mass", "gear"):
            np.testing.assert_array_equal(blended[key], nominal[key])
    with pytest.raises(InputError, match="'recolour'.*must be in \\[0, 1\\]"):
        envs.make("dmc-cartpole-tilted", seed=0, recolour=1.5)
