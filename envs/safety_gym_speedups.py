"""Safety-Gymnasium's per-step hot spots, rewritten to compute the same numbers with less Python.

Safety-Gymnasium 1.0.0 spends from half as much to twice as much time per step in its own Python
as MuJoCo spends simulating: a Python loop over the physics substeps, a second ``mj_forward`` before the cost, body
lookups by name for every distance, and a loop over contacts comparing geom names for every
contact cost. Each function here replaces one of its methods (named in its docstring) and returns
the same values: the same floating-point operations on the same numbers, sums in the same order.
tests/test_safety_gym_speedups.py steps these and the stock code side by side and finds the same
rewards, costs, terminations, goal placements, states and images.

Ids and geom masks are cached per compiled model: Safety-Gymnasium recompiles it at every reset.
"""

from __future__ import annotations

import functools
import math

import mujoco
import numpy as np


def per_model(owner, key, model, compute):
    """``compute(model)``, cached on ``owner`` under ``key`` until ``model`` is replaced by a recompiled one."""
    cache = owner.__dict__.setdefault("_per_model", {})
    hit = cache.get(key)
    if hit is None or hit[0] is not model:
        hit = cache[key] = (model, compute(model))
    return hit[1]


def body_ids(owner, model, names: tuple[str, ...]) -> list[int]:
    """The ids of the bodies ``names`` in ``model`` (``model.body(name).id``), cached per model."""
    return per_model(owner, names, model, lambda m: [m.body(name).id for name in names])


def xy_distance(xpos: np.ndarray, a: int, b: int) -> float:
    """Planar distance between bodies ``a`` and ``b``: ``BaseAgent.dist_xy``'s np.sqrt(np.sum(np.square(d)))
    as the same IEEE operations (numpy sums two terms left to right; both square roots are exact-rounded)."""
    dx, dy = xpos[a, 0] - xpos[b, 0], xpos[a, 1] - xpos[b, 1]
    return math.sqrt(dx * dx + dy * dy)


def xyz_distance(xpos: np.ndarray, a: int, b: int) -> float:
    """3-D distance between bodies ``a`` and ``b``, as ``PushLevel0.dist_box`` computes it (three terms summed
    left to right, as numpy sums three)."""
    dx, dy, dz = xpos[a] - xpos[b]
    return math.sqrt(dx * dx + dy * dy + dz * dz)


def added(unit: float, times: int):
    """``0 + unit + unit + ...`` with ``times`` terms: a cost accumulated per contact, term by term as
    Safety-Gymnasium adds it (an int 0 when no term is added, as there)."""
    total = 0
    for _ in range(times):
        total += unit
    return total


def agent_contacts(owner, name: str, exact: bool = False) -> int:
    """How many contacts touch a robot geom and a geom named ``name`` (or starting with it unless ``exact``).

    Safety-Gymnasium's contact costs loop over ``data.contact`` comparing the two geom names of each
    contact; here one boolean mask per name test, indexed by all contacts' geom ids at once. A contact
    counts when one of its geoms passes the name test and one is the robot's, as there."""
    engine = owner.agent.engine
    model = engine.model
    robot = owner.agent.body_info.geom_names

    def masks(m):
        names = [m.geom(i).name for i in range(m.ngeom)]
        matches = [n == name if exact else n.startswith(name) for n in names]
        return np.array([n in robot for n in names]), np.array(matches, dtype=bool)

    is_robot, is_named = per_model(owner, ("contacts", name, exact), model, masks)
    pairs = engine.data.contact.geom  # (ncon, 2) geom ids
    return int(np.count_nonzero(is_robot[pairs].any(axis=1) & is_named[pairs].any(axis=1)))


# ---- obstacles' costs and moves (each replaces one method of one obstacle instance)
def hazard_cost(hazards) -> dict:
    """``Hazards.cal_cost``: ``cost * (size - distance)`` summed over the hazards the robot is inside, in
    hazard order, with the positions read at once by cached body ids and the distances as in xy_distance."""
    if not hazards.is_constrained:
        return {}
    model, data = hazards.engine.model, hazards.engine.data
    bodies = per_model(hazards, "bodies", model,  # the robot, then the hazards
                       lambda m: np.array([m.body("agent").id] + [m.body(f"hazard{i}").id for i in range(hazards.num)]))
    (x, y), *centres = data.xpos[bodies, :2].tolist()
    cost = 0
    for cx, cy in centres:
        dx, dy = cx - x, cy - y
        distance = math.sqrt(dx * dx + dy * dy)
        if distance <= hazards.size:
            cost += hazards.cost * (hazards.size - distance)
    return {"cost_hazards": cost}


def pillar_cost(pillars) -> dict:
    """``Pillars.cal_cost``: ``cost`` per contact between the robot and a pillar."""
    if not pillars.is_constrained:
        return {}
    return {"cost_pillars": added(pillars.cost, agent_contacts(pillars, "pillar"))}


def gremlin_cost(gremlins) -> dict:
    """``Gremlins.cal_cost``: ``contact_cost`` per contact between the robot and a gremlin."""
    if not gremlins.is_constrained:
        return {}
    return {"cost_gremlins": added(gremlins.contact_cost, agent_contacts(gremlins, "gremlin"))}


def button_cost(buttons) -> dict:
    """``Buttons.cal_cost``: while the button timer is 0, ``cost`` per contact between the robot and a
    button other than the goal one (contacts with any button minus those with the goal button)."""
    if buttons.goal_button is None:
        return type(buttons).cal_cost(buttons)  # its own error
    if not buttons.is_constrained or buttons.timer != 0:
        return {}
    wrong = agent_contacts(buttons, "button") - agent_contacts(buttons, f"button{buttons.goal_button}", exact=True)
    return {"cost_buttons": added(buttons.cost, wrong)}


def vase_cost(vases) -> dict:
    """``Vases.cal_cost``: ``contact_cost`` per robot contact, then ``velocity_cost`` times each vase's
    speed over a threshold; the speeds as there (``get_body_xvelp``: body Jacobian times qvel), with
    cached body ids and one Jacobian buffer."""
    if not vases.is_constrained or vases.displace_cost:  # {}, or a displacement cost: off in every task
        return type(vases).cal_cost(vases)                 # (its code would fail: it reads no data)
    cost = {"cost_vases_contact": added(vases.contact_cost, agent_contacts(vases, "vase")) if vases.contact_cost else 0}
    if vases.velocity_cost:
        model, data = vases.engine.model, vases.engine.data
        jacobian = np.zeros((3, model.nv))
        cost["cost_vases_velocity"] = 0
        for body in per_model(vases, "bodies", model, lambda m: [m.body(f"vase{i}").id for i in range(vases.num)]):
            mujoco.mj_jacBody(model, data, jacobian, None, body)  # overwrites every entry
            vx, vy, vz = np.dot(jacobian, data.qvel)
            speed = math.sqrt(vx * vx + vy * vy + vz * vz)
            if speed >= vases.velocity_threshold:
                cost["cost_vases_velocity"] += speed * vases.velocity_cost
    return cost


def gremlin_move(gremlins) -> None:
    """``Gremlins.move``: every gremlin's mocap to ``travel * (sin t, cos t)`` at height ``size``, by
    mocap ids cached per model. (Safety-Gymnasium sends all gremlins to that one point; kept.)"""
    model, data = gremlins.engine.model, gremlins.engine.data
    mocaps = per_model(gremlins, "mocaps", model,
                       lambda m: m.body_mocapid[[m.body(f"gremlin{i}mocap").id for i in range(gremlins.num)]])
    phase = float(data.time)
    data.mocap_pos[mocaps] = (np.sin(phase) * gremlins.travel, np.cos(phase) * gremlins.travel, gremlins.size)


def speed_up_obstacles(task) -> None:
    """Point the task's obstacles' ``cal_cost`` (and the gremlins' ``move``) at the functions above."""
    from safety_gymnasium.assets.free_geoms import Vases
    from safety_gymnasium.assets.geoms import Buttons, Hazards, Pillars
    from safety_gymnasium.assets.mocaps import Gremlins

    costs = {Hazards: hazard_cost, Pillars: pillar_cost, Gremlins: gremlin_cost, Buttons: button_cost,
             Vases: vase_cost}
    for obstacle in task._obstacles:
        if type(obstacle) in costs:
            obstacle.cal_cost = functools.partial(costs[type(obstacle)], obstacle)
        if type(obstacle) is Gremlins:
            obstacle.move = functools.partial(gremlin_move, obstacle)


# ---- the task's own per-step methods
class FastTask:
    """Mixed in before a Safety-Gymnasium task class. Observations are pixels here, so the task's vector
    observation (lidars, compasses; no side effects) is not computed."""

    _forwarded = False  # set once simulation_forward has run mj_forward on the new state; cleared by the cost

    def obs(self):
        return None

    def simulation_forward(self, action: np.ndarray) -> bool:
        """``Underlying.simulation_forward``: the action, the frame skip draw, the physics substeps (all in one
        ``mj_step`` call unless mocaps move between them), then ``mj_forward`` on the new state."""
        if self.debug or self.action_noise:
            return super().simulation_forward(action)  # keyboard control or action noise: not used here
        self.agent.apply_action(action)
        # drawn even when deterministic (frameskip_binom_p = 1): the draw advances the random state that
        # later goal placements use
        substeps = self.random_generator.binomial(self.sim_conf.frameskip_binom_n, self.sim_conf.frameskip_binom_p)
        model, data = self.model, self.data
        if self._mocaps:
            for _ in range(substeps):
                for mocap in self._mocaps.values():
                    mocap.move()
                mujoco.mj_step(model, data)
        elif substeps:
            mujoco.mj_step(model, data, nstep=substeps)
        mujoco.mj_forward(model, data)
        self._forwarded = True
        return False  # Safety-Gymnasium's MujocoException: mujoco's bindings never raise it

    def calculate_cost(self) -> dict:
        """``BaseTask.calculate_cost``: each obstacle's cost, then their sum. Its ``mj_forward`` is skipped
        right after simulation_forward's: Builder.step only computes the reward in between, which moves
        nothing, and mj_forward on an unchanged state recomputes the same data."""
        forwarded, self._forwarded = self._forwarded, False
        if self._is_load_static_geoms:  # contact costs with static scenery: not in the navigation tasks
            return super().calculate_cost()
        if not forwarded:
            mujoco.mj_forward(self.model, self.data)
        cost = {}
        for obstacle in self._obstacles:
            cost.update(obstacle.cal_cost())
        cost["cost_sum"] = sum(value for key, value in cost.items() if key.startswith("cost_"))
        return cost

    def dist_goal(self) -> float:
        """``BaseTask.dist_goal``: planar distance from the robot to the goal."""
        model = self.model
        agent, goal = body_ids(self, model, ("agent", "goal"))
        return xy_distance(self.data.xpos, goal, agent)


class FastButtonTask(FastTask):
    @property
    def goal_achieved(self) -> bool:
        """``ButtonLevel0.goal_achieved``: the robot touches the goal button."""
        return agent_contacts(self, f"button{self.buttons.goal_button}", exact=True) > 0


class FastPushTask(FastTask):
    def dist_box(self) -> float:
        """``PushLevel0.dist_box``: 3-D distance from the robot to the box."""
        box, agent = body_ids(self, self.model, ("push_box", "agent"))
        return xyz_distance(self.data.xpos, box, agent)

    def dist_box_goal(self) -> float:
        """``PushLevel0.dist_box_goal``: 3-D distance from the box to the goal."""
        box, goal = body_ids(self, self.model, ("push_box", "goal"))
        return xyz_distance(self.data.xpos, box, goal)


@functools.cache
def fast_task_class(task_class: type) -> type:
    """``task_class`` with the methods above mixed in (under the same name: Safety-Gymnasium reads it)."""
    from safety_gymnasium.tasks.safe_navigation.button.button_level0 import ButtonLevel0
    from safety_gymnasium.tasks.safe_navigation.push.push_level0 import PushLevel0

    mixin = (FastButtonTask if issubclass(task_class, ButtonLevel0)
             else FastPushTask if issubclass(task_class, PushLevel0) else FastTask)
    return type(task_class.__name__, (mixin, task_class), {"__module__": __name__})
