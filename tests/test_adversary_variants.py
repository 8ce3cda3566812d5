"""The adversary's variants (issue: adversaries aimed at the failure modes of the first study): the
``under_budget`` gate, the last policy episode's cost every λ rule keeps, and the four variant
configs (configs/adv-latent-gated, adv-latent-actor, adv-latent-smooth, adv-image-gated) run
source → target end to end on the smoke preset."""

import math
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import envs
from latent_adversary import AdversarialTraining
from latent_adversary.config import GATES, AdversaryConfig, RobustConfig
from latent_adversary.run import make_trainer
from slac import checkpoint, config
from slac.agent_inputs import CleanInputs
from slac.config import AgentConfig
from slac.errors import InputError
from slac.lagrangian import Lagrangian
from slac.learner import build_learner, env_spec
from slac.logger import read_metrics
from slac.run import RunRequest
from tests.test_train import assert_same_run

ROOT = Path(__file__).resolve().parent.parent
ENV, SHIFT = "toy-reach", "toy-hazard-colour"
BUDGET = 25.0  # the stub's episode budget D


# ------------------------------------------------------------------ the λ rules keep the last episode cost
def lagrangian(rule: str, **kw) -> Lagrangian:
    return Lagrangian(AgentConfig(lagrangian=rule, **kw), episode_budget=BUDGET, episode_steps=100)


@pytest.mark.parametrize("rule", ["step", "episode", "pid"])
def test_every_rule_keeps_the_last_policy_episodes_cost(rule):
    lag = lagrangian(rule)
    assert math.isnan(float(lag.previous_cost))  # no policy episode yet
    for cost in (40.0, 3.0, 12.5):
        lag.observe_episode(cost)
        assert float(lag.previous_cost) == cost
    lag.observe_step(7.0)  # step costs do not touch it
    assert float(lag.previous_cost) == 12.5
    assert set(lag.state_dict()) == {"lam", "rho", "integral", "previous_cost"}  # a buffer: checkpoints hold it


def test_step_rule_still_ignores_episode_costs():
    lag = lagrangian("step", init_lagrange=0.3)
    before = (lag.value, float(lag.rho))
    lag.observe_episode(1000.0)
    assert (lag.value, float(lag.rho)) == before


def test_pid_rule_follows_algorithm_2_by_hand():
    """Stooke et al. (2020), Algorithm 2: e = C − D, I ← max(0, I + e), ∂ = max(0, C − C_prev),
    λ = max(0, K_p e + K_i I + K_d ∂), the integral held as K_i I started at λ0, no ∂ at the first episode."""
    kp, ki, kd, lam0 = 0.1, 0.01, 0.05, 0.5
    lag = lagrangian("pid", pid_kp=kp, pid_ki=ki, pid_kd=kd, init_lagrange=lam0)
    costs = [40.0, 10.0, 30.0, 30.0, 60.0]
    # by hand with D = 25:       e     K_i I                ∂      λ
    expected = [2.15,   # ep 1:  15    0.5 + 0.15 = 0.65    —      1.5 + 0.65
                0.0,    # ep 2: −15    0.65 − 0.15 = 0.5    0      max(0, −1.5 + 0.5)
                2.05,   # ep 3:   5    0.55                 20     0.5 + 0.55 + 1.0
                1.1,    # ep 4:   5    0.6                  0      0.5 + 0.6
                5.95]   # ep 5:  35    0.95                 30     3.5 + 0.95 + 1.5
    values = []
    for cost in costs:
        lag.observe_episode(cost)
        values.append(lag.value)
    assert values == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert float(lag.integral) == pytest.approx(0.95, rel=1e-6)


# ------------------------------------------------------------------ the gate
def gated(rule: str = "episode", gate: str = "under_budget", **kw) -> AdversarialTraining:
    cfg = AdversaryConfig(**{"kind": "latent", "epsilon": 0.5, "schedule": "constant", "gate": gate, **kw})
    return AdversarialTraining(cfg, None, SimpleNamespace(lagrangian=lagrangian(rule)))


@pytest.mark.parametrize("rule", ["step", "episode", "pid"])
def test_gate_opens_only_while_the_last_policy_episode_met_the_budget(rule):
    hook = gated(rule)
    lag = hook.agent.lagrangian
    assert not hook.gate_open() and hook.epsilon(10_000) == 0.0  # no policy episode yet
    lag.observe_episode(BUDGET + 0.5)
    assert not hook.gate_open() and hook.epsilon(10_000) == 0.0  # over the budget
    lag.observe_episode(BUDGET)  # at the budget meets it
    assert hook.gate_open() and hook.epsilon(10_000) == 0.5
    lag.observe_episode(0.0)
    assert hook.gate_open()
    lag.observe_episode(BUDGET + 10)  # broken again: the attack backs off
    assert not hook.gate_open() and hook.epsilon(10_000) == 0.0


def test_always_gate_ignores_the_cost_and_keeps_the_schedule():
    hook = gated(gate="always")
    assert hook.gate_open() and hook.epsilon(0) == 0.5  # before any episode
    hook.agent.lagrangian.observe_episode(1e6)
    assert hook.gate_open() and hook.epsilon(0) == 0.5
    ramp = AdversarialTraining(AdversaryConfig(kind="image", epsilon=0.04, schedule="linear", ramp_steps=100),
                               None, None, start_step=50)  # no agent needed: always never reads it
    assert [ramp.epsilon(s) for s in (0, 100, 150)] == pytest.approx([0, 0.02, 0.04])


def test_gated_linear_ramp_counts_from_the_first_update():
    hook = gated(schedule="linear", ramp_steps=100)
    hook.start_step = 50
    assert hook.epsilon(100) == 0.0  # closed
    hook.agent.lagrangian.observe_episode(0.0)
    assert hook.epsilon(100) == pytest.approx(0.25) and hook.epsilon(1000) == 0.5


def test_gate_choices_are_checked():
    assert AdversaryConfig().gate == "always" and GATES == ("always", "under_budget")
    with pytest.raises(InputError, match="adversary.gate.*valid: always, under_budget"):
        config.resolve("smoke", sets=["adversary.kind=latent", "adversary.gate=sometimes"], cls=RobustConfig)


@pytest.fixture(scope="module")
def learner():
    """An untrained smoke model and agent for toy-reach, and a batch of images and actions."""
    cfg = config.resolve("smoke", sets=[f"env={ENV}"], cls=RobustConfig)
    torch.manual_seed(0)
    model, agent = build_learner(cfg, env_spec(envs.make(ENV)), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, cfg.model.sequence_length + 1, 3, 64, 64, generator=g)
    actions = torch.rand(6, cfg.model.sequence_length, 2, generator=g) * 2 - 1
    return cfg, model, agent, images, actions


def batch_of(images, actions):
    zeros = torch.zeros(actions.shape[:2])
    return {"images": images, "action": actions, "reward": zeros, "cost": zeros, "terminated": zeros}


@pytest.mark.parametrize("kind", ["latent", "image"])
def test_closed_gate_is_exactly_the_clean_path_and_an_open_one_attacks(learner, kind):
    cfg, model, agent, images, actions = learner
    agent.lagrangian.previous_cost.fill_(float("nan"))
    adversary = AdversaryConfig(kind=kind, gate="under_budget", epsilon=0.5 if kind == "latent" else 0.03,
                                steps=2, schedule="constant", perturb_model=kind == "image")
    hook = AdversarialTraining(adversary, model, agent)
    budget = agent.lagrangian.budget

    def inputs(source):
        torch.manual_seed(1)
        return source.agent_batch(batch_of(images, actions), step=100, transitions=2)

    clean, _ = inputs(CleanInputs(cfg, model, agent))
    for cost in (float("nan"), budget + 1):  # before any policy episode; after one over the budget
        if not math.isnan(cost):
            agent.lagrangian.observe_episode(cost)
        rows, metrics = inputs(hook)
        assert torch.equal(rows.z, clean.z) and torch.equal(rows.next_z, clean.next_z)
        assert rows.actor_z is None and not rows.extra_losses
        assert metrics == {"adversary/epsilon": 0.0, "adversary/gate_open": 0.0}
        model_images, model_metrics = hook.model_images(images, actions, step=100)
        assert model_images is images and model_metrics == {}  # the model's images stay clean too

    agent.lagrangian.observe_episode(budget)  # met: the attack runs
    rows, metrics = inputs(hook)
    n = round(adversary.fraction * images.shape[0]) * 2  # the perturbed sequences' rows
    assert not torch.equal(rows.z[:n], clean.z[:n]) and torch.equal(rows.z[n:], clean.z[n:])
    assert metrics["adversary/gate_open"] == 1.0 and metrics["adversary/epsilon"] > 0
    if kind == "image":
        assert not torch.equal(hook.model_images(images, actions, step=100)[0], images)

    always = AdversarialTraining(replace_gate(adversary, "always"), model, agent)
    rows_always, metrics_always = inputs(always)  # an open gate is the ungated adversary, bit for bit
    assert torch.equal(rows_always.z, rows.z) and "adversary/gate_open" not in metrics_always
    assert metrics_always.keys() == metrics.keys() - {"adversary/gate_open"}
    agent.lagrangian.previous_cost.fill_(float("nan"))


def replace_gate(cfg: AdversaryConfig, gate: str) -> AdversaryConfig:
    return AdversaryConfig(**{**vars(cfg), "gate": gate})


# ------------------------------------------------------------------ the variant configs end to end
# smoke, cut to the fewest steps and updates that reach an attack: one random episode (steps 0–50,
# then 2 model pre-training updates), one policy episode (steps 50–100: the gate can open at its
# end), a burst of 5 model and 5 agent updates every 25 steps (50, 75, 100, ...), a log record per
# burst, one evaluation episode
FAST = ["train.initial_collection_steps=50", "train.initial_learning_steps=2", "train.update_every=25",
        "train.updates_per_step=0.2", "train.log_interval=25", "train.eval_episodes=1"]
OPEN = ["agent.budget=1000"]  # episode budget 50: the most a 50-step toy-reach episode can cost (1 per step)


def source(out: Path, overlay: str, steps: int, sets=()):
    """train.py --phase source --preset smoke --config configs/OVERLAY --env toy-reach --steps N --out OUT"""
    return make_trainer(RunRequest(phase="source", env=ENV, preset="smoke", steps=steps, seed=3, out=str(out),
                                   config_files=[str(ROOT / "configs" / overlay)], sets=[*FAST, *sets]),
                        progress=False)


@pytest.mark.parametrize("overlay, steps, sets", [
    ("adv-latent-gated.yaml", 100, OPEN),
    ("adv-latent-actor.yaml", 100, OPEN),
    ("adv-latent-smooth.yaml", 75, []),  # ungated: the burst at 75 attacks (the ramp is above 0)
    ("adv-image-gated.yaml", 100, OPEN),
])
def test_variant_config_runs_source_then_target(tmp_path, overlay, steps, sets):
    src = tmp_path / "source"
    trainer = source(src, overlay, steps, sets)
    assert trainer.cfg.adversary.kind != "none"
    trainer.run()
    records = read_metrics(src / "metrics.jsonl")
    attacked = [r for r in records if r.get("adversary/epsilon", 0) > 0]
    assert attacked and all("adversary/success" in r for r in attacked), "the attack never ran"
    if trainer.cfg.adversary.gate == "under_budget":
        opened = [r["adversary/gate_open"] for r in records if "adversary/gate_open" in r]
        assert opened[0] == 0 and opened[-1] == 1, opened  # closed before the policy episode, then open
        assert all(r["adversary/gate_open"] == 1 for r in attacked)  # the attack ran only through the gate
    if trainer.cfg.adversary.smoothness_coef > 0:
        assert {"loss/actor_penalty", "loss/cost_critic_penalty"} <= set().union(*records)
    state = checkpoint.load(src)
    assert state["counters"]["updates"] > 0

    # train.py --phase target --checkpoint SRC --shift toy-hazard-colour --steps 50 --out TARGET
    target = make_trainer(RunRequest(phase="target", checkpoint=str(src), shift=SHIFT, steps=50,
                                     out=str(tmp_path / "target")), progress=False)
    assert target.cfg.adversary.kind == "none" and target.cfg.env == envs.SHIFTS[SHIFT].target
    target.run()
    assert checkpoint.load(tmp_path / "target")["counters"]["updates"] > 0


def test_gated_run_resumed_after_the_gate_opened_is_bitwise_the_straight_run(tmp_path):
    """Stopped at step 110 (the gate opened at 100), resumed: the burst at 125 (no episode ends
    between) attacks only if the gate reads the last policy episode's cost from the checkpoint."""
    straight = tmp_path / "straight"
    source(straight, "adv-latent-gated.yaml", 125, OPEN).run()
    out = tmp_path / "run"
    trainer = source(out, "adv-latent-gated.yaml", 125, OPEN)
    env_step = trainer.env.step

    def step_then_interrupt(action):
        if trainer.counters["step"] == 109:
            trainer.request_stop(signal.SIGTERM)
        return env_step(action)

    trainer.env.step = step_then_interrupt
    trainer.run()
    assert checkpoint.load(out)["counters"]["step"] == 110
    make_trainer(RunRequest(resume=str(out)), progress=False).run()
    assert_same_run(straight, out)  # timings (perf/, *_ms) left out
    last = [r for r in read_metrics(out / "metrics.jsonl") if r["step"] == 125 and "adversary/epsilon" in r]
    assert last and last[0]["adversary/gate_open"] == 1 and last[0]["adversary/epsilon"] > 0
