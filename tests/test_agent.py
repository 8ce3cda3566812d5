"""The SAC-Lagrangian agent's maths against hand computations on small tensors (CPU, seconds)."""

import copy
import io
import math

import pytest
import torch
from torch.distributions import Normal

from slac.agent import AgentBatch, SafeSACAgent, discounted_step_budget, episode_budget, soft_update
from slac.config import AgentConfig
from slac.errors import InputError
from slac.lagrangian import Lagrangian

L, A = 6, 2  # latent and action sizes


def tiny_agent(seed=0, **overrides) -> SafeSACAgent:
    torch.manual_seed(seed)
    cfg = AgentConfig(hidden_units=[16], **overrides)
    return SafeSACAgent(cfg, latent_dim=L, action_dim=A, action_repeat=2, episode_agent_steps=500)


def transitions(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    z, action = torch.randn(n, L, generator=g), torch.rand(n, A, generator=g) * 2 - 1
    reward = torch.randn(n, generator=g)
    cost, next_z = (torch.rand(n, generator=g) < 0.3).float(), torch.randn(n, L, generator=g)
    return z, action, reward, cost, next_z, (torch.rand(n, generator=g) < 0.2).float()


def saved(state: dict) -> dict:
    """Through torch.save / torch.load(weights_only=True), as a checkpoint holds it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ------------------------------------------------------------------ budget
def test_budget_conversion():
    # d per 1000 simulator steps: 500 agent steps at action repeat 2 are 1000 simulator steps
    assert episode_budget(25, 500, 2) == 25
    assert episode_budget(25, 250, 4) == 25
    assert episode_budget(25, 100, 1) == 2.5
    # Safe SLAC's Qc budget (slac/algo.py): 25 (1 - γ_c^(1000/ar)) / (1 - γ_c) / (1000/ar)
    g, ar = 0.995, 2
    safe_slac = 25 * (1 - g ** (1000 / ar)) / (1 - g) / (1000 / ar)
    assert discounted_step_budget(25.0, 500, g) == pytest.approx(safe_slac, rel=1e-12)
    # and it is the discounted sum of an evenly spent budget
    assert discounted_step_budget(25.0, 500, g) == pytest.approx(sum(g**t * 25 / 500 for t in range(500)))


def test_agent_budget_and_cost_critic_initialisation():
    agent = tiny_agent(budget=25.0)
    assert agent.budget_per_episode == 25.0
    assert agent.lagrangian.budget == 25.0
    assert agent.qc_init == pytest.approx(discounted_step_budget(25.0, 500, 0.995))
    z, a = torch.randn(32, L), torch.rand(32, A) * 2 - 1
    torch.testing.assert_close(agent.cost_critic(z, a), torch.full((32,), agent.qc_init), atol=0.05, rtol=0)
    torch.testing.assert_close(agent.cost_critic_target(z, a), agent.cost_critic(z, a))


# ------------------------------------------------------------------ critics
def test_critic_targets_by_hand():
    """Q target r + γ (1 − term) [min Q̄(z', a') − α log π(a'|z')]; Qc target c + γ_c (1 − term) Q̄c(z', a')."""
    agent = tiny_agent()
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.3))  # make the entropy term visible
    z_next = torch.randn(4, L)
    reward, cost = torch.tensor([1.0, -2.0, 0.5, 0.0]), torch.tensor([0.0, 1.0, 2.0, 0.0])
    terminated = torch.tensor([0.0, 1.0, 0.0, 1.0])
    torch.manual_seed(3)
    target_q, target_qc = agent.critic_targets(reward, cost, z_next, terminated)
    torch.manual_seed(3)  # the same a' ~ π(· | z')
    a_next, log_pi = agent.actor.sample(z_next)
    for i in range(4):
        zi, ai = z_next[i:i + 1], a_next[i:i + 1]
        q = min(agent.critic_target.q1(zi, ai).item(), agent.critic_target.q2(zi, ai).item())
        soft_value = q - 0.3 * log_pi[i].item()
        expected_q = reward[i].item() + (0.0 if terminated[i] else 0.99 * soft_value)
        qc = agent.cost_critic_target(zi, ai).item()
        expected_qc = cost[i].item() + (0.0 if terminated[i] else 0.995 * qc)
        assert target_q[i].item() == pytest.approx(expected_q, rel=1e-5, abs=1e-6)
        assert target_qc[i].item() == pytest.approx(expected_qc, rel=1e-5, abs=1e-6)
    # terminated rows are exactly the immediate reward and cost
    assert target_q[1].item() == -2.0 and target_qc[3].item() == 0.0


def test_critic_losses_are_mse_to_the_targets():
    agent, batch = tiny_agent(), transitions()
    z, a, r, c, z_next, term = batch
    frozen = copy.deepcopy(agent)
    torch.manual_seed(4)
    metrics = agent.update(AgentBatch(*batch))
    torch.manual_seed(4)
    target_q, target_qc = frozen.critic_targets(r, c, z_next, term)
    q1, q2 = frozen.critic(z, a)
    expected = ((q1 - target_q) ** 2).mean() + ((q2 - target_q) ** 2).mean()
    assert metrics["loss/critic"] == pytest.approx(expected.item(), rel=1e-5)
    expected_c = ((frozen.cost_critic(z, a) - target_qc) ** 2).mean()
    assert metrics["loss/cost_critic"] == pytest.approx(expected_c.item(), rel=1e-5)


def test_soft_update():
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    expected = [0.9 * t.detach() + 0.1 * s.detach() for t, s in zip(target.parameters(), source.parameters(),
                                                                    strict=True)]
    soft_update(target, source, 0.1)
    for p, e in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(p, e)


@pytest.mark.parametrize("cost_tau", [None, 0.3])
def test_update_moves_what_it_should_and_targets_by_tau(cost_tau):
    agent = tiny_agent(cost_tau=cost_tau)
    frozen = copy.deepcopy(agent)
    metrics = agent.update(AgentBatch(*transitions()))
    for key in ("loss/critic", "loss/cost_critic", "loss/actor", "loss/alpha", "train/alpha", "train/lambda",
                "train/entropy", "train/q", "train/qc"):
        assert math.isfinite(metrics[key]), key
    for name in ("actor", "critic", "cost_critic"):
        moved = [not torch.equal(a, b) for a, b in zip(getattr(agent, name).parameters(),
                                                        getattr(frozen, name).parameters(), strict=True)]
        assert any(moved), f"{name} did not move"
    taus = {"critic": agent.cfg.tau, "cost_critic": agent.cfg.tau if cost_tau is None else cost_tau}
    for target, source in (("critic_target", "critic"), ("cost_critic_target", "cost_critic")):
        tau = taus[source]
        for t, t0, s in zip(getattr(agent, target).parameters(), getattr(frozen, target).parameters(),
                            getattr(agent, source).parameters(), strict=True):
            torch.testing.assert_close(t, (1 - tau) * t0 + tau * s)
            assert not t.requires_grad


# ------------------------------------------------------------------ actor and alpha
def test_tanh_gaussian_log_prob_matches_change_of_variables():
    agent = tiny_agent()
    z = torch.randn(64, L)
    torch.manual_seed(4)
    action, log_pi = agent.actor.sample(z)
    mean, std = (x.double() for x in agent.actor.distribution(z))
    torch.manual_seed(4)
    u = mean + std * torch.randn(mean.shape).double()  # the same pre-tanh draw, in float64
    # log π(a) = log N(u; mean, std) - Σ log(1 - tanh(u)^2), by torch.distributions and in float64
    expected = Normal(mean, std).log_prob(u).sum(-1) - torch.log1p(-torch.tanh(u) ** 2).sum(-1)
    torch.testing.assert_close(log_pi.double(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(action.double(), torch.tanh(u))


def test_act_shapes_bounds_and_determinism():
    agent = tiny_agent()
    z = torch.randn(5, L) * 10
    a = agent.act(z, deterministic=False)
    assert a.shape == (5, A) and a.abs().max() <= 1 and not a.requires_grad
    torch.testing.assert_close(agent.act(z, deterministic=True), torch.tanh(agent.actor.distribution(z)[0]))
    torch.testing.assert_close(agent.act(z, deterministic=True), agent.act(z, deterministic=True))


def test_actor_loss_includes_the_lagrangian_cost_term():
    """loss_actor = mean(α log π − min Q + λ Qc), with the critics as they are after their own step."""
    agent = tiny_agent()
    agent.lagrangian.lam.fill_(2.5)
    batch = transitions()
    torch.manual_seed(6)
    metrics = agent.update(AgentBatch(*batch))
    # replay the update up to the actor step with the same random draws
    replay = tiny_agent()
    replay.lagrangian.lam.fill_(2.5)
    torch.manual_seed(6)
    replay.critic_targets(*batch[2:4], batch[4], batch[5])  # consumes the a' draws
    agent_critic, agent_cost_critic = agent.critic, agent.cost_critic  # already stepped; the actor saw these
    action, log_pi = replay.actor.sample(batch[0])
    alpha = math.exp(replay.log_alpha.item())
    expected = (alpha * log_pi - torch.min(*agent_critic(batch[0], action))
                + 2.5 * agent_cost_critic(batch[0], action)).mean()
    assert metrics["loss/actor"] == pytest.approx(expected.item(), rel=1e-4)
    assert metrics["train/lambda"] == 2.5


def test_actor_acting_on_other_latents_is_valued_at_the_clean_ones():
    """actor_z: the action comes from π(·|actor_z), the critics value it at z (and learn on z)."""
    batch = transitions()
    actor_z = batch[0] + 0.5 * torch.randn(batch[0].shape, generator=torch.Generator().manual_seed(9))
    agent, plain = tiny_agent(), tiny_agent()
    agent.lagrangian.lam.fill_(1.5)
    plain.lagrangian.lam.fill_(1.5)
    torch.manual_seed(6)
    metrics = agent.update(AgentBatch(*batch, actor_z=actor_z))
    torch.manual_seed(6)
    plain.update(AgentBatch(*batch))
    for name in ("critic", "cost_critic"):  # the critics' own steps do not depend on actor_z
        for p, q in zip(getattr(agent, name).parameters(), getattr(plain, name).parameters(), strict=True):
            assert torch.equal(p, q)
    assert any(not torch.equal(p, q) for p, q in zip(agent.actor.parameters(), plain.actor.parameters(), strict=True))
    replay = tiny_agent()
    torch.manual_seed(6)
    replay.critic_targets(*batch[2:4], batch[4], batch[5])  # consumes the a' draws
    action, log_pi = replay.actor.sample(actor_z)
    alpha = math.exp(replay.log_alpha.item())
    expected = (alpha * log_pi - torch.min(*agent.critic(batch[0], action))
                + 1.5 * agent.cost_critic(batch[0], action)).mean()
    assert metrics["loss/actor"] == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("init_alpha", [0.1, 1e-3])
def test_alpha_steps_towards_the_target_entropy(init_alpha):
    agent = tiny_agent(init_alpha=init_alpha)
    before = agent.log_alpha.item()
    metrics = agent.update(AgentBatch(*transitions(n=32)))
    # loss = -log α (H_target - H): d/d log α = H - H_target; Adam's first step moves by lr against its sign
    expected = -math.copysign(agent.cfg.lr, metrics["train/entropy"] - agent.target_entropy)
    assert agent.log_alpha.item() - before == pytest.approx(expected, rel=1e-3, abs=1e-6)  # float32 log α
    assert metrics["loss/alpha"] == pytest.approx(-before * (agent.target_entropy - metrics["train/entropy"]),
                                                  rel=1e-4)
    assert agent.target_entropy == -A


def test_terminated_masks_but_truncation_is_not_an_input():
    agent = tiny_agent()
    z_next = torch.randn(3, L)
    r, c = torch.ones(3), torch.ones(3)
    q_all, qc_all = agent.critic_targets(r, c, z_next, torch.ones(3))
    torch.testing.assert_close(q_all, r)
    torch.testing.assert_close(qc_all, c)


# ------------------------------------------------------------------ lambda
def per_episode(rule: str, budget: float = 25.0, **kw) -> Lagrangian:
    return Lagrangian(AgentConfig(lagrangian=rule, **kw), episode_budget=budget, episode_steps=100)


@pytest.mark.parametrize("rule", ["episode", "pid"])
def test_lambda_rises_over_budget_and_falls_to_zero_at_most(rule):
    lagrangian = per_episode(rule, init_lagrange=0.5, lagrange_lr=0.01)
    values = [lagrangian.value]
    for _ in range(5):
        lagrangian.observe_episode(60.0)
        values.append(lagrangian.value)
    assert all(b > a for a, b in zip(values, values[1:], strict=False)), values
    lowest = []
    for _ in range(1000):
        lagrangian.observe_episode(0.0)
        lowest.append(lagrangian.value)
    assert min(lowest) >= 0.0 and lagrangian.value == 0.0
    assert all(b <= a for a, b in zip(lowest, lowest[1:], strict=False))


def test_episode_lambda_update_by_hand():
    lagrangian = per_episode("episode", init_lagrange=0.5, lagrange_lr=0.01)
    metrics = lagrangian.observe_episode(45.0)  # λ + lr (C - d) = 0.5 + 0.01 * 20
    assert lagrangian.value == pytest.approx(0.7)
    assert metrics["train/lambda"] == pytest.approx(0.7)
    lagrangian.observe_step(1000.0)  # the per-episode rule ignores step costs
    assert lagrangian.value == pytest.approx(0.7)
    lagrangian.observe_episode(0.0)
    assert lagrangian.value == pytest.approx(0.45)
    lagrangian.observe_episode(25.0)  # at the budget: no change
    assert lagrangian.value == pytest.approx(0.45)
    lagrangian.observe_episode(0.0)
    lagrangian.observe_episode(0.0)  # 0.2 - 0.25 < 0: clamped
    assert lagrangian.value == 0.0


def test_pid_lambda_update_by_hand():
    """Stooke et al. (2020) Algorithm 2: λ = (K_p e + K_i I + K_d (C - C_prev)_+)_+, I = (I + e)_+."""
    lagrangian = per_episode("pid", budget=10.0, init_lagrange=0.0, pid_kp=0.1, pid_ki=0.01, pid_kd=0.2)
    lagrangian.observe_episode(30.0)  # e = 20, I = 20, no derivative on the first episode
    assert lagrangian.value == pytest.approx(0.1 * 20 + 0.01 * 20)
    lagrangian.observe_episode(40.0)  # e = 30, I = 50, derivative 10
    assert lagrangian.value == pytest.approx(0.1 * 30 + 0.01 * 50 + 0.2 * 10)
    lagrangian.observe_episode(35.0)  # e = 25, I = 75, the derivative only counts rises
    assert lagrangian.value == pytest.approx(0.1 * 25 + 0.01 * 75)
    lagrangian.observe_episode(0.0)  # e = -10, I = 65: K_p e + K_i I = -1 + 0.65 < 0, clamped
    assert lagrangian.value == 0.0


def test_step_lambda_moves_every_step_and_ignores_episodes():
    """Safe SLAC's rule on one step by hand: ρ ← ρ − lr σ(ρ)/softplus(ρ) (D/T − c), λ = softplus(ρ)."""
    lagrangian = per_episode("step", budget=25.0, init_lagrange=0.5, lagrange_lr=0.01)  # D/T = 0.25
    rho = math.log(math.expm1(0.5))
    lagrangian.observe_step(2.25)  # over the step budget by 2
    sigmoid = 1 / (1 + math.exp(-rho))
    rho += 0.01 * sigmoid / 0.5 * 2.0
    assert lagrangian.value == pytest.approx(math.log1p(math.exp(rho)), rel=1e-6)
    before = lagrangian.value
    lagrangian.observe_episode(1000.0)
    assert lagrangian.value == before
    for _ in range(50):
        lagrangian.observe_step(0.0)  # under the step budget: λ falls, and stays positive
    assert 0 < lagrangian.value < before


def test_switching_rule_keeps_lambda():
    """A checkpoint written under one rule fine-tunes under another from the same λ."""
    episode = per_episode("episode", init_lagrange=0.5, lagrange_lr=0.01)
    episode.observe_episode(45.0)
    step = per_episode("step", init_lagrange=0.02)
    step.load_state_dict(saved(episode.state_dict()))
    step.observe_step(0.25)  # exactly the step budget: ρ does not move
    assert step.value == pytest.approx(0.7, rel=1e-6)


def test_pid_state_round_trips():
    a, b = (per_episode("pid", budget=10.0, init_lagrange=0.0, pid_kp=0.1, pid_ki=0.01, pid_kd=0.2)
            for _ in range(2))
    a.observe_episode(30.0)
    b.load_state_dict(saved(a.state_dict()))
    assert a.observe_episode(50.0) == b.observe_episode(50.0)  # same integral and previous cost


def test_unknown_lagrangian_rule_is_an_input_error():
    with pytest.raises(InputError, match="episode, pid, step"):
        per_episode("adam")


# ------------------------------------------------------------------ checkpoint
def test_state_dicts_restore_everything_bitwise():
    """agent.state_dict() and the optimizers' state dicts restore an agent whose next update, and
    everything after it, is bitwise the same."""
    agent = tiny_agent(seed=0, lagrangian="pid")
    for _ in range(2):
        agent.update(AgentBatch(*transitions()))
    agent.lagrangian.observe_episode(100.0)
    clone = tiny_agent(seed=42, lagrangian="pid")
    clone.load_state_dict(saved(agent.state_dict()))
    for name, state in saved({k: o.state_dict() for k, o in agent.optimizers.items()}).items():
        clone.optimizers[name].load_state_dict(state)
    assert {"log_alpha", "lagrangian.lam", "lagrangian.integral", "lagrangian.previous_cost"} <= set(
        agent.state_dict())
    assert any(k.startswith("critic_target.") for k in agent.state_dict())
    assert any(k.startswith("cost_critic_target.") for k in agent.state_dict())
    for a in (agent, clone):
        torch.manual_seed(8)
        a.update(AgentBatch(*transitions(seed=3)))
        a.lagrangian.observe_episode(10.0)
    for (name, p), q in zip(agent.state_dict().items(), clone.state_dict().values(), strict=True):
        assert torch.equal(p, q) or (p.isnan().all() and q.isnan().all()), name
    z = torch.randn(3, L)
    assert torch.equal(agent.act(z, True), clone.act(z, True))
