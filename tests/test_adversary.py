"""latent_adversary/: ball invariants, ε = 0 identity, attacks beat random noise, adversarial training
end to end (source phase with an adversary → target fine-tuning from its checkpoint)."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from latent_adversary import (
    ATTACKS,
    AdversarialTraining,
    attack_image_sequence,
    attack_latent,
    make_online_attack,
)
from latent_adversary.attacks import latent_ball
from latent_adversary.balls import BoxBall, L2Ball, pgd
from latent_adversary.config import AdversaryConfig, RobustConfig
from latent_adversary.objectives import objective_value
from latent_adversary.run import make_trainer as make_robust_trainer
from slac import checkpoint, config
from slac.agent_inputs import CleanInputs
from slac.errors import InputError
from slac.logger import read_metrics
from slac.rollout import LatentPolicy, run_episode
from slac.run import RunRequest, make_trainer

ROOT = Path(__file__).resolve().parent.parent
ENV = "toy-reach"
TOL = 1e-6


def resolve(preset, sets):
    return config.resolve(preset, sets=sets, cls=RobustConfig)


def agent_inputs(hook, images, actions, step, transitions=1):
    """What ``hook.agent_batch`` gives the agent for these images and actions (zero rewards and costs)."""
    zeros = torch.zeros(actions.shape[:2])
    batch = {"images": images, "action": actions, "reward": zeros, "cost": zeros, "terminated": zeros}
    rows, metrics = hook.agent_batch(batch, step, transitions)
    return SimpleNamespace(z=rows.z, next_z=rows.next_z, actor_z=rows.actor_z, penalties=rows.extra_losses,
                           metrics=metrics)


def clean_inputs(model, agent):
    return CleanInputs(SimpleNamespace(agent=agent.cfg), model, agent)


# ------------------------------------------------------------------ balls (property-based)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), epsilon=st.floats(0.0, 0.5), step=st.floats(0.0, 1.0),
       steps=st.integers(1, 4))
def test_pixel_ball_keeps_every_point_within_epsilon_and_in_range(seed, epsilon, step, steps):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 2, 3, 8, 8, generator=g)
    x[0, 0, 0, 0, :4] = torch.tensor([0.0, 1.0, 0.0, 1.0])  # pixels on the range's edges
    ball = BoxBall(x, epsilon, 1.0, low=0.0, high=1.0)
    direction = torch.randn(x.shape, generator=g)
    for point in (ball.random(), ball.step(x, direction, step), ball.project(x + 3 * direction),
                  pgd(ball, lambda v: (v * direction).flatten(1).sum(1), steps, step, random_start=True)):
        assert (point - x).abs().max() <= epsilon + TOL
        assert point.min() >= 0 and point.max() <= 1


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), epsilon=st.floats(0.0, 3.0),
       part=st.sampled_from(["z1", "z2", "both"]), norm=st.sampled_from(["std", "linf", "l2"]))
def test_latent_ball_keeps_every_point_inside_and_other_parts_fixed(seed, epsilon, part, norm):
    g = torch.Generator().manual_seed(seed)
    z1_dim, z2_dim = 3, 5
    z = torch.randn(4, z1_dim + z2_dim, generator=g)
    z1_std, z2_std = torch.rand(4, z1_dim, generator=g) + 0.01, torch.rand(4, z2_dim, generator=g) + 0.01
    ball = latent_ball(z, epsilon, z1_dim, part, norm, z1_std, z2_std)
    direction = torch.randn(z.shape, generator=g)
    for point in (ball.random(), ball.step(z, direction, 0.7), ball.project(z + 5 * direction),
                  pgd(ball, lambda v: (v * direction).sum(1), 3, 0.5, random_start=True)):
        delta = point - z
        if part == "z1":
            assert torch.equal(delta[:, z1_dim:], torch.zeros_like(delta[:, z1_dim:]))
        if part == "z2":
            assert torch.equal(delta[:, :z1_dim], torch.zeros_like(delta[:, :z1_dim]))
        if norm == "l2":
            assert (delta.norm(dim=1) <= epsilon * (1 + 1e-5) + TOL).all()
        else:
            scale = torch.cat([z1_std, z2_std], 1) if norm == "std" else torch.ones_like(z)
            assert (delta.abs() <= epsilon * scale + TOL).all()


def test_l2_projection_is_the_nearest_point_of_the_ball():
    center = torch.zeros(2, 4)
    ball = L2Ball(center, 1.0)
    x = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(ball.project(x), torch.tensor([[0.6, 0.8, 0, 0], [0.1, 0, 0, 0]]))


def test_bad_names_are_clear_errors(learner):
    model, agent, _ = learner
    with pytest.raises(InputError, match="unknown attack 'image-xx'; valid:"):
        make_online_attack("image-xx", 0.1, 1, model, agent)
    with pytest.raises(InputError, match="unknown latent norm 'l1'"):
        latent_ball(torch.zeros(1, 3), 0.1, 1, "both", "l1")
    with pytest.raises(InputError, match="perturb_model"):
        resolve("smoke", sets=["adversary.kind=latent", "adversary.perturb_model=true"])
    with pytest.raises(InputError, match="smoothness_coef > 0"):
        resolve("smoke", sets=["adversary.kind=image", "adversary.train_on=clean"])


# ------------------------------------------------------------------ a briefly trained agent
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The trainer of a finished smoke source run."""
    trainer = make_trainer(RunRequest(phase="source", env=ENV, preset="smoke", seed=4,
                                      out=str(tmp_path_factory.mktemp("adv_learner"))), progress=False)
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def learner(trained):
    """Model and agent after a smoke source run, and a batch of its replay (images, actions)."""
    b = trained._batch(16)
    return trained.model, trained.agent, (b["images"], b["action"])


def _mean_latents(model, images, actions, t=-2):
    with torch.no_grad():
        post = model.filter_sequence(model.encode(images), actions, sample=False)
    return {k: post[k][:, t] for k in ("z1", "z2", "z1_std", "z2_std")} | {
        "z": torch.cat([post["z1"], post["z2"]], -1)[:, t]}


def _moved(objective, agent, z, z_adv):
    with torch.no_grad():
        moved = objective_value(objective, agent, z, z_adv) - objective_value(objective, agent, z, z)
    return moved.mean().item()


@pytest.mark.parametrize("objective", ["mc", "mr", "mad"])
def test_image_attack_moves_its_objective_more_than_random_noise(learner, objective):
    model, agent, (images, actions) = learner
    torch.manual_seed(0)
    epsilon = 0.05
    clean = _mean_latents(model, images, actions)["z"]
    moved = {}
    for random in (False, True):
        adv = attack_image_sequence(model, agent, images, actions, epsilon, objective, steps=5, random=random)
        assert (adv - images).abs().max() <= epsilon + TOL and adv.min() >= 0 and adv.max() <= 1
        assert torch.equal(adv[:, -1], images[:, -1]), "the last frame cannot move z_{S-1}; it stays clean"
        moved[random] = _moved(objective, agent, clean, _mean_latents(model, adv, actions)["z"])
    assert moved[False] > 0 and moved[False] > 2 * abs(moved[True]), moved


@pytest.mark.parametrize("norm", ["std", "linf", "l2"])
@pytest.mark.parametrize("objective", ["mc", "mr", "mad"])
def test_latent_attack_moves_its_objective_more_than_random_noise(learner, objective, norm):
    model, agent, (images, actions) = learner
    torch.manual_seed(0)
    s = _mean_latents(model, images, actions)
    epsilon = {"std": 1.0, "linf": 0.2, "l2": 1.0}[norm]
    moved = {}
    for random in (False, True):
        z_adv = attack_latent(agent, s["z"], epsilon, objective, 5, z1_dim=s["z1"].shape[-1], norm=norm,
                              z1_std=s["z1_std"], z2_std=s["z2_std"], random=random)
        moved[random] = _moved(objective, agent, s["z"], z_adv)
    assert moved[False] > 0 and moved[False] > 2 * abs(moved[True]), moved


def test_epsilon_zero_is_exactly_the_identity(learner):
    model, agent, (images, actions) = learner
    s = _mean_latents(model, images, actions)
    for objective in ("mc", "mr", "mad"):
        for random in (False, True):
            assert torch.equal(attack_image_sequence(model, agent, images, actions, 0.0, objective, 3,
                                                     random=random), images)
            for norm in ("std", "linf", "l2"):
                z_adv = attack_latent(agent, s["z"], 0.0, objective, 3, z1_dim=s["z1"].shape[-1], norm=norm,
                                      z1_std=s["z1_std"], z2_std=s["z2_std"], random=random)
                assert torch.equal(z_adv, s["z"])
    for kind in ("image", "random", "latent"):  # the training hook gives back the unattacked latents
        hook = AdversarialTraining(AdversaryConfig(kind=kind, epsilon=0.0), model, agent)
        torch.manual_seed(1)
        x = agent_inputs(hook, images, actions, step=10)
        torch.manual_seed(1)
        z = model.latents(images, actions)
        assert torch.equal(x.z, z[:, -2]) and torch.equal(x.next_z, z[:, -1])


def test_agent_inputs_are_the_last_k_transitions_of_each_sequence_in_order(learner):
    model, agent, (images, actions) = learner
    torch.manual_seed(1)
    x = agent_inputs(clean_inputs(model, agent), images, actions, step=10, transitions=3)
    torch.manual_seed(1)
    z = model.latents(images, actions)  # (B, S+1, L)
    B, S = actions.shape[:2]
    assert x.z.shape == (B * 3, z.shape[-1])
    for b in (0, B - 1):  # row b·k + j is (z_t, z_{t+1}) of sequence b with t = S-3+j
        for j in range(3):
            t = S - 3 + j
            assert torch.equal(x.z[b * 3 + j], z[b, t]) and torch.equal(x.next_z[b * 3 + j], z[b, t + 1])


def test_mean_latent_input_gives_the_agent_the_filters_means(learner, monkeypatch):
    model, agent, (images, actions) = learner
    monkeypatch.setattr(agent.cfg, "latent_input", "mean")
    x = agent_inputs(clean_inputs(model, agent), images, actions, 0, 2)
    with torch.no_grad():
        post = model.filter_sequence(model.encode(images), actions, sample=False)
    z = torch.cat([post["z1"], post["z2"]], dim=-1)
    assert torch.equal(post["z1"], post["z1_mean"])
    assert torch.equal(x.z, z[:, -3:-1].flatten(0, 1)) and torch.equal(x.next_z, z[:, -2:].flatten(0, 1))
    policy = LatentPolicy(model, agent, torch.device("cpu"), deterministic=False)  # acting stochastically
    policy.reset(images[0, 0].mul(255).round().to(torch.uint8).numpy())
    policy.observe(policy.act(), images[0, 1].mul(255).round().to(torch.uint8).numpy())
    assert torch.equal(policy.state["z1"], policy.state["z1_mean"])  # the filter did not draw
    monkeypatch.setattr(agent.cfg, "latent_input", "sample")
    policy = LatentPolicy(model, agent, torch.device("cpu"), deterministic=False)
    policy.reset(images[0, 0].mul(255).round().to(torch.uint8).numpy())
    assert not torch.equal(policy.state["z1"], policy.state["z1_mean"])


def test_trainer_hands_the_agent_each_transitions_latents_with_its_own_action_reward_and_cost(trained, monkeypatch):
    k, seen = 3, {}
    monkeypatch.setattr(trained.cfg.agent, "sequence_transitions", k)
    monkeypatch.setattr(trained.cfg.agent, "batch_size", 5)
    attacked = AdversaryConfig(kind="latent", schedule="constant", epsilon=0.5)  # ε > 0: the attacked path
    monkeypatch.setattr(trained, "inputs", AdversarialTraining(attacked, trained.model, trained.agent))
    monkeypatch.setattr(trained.agent, "update", lambda batch: seen.update(batch=batch) or {})
    b = trained._batch(5)
    monkeypatch.setattr(trained, "_batch", lambda size: b)  # one fixed batch
    trained.update_agent()
    rows = seen["batch"]
    z, action, reward, cost, next_z, terminated = (rows.z, rows.action, rows.reward, rows.cost, rows.next_z,
                                                   rows.terminated)
    assert z.shape[0] == next_z.shape[0] == 5 * k
    for row in range(5 * k):  # row b·k + j: sequence b's transition t = S-k+j
        seq, t = divmod(row, k)
        t += b["action"].shape[1] - k
        assert torch.equal(action[row], b["action"][seq, t]) and reward[row] == b["reward"][seq, t]
        assert cost[row] == b["cost"][seq, t] and terminated[row] == b["terminated"][seq, t]


@pytest.mark.parametrize("kind", ["image", "random", "latent"])
@pytest.mark.parametrize("targets", ["clean", "perturbed"])
@pytest.mark.parametrize("k", [1, 3])
def test_training_hook_perturbs_its_share_only_with_the_same_posterior_noise(learner, kind, targets, k):
    model, agent, (images, actions) = learner
    cfg = AdversaryConfig(kind=kind, epsilon=0.05 if kind != "latent" else 1.0, steps=2, fraction=0.25,
                          targets=targets, smoothness_coef=0.1)
    hook = AdversarialTraining(cfg, model, agent)
    torch.manual_seed(3)
    x = agent_inputs(hook, images, actions, step=0, transitions=k)
    torch.manual_seed(3)
    z = model.latents(images, actions)
    z_t, z_next = z[:, -k - 1:-1].flatten(0, 1), z[:, -k:].flatten(0, 1)  # rows b·k + j
    m = round(0.25 * images.shape[0]) * k  # the perturbed sequences' rows
    assert torch.equal(x.z[m:], z_t[m:]) and torch.equal(x.next_z[m:], z_next[m:])
    moved = (x.z[:m] != z_t[:m]).any(dim=-1).view(-1, k)
    if kind == "latent":  # every transition's state is attacked
        assert moved.all()
    else:  # one perturbation of the frames attacks the states jointly: at least one moves per sequence
        assert moved.any(dim=-1).all()
    assert torch.equal(x.next_z[:m], z_next[:m]) == (targets == "clean")
    assert {"adversary/epsilon", "adversary/success", "adversary/attack_ms"} <= set(x.metrics)
    assert set(x.penalties) == {"actor", "cost_critic"} and x.penalties["actor"]().item() >= 0


def test_linear_schedule_ramps_from_the_first_update():
    hook = AdversarialTraining(AdversaryConfig(kind="image", epsilon=0.04, schedule="linear", ramp_steps=100),
                               None, None, start_step=50)
    assert [hook.epsilon(s) for s in (0, 50, 100, 150, 1000)] == pytest.approx([0, 0, 0.02, 0.04, 0.04])


# ------------------------------------------------------------------ online attacks
class _Frames:
    """Records the clean frames an env emits, to check the attacked ones against them."""

    def __init__(self):
        self.frames = []

    def __call__(self, step):
        self.frames.append(step["next_obs"])


@pytest.mark.parametrize("name", ATTACKS)
def test_online_attacks_run_and_stay_in_their_ball(learner, name):
    model, agent, _ = learner
    env = envs.make(ENV)
    epsilon = 0.05 if name.startswith(("image", "random")) else 0.5
    attack = make_online_attack(name, epsilon, 2, model, agent)
    policy = LatentPolicy(model, agent, torch.device("cpu"), deterministic=True, attack=attack)
    checked = []

    def on_step(step):
        if policy.attacked_image is not None and name.startswith(("image", "random")):
            diff = np.abs(policy.attacked_image.astype(int) - step["obs"].astype(int)).max()
            checked.append(diff)

    episode = run_episode(env, policy, seed=0, on_step=on_step)
    assert episode.length > 0 and attack.stats()["attack/epsilon"] == epsilon
    if checked:
        assert max(checked) <= round(epsilon * 255) + 1


def test_online_attack_with_epsilon_zero_changes_nothing(learner):
    model, agent, _ = learner
    results = []
    for attack in (None, make_online_attack("image-mc", 0.0, 2, model, agent),
                   make_online_attack("latent-mr", 0.0, 2, model, agent)):
        policy = LatentPolicy(model, agent, torch.device("cpu"), deterministic=True, attack=attack)
        e = run_episode(envs.make(ENV), policy, seed=5)
        results.append((e.episode_return, e.episode_cost, e.length))
    assert results[0] == results[1] == results[2]


# ------------------------------------------------------------------ end to end
@pytest.mark.parametrize("overlay, extra", [
    ("adv-image.yaml", ["adversary.perturb_model=true", "adversary.smoothness_coef=0.1"]),
    ("adv-latent.yaml", ["adversary.targets=perturbed"]),
    ("adv-latent.yaml", ["adversary.train_on=actor"]),
])
def test_adversarial_source_training_then_target_fine_tuning(tmp_path, overlay, extra):
    shift = next(name for name, s in envs.SHIFTS.items() if s.source == ENV)  # toy-reach → shifted toy-reach
    src = tmp_path / "source"
    sets = ["adversary.schedule=constant", *extra]
    make_robust_trainer(RunRequest(phase="source", shift=shift, preset="smoke", sets=sets, seed=6, out=str(src),
                                   config_files=[str(ROOT / "configs" / overlay)]), progress=False).run()
    records = read_metrics(src / "metrics.jsonl")
    keys = set().union(*records)
    assert {"adversary/epsilon", "adversary/success", "adversary/attack_ms", "loss/actor"} <= keys
    if "adversary.perturb_model=true" in extra:
        assert {"adversary/model_attack_ms", "loss/actor_penalty", "loss/cost_critic_penalty"} <= keys
    state = checkpoint.load(src)
    assert state["config"]["adversary"]["kind"] in ("image", "latent") and state["counters"]["updates"] > 0

    out = tmp_path / "target"
    trainer = make_robust_trainer(RunRequest(phase="target", shift=shift, checkpoint=str(src),
                                             preset="smoke", seed=7, out=str(out)), progress=False)
    assert trainer.cfg.adversary.kind == "none", "the adversary is a source-phase tool"
    assert trainer.cfg.env != ENV
    trainer.run()
    target = checkpoint.load(out)
    assert target["counters"]["updates"] > 0
    assert any(not torch.equal(v, state["agent"][k]) for k, v in target["agent"].items())


def test_train_on_actor_gives_the_actor_perturbed_and_the_critics_clean_latents(learner):
    model, agent, (images, actions) = learner
    cfg = AdversaryConfig(kind="latent", epsilon=1.0, steps=2, objective="mc", train_on="actor")
    torch.manual_seed(2)
    x = agent_inputs(AdversarialTraining(cfg, model, agent), images, actions, step=0)
    torch.manual_seed(2)
    z = model.latents(images, actions)
    n = round(cfg.fraction * images.shape[0])
    assert torch.equal(x.z, z[:, -2]) and torch.equal(x.next_z, z[:, -1])
    assert not torch.equal(x.actor_z[:n], z[:n, -2]) and torch.equal(x.actor_z[n:], z[n:, -2])


def test_train_on_actor_needs_clean_targets():
    with pytest.raises(InputError, match="targets must be 'clean'"):
        resolve("smoke", sets=["adversary.kind=latent", "adversary.train_on=actor", "adversary.targets=perturbed"])


def test_train_on_clean_learns_from_clean_latents_with_the_regulariser_only(learner):
    model, agent, (images, actions) = learner
    cfg = AdversaryConfig(kind="latent", epsilon=1.0, steps=2, objective="mad", train_on="clean",
                          smoothness_coef=0.5)
    torch.manual_seed(2)
    x = agent_inputs(AdversarialTraining(cfg, model, agent), images, actions, step=0)
    torch.manual_seed(2)
    z = model.latents(images, actions)
    assert torch.equal(x.z, z[:, -2]) and torch.equal(x.next_z, z[:, -1])
    assert x.penalties["actor"]().item() > 0 and x.metrics["adversary/success"] > 0
