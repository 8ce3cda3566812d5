"""The latent model's and the agent's maths against independent computations on small tensors."""

import copy
import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from slac.agent import SafeSACAgent, discounted_step_budget, episode_budget, soft_update
from slac.config import AgentConfig, ModelConfig
from slac.lagrangian import Lagrangian
from slac.latent import LatentModel
from slac.networks import gaussian_kl, gaussian_log_prob

torch.manual_seed(0)
SMALL = ModelConfig(feature_dim=16, z1_dim=4, z2_dim=6, hidden_units=[16], sequence_length=3, batch_size=2)


def small_model(action_dim=2) -> LatentModel:
    torch.manual_seed(0)
    return LatentModel(SMALL, action_dim)


def small_agent(**overrides) -> SafeSACAgent:
    torch.manual_seed(0)
    cfg = AgentConfig(hidden_units=[16], **overrides)
    return SafeSACAgent(cfg, latent_dim=10, action_dim=2, action_repeat=2, episode_agent_steps=500)


def test_gaussian_kl_matches_torch_distributions():
    mq, sq, mp, sp = torch.randn(5, 3), torch.rand(5, 3) + 0.1, torch.randn(5, 3), torch.rand(5, 3) + 0.1
    expected = kl_divergence(Normal(mq, sq), Normal(mp, sp))
    torch.testing.assert_close(gaussian_kl(mq, sq, mp, sp), expected)


def test_gaussian_log_prob_matches_torch_distributions():
    x, m, s = torch.randn(4, 3), torch.randn(4, 3), torch.rand(4, 3) + 0.2
    torch.testing.assert_close(gaussian_log_prob(x, m, s), Normal(m, s).log_prob(x))
    torch.testing.assert_close(gaussian_log_prob(x, m, 0.4), Normal(m, 0.4).log_prob(x))


def test_model_loss_terms_against_an_independent_computation():
    model = small_model()
    B, S = 2, SMALL.sequence_length
    images = torch.rand(B, S + 1, 3, 64, 64)
    actions = torch.rand(B, S, 2) * 2 - 1
    rewards, costs = torch.randn(B, S), torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    torch.manual_seed(5)
    _, metrics = model.loss(images, actions, rewards, costs, torch.zeros(B, S))
    # recompute every term with torch.distributions from the same posterior draws
    torch.manual_seed(5)
    post = model.filter_sequence(model.encode(images), actions)
    kl = kl_divergence(Normal(post["z1_mean"], post["z1_std"]), Normal(post["prior_mean"], post["prior_std"]))
    assert metrics["loss/kl"] == pytest.approx(kl.sum().item() / B, rel=1e-5)
    z = torch.cat([post["z1"], post["z2"]], -1)
    image_nll = -Normal(model.decoder(z), SMALL.image_noise).log_prob(images).sum() / B
    assert metrics["loss/image"] == pytest.approx(image_nll.item(), rel=1e-5)
    transition = torch.cat([z[:, :-1], actions, z[:, 1:]], -1)
    r_mean, r_std = model.reward(transition)
    reward_nll = -Normal(r_mean.squeeze(-1), r_std.squeeze(-1)).log_prob(rewards).sum() / B
    assert metrics["loss/reward"] == pytest.approx(reward_nll.item(), rel=1e-5)
    labels = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # cost > 0 is the Bernoulli event
    cost_nll = -Bernoulli(logits=model.cost(transition).squeeze(-1)).log_prob(labels).sum() / B
    assert metrics["loss/cost"] == pytest.approx(cost_nll.item(), rel=1e-5)
    total = metrics["loss/kl"] + metrics["loss/image"] + metrics["loss/reward"] + metrics["loss/cost"]
    assert metrics["loss/model"] == pytest.approx(total, rel=1e-5)


def test_first_prior_is_standard_normal():
    model = small_model()
    post = model.filter_sequence(torch.randn(2, 4, 16), torch.randn(2, 3, 2))
    torch.testing.assert_close(post["prior_mean"][:, 0], torch.zeros(2, 4))
    torch.testing.assert_close(post["prior_std"][:, 0], torch.ones(2, 4))


def test_online_filter_equals_sequence_filter():
    model = small_model()
    images, actions = torch.rand(2, 4, 3, 64, 64), torch.rand(2, 3, 2) * 2 - 1
    with torch.no_grad():
        post = model.filter_sequence(model.encode(images), actions, sample=False)
        state = model.init_filter(images[:, 0], sample=False)
        zs = [state["z"]]
        for t in range(3):
            state = model.filter_step(state, images[:, t + 1], actions[:, t], sample=False)
            zs.append(state["z"])
    torch.testing.assert_close(torch.stack(zs, 1), torch.cat([post["z1"], post["z2"]], -1), rtol=1e-5, atol=1e-5)


def test_model_update_lowers_the_loss_on_a_fixed_batch():
    model = small_model()
    batch = (torch.rand(2, 4, 3, 64, 64), torch.rand(2, 3, 2), torch.randn(2, 3), torch.zeros(2, 3),
             torch.zeros(2, 3))
    torch.manual_seed(1)
    before = model.loss(*batch)[1]["loss/model"]
    for _ in range(20):
        model.update(*batch)
    torch.manual_seed(1)
    assert model.loss(*batch)[1]["loss/model"] < before


def test_budget_conversion():
    # 25 per 1000 simulator steps; 500 agent steps at action repeat 2 are 1000 simulator steps
    assert episode_budget(25, 500, 2) == 25
    assert episode_budget(25, 250, 4) == 25 and episode_budget(25, 50, 1) == 1.25
    d, T, g = 25.0, 500, 0.995
    assert discounted_step_budget(d, T, g) == pytest.approx(sum(g**t * d / T for t in range(T)))
    agent = small_agent()
    assert agent.budget_per_episode == 25
    # the cost critic starts at that value
    z, a = torch.randn(7, 10), torch.rand(7, 2)
    torch.testing.assert_close(agent.cost_critic(z, a), torch.full((7,), agent.qc_init), atol=0.05, rtol=0)


def test_critic_targets_by_hand():
    agent = small_agent()
    z_next = torch.randn(4, 10)
    reward, cost = torch.tensor([1.0, -2.0, 0.5, 0.0]), torch.tensor([0.0, 1.0, 2.0, 0.0])
    terminated = torch.tensor([0.0, 1.0, 0.0, 1.0])
    torch.manual_seed(3)
    target_q, target_qc = agent.critic_targets(reward, cost, z_next, terminated)
    torch.manual_seed(3)
    a_next, logp = agent.actor.sample(z_next)
    alpha = math.exp(agent.log_alpha.item())
    for i in range(4):
        zi, ai = z_next[i : i + 1], a_next[i : i + 1]
        q = min(agent.critic_target.q1(zi, ai).item(), agent.critic_target.q2(zi, ai).item())
        soft_v = q - alpha * logp[i].item()
        expected_q = reward[i].item() + (0.0 if terminated[i] else 0.99 * soft_v)
        expected_qc = cost[i].item() + (0.0 if terminated[i] else 0.995 * agent.cost_critic_target(zi, ai).item())
        assert target_q[i].item() == pytest.approx(expected_q, rel=1e-5, abs=1e-6)
        assert target_qc[i].item() == pytest.approx(expected_qc, rel=1e-5, abs=1e-6)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    agent = small_agent()
    z = torch.randn(6, 10)
    torch.manual_seed(4)
    action, logp = agent.actor.sample(z)
    mean, std = agent.actor.distribution(z)
    u = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
    expected = Normal(mean, std).log_prob(u).sum(-1) - torch.log(1 - action**2).sum(-1)
    torch.testing.assert_close(logp, expected, rtol=1e-3, atol=1e-3)
    assert action.abs().max() <= 1


def test_soft_update():
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    expected = [0.9 * t.detach().clone() + 0.1 * s.detach() for t, s in zip(target.parameters(), source.parameters(),
                                                                          strict=True)]
    soft_update(target, source, 0.1)
    for p, e in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(p, e)


def test_entropy_weight_moves_towards_the_target_entropy():
    agent = small_agent(init_alpha=0.1)
    z = torch.randn(32, 10)
    batch = (z, torch.rand(32, 2), torch.zeros(32), torch.zeros(32), torch.randn(32, 10), torch.zeros(32))
    before = agent.log_alpha.item()
    metrics = agent.update(*batch)
    # Adam's first step moves log alpha by lr in the direction of -sign(gradient);
    # d loss / d log_alpha = entropy - target, so alpha falls when entropy exceeds the target
    direction = -math.copysign(1.0, metrics["train/entropy"] - agent.target_entropy)
    assert agent.log_alpha.item() - before == pytest.approx(direction * agent.cfg.lr, rel=1e-3)


def test_agent_update_only_moves_what_it_should():
    agent = small_agent()
    frozen = copy.deepcopy(agent)
    batch = (torch.randn(16, 10), torch.rand(16, 2) * 2 - 1, torch.randn(16), torch.rand(16), torch.randn(16, 10),
             torch.zeros(16))
    metrics = agent.update(*batch)
    assert all(math.isfinite(v) for v in metrics.values())
    for name in ("actor", "critic", "cost_critic"):
        moved = any(not torch.equal(a, b) for a, b in zip(getattr(agent, name).parameters(),
                                                         getattr(frozen, name).parameters(), strict=True))
        assert moved, f"{name} did not move"
    # targets move by tau toward the updated critic
    for t, t0, s in zip(agent.critic_target.parameters(), frozen.critic_target.parameters(),
                        agent.critic.parameters(), strict=True):
        torch.testing.assert_close(t, (1 - agent.cfg.tau) * t0 + agent.cfg.tau * s)


@pytest.mark.parametrize("kind", ["gradient", "pid"])
def test_lambda_rises_over_budget_and_falls_to_zero_at_most(kind):
    lagrangian = Lagrangian(AgentConfig(lagrangian=kind, init_lagrange=0.5, lagrange_lr=0.01), budget=25.0)
    values = [lagrangian.value]
    for _ in range(5):
        lagrangian.update(60.0)
        values.append(lagrangian.value)
    assert all(b > a for a, b in zip(values, values[1:], strict=False)), values
    for _ in range(500):
        lagrangian.update(0.0)
    assert lagrangian.value == 0.0


def test_gradient_lambda_update_by_hand():
    lagrangian = Lagrangian(AgentConfig(lagrangian="gradient", init_lagrange=0.5, lagrange_lr=0.01), budget=25.0)
    lagrangian.update(45.0)
    assert lagrangian.value == pytest.approx(0.5 + 0.01 * 20)
    lagrangian.update(0.0)
    assert lagrangian.value == pytest.approx(max(0.0, 0.7 - 0.25))


def test_pid_lambda_update_by_hand():
    cfg = AgentConfig(lagrangian="pid", init_lagrange=0.0, pid_kp=0.1, pid_ki=0.01, pid_kd=0.2)
    lagrangian = Lagrangian(cfg, budget=10.0)
    lagrangian.update(30.0)  # e = 20, I = 0.2, no derivative on the first episode
    assert lagrangian.value == pytest.approx(0.1 * 20 + 0.2)
    lagrangian.update(40.0)  # e = 30, I = 0.5, derivative 10
    assert lagrangian.value == pytest.approx(0.1 * 30 + 0.5 + 0.2 * 10)


def test_state_dicts_restore_identical_outputs():
    model, agent = small_model(), small_agent()
    agent.update_lagrange(100.0)
    model2 = LatentModel(SMALL, 2)
    agent2 = SafeSACAgent(AgentConfig(hidden_units=[16]), 10, 2, 2, 500)
    model2.load_state_dict(model.state_dict())
    agent2.load_state_dict(agent.state_dict())
    images, actions = torch.rand(1, 4, 3, 64, 64), torch.rand(1, 3, 2)
    with torch.no_grad():
        a = model.filter_sequence(model.encode(images), actions, sample=False)["z2"]
        b = model2.filter_sequence(model2.encode(images), actions, sample=False)["z2"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    z = torch.randn(3, 10)
    torch.testing.assert_close(agent.act(z, True), agent2.act(z, True), rtol=0, atol=0)
    assert agent2.lagrangian.value == agent.lagrangian.value and agent2.log_alpha.item() == agent.log_alpha.item()
