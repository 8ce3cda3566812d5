"""The research scripts under experiments/: their maths by hand and their main paths on smoke inputs.

The checkpoint-based scripts run on one smoke checkpoint of the tilted cartpole (the env they are
written for), with 40-step episodes to keep the tests short (CPU, seconds each).
"""

import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from script_modules import load_script

from latent_adversary.run import make_evaluator
from slac import evaluation
from slac.agent import AgentBatch, SafeSACAgent
from slac.config import AgentConfig
from slac.rollout import evaluation_episode
from slac.run import RunRequest, make_trainer

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
ENV = "dmc-cartpole-tilted"
EPISODE_STEPS = 40  # the smoke checkpoint's time limit (agent steps)


def load(name: str):
    return load_script("experiments", name)


def run_main(module, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    module.main()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cartpole-smoke")
    request = RunRequest(phase="source", env=ENV, preset="smoke", seed=0, out=str(out),
                         sets=[f"env_overrides.time_limit={EPISODE_STEPS}", "train.eval_episodes=1"])
    make_trainer(request, progress=False).run()
    return out


@pytest.fixture(scope="module")
def evaluator(run_dir):
    return make_evaluator(run_dir, device="cpu")


# ------------------------------------------------------------------------------ state_agent_check
def tiny_agent(**overrides) -> SafeSACAgent:
    torch.manual_seed(0)
    return SafeSACAgent(AgentConfig(hidden_units=[16], **overrides), latent_dim=5, action_dim=1, action_repeat=8,
                        episode_agent_steps=125)


def tiny_batch(n: int = 16) -> AgentBatch:
    g = torch.Generator().manual_seed(1)
    return AgentBatch(z=torch.randn(n, 5, generator=g), action=torch.rand(n, 1, generator=g) * 2 - 1,
                      reward=torch.randn(n, generator=g) * 3, cost=torch.rand(n, generator=g) * 2,
                      next_z=torch.randn(n, 5, generator=g),
                      terminated=torch.tensor([1.0, 0.0] * (n // 2)))


def test_n_step_update_bootstraps_with_gamma_to_the_n():
    """n_step_update's critic losses are the MSEs to r + γ^n (1 − d) V̄(z') and c + γ_c^n (1 − d) Q̄c(z', a'),
    the targets of the removed ``agent.update(..., horizon=n)``, computed here step by step."""
    sac = load("state_agent_check")
    n, gamma, gamma_c = 3, 0.9, 0.8
    agent = tiny_agent(gamma=gamma, gamma_c=gamma_c)
    cfg, batch, frozen = agent.cfg, tiny_batch(), copy.deepcopy(agent)
    torch.manual_seed(4)
    metrics = sac.n_step_update(agent, batch, n)
    assert agent.cfg is cfg and (cfg.gamma, cfg.gamma_c) == (gamma, gamma_c)  # its own config is back

    torch.manual_seed(4)  # the update's first random draw is a' ~ π(· | z') for the targets
    with torch.no_grad():
        next_action, log_prob = frozen.actor.sample(batch.next_z)
        q1_next, q2_next = frozen.critic_target(batch.next_z, next_action)
        qc_next = frozen.cost_critic_target(batch.next_z, next_action)
        q1, q2 = frozen.critic(batch.z, batch.action)
        qc = frozen.cost_critic(batch.z, batch.action)
    alpha = math.exp(frozen.log_alpha.item())
    critic_loss = cost_critic_loss = one_step_loss = 0.0
    for i in range(len(batch.z)):
        alive = 1.0 - batch.terminated[i].item()
        soft_value = min(q1_next[i].item(), q2_next[i].item()) - alpha * log_prob[i].item()
        target_q = batch.reward[i].item() + gamma**n * alive * soft_value
        target_qc = batch.cost[i].item() + gamma_c**n * alive * qc_next[i].item()
        critic_loss += (q1[i].item() - target_q) ** 2 + (q2[i].item() - target_q) ** 2
        cost_critic_loss += (qc[i].item() - target_qc) ** 2
        one_step = batch.reward[i].item() + gamma * alive * soft_value
        one_step_loss += (q1[i].item() - one_step) ** 2 + (q2[i].item() - one_step) ** 2
    B = len(batch.z)
    assert metrics["loss/critic"] == pytest.approx(critic_loss / B, rel=1e-5)
    assert metrics["loss/cost_critic"] == pytest.approx(cost_critic_loss / B, rel=1e-5)
    assert abs(one_step_loss / B - critic_loss / B) > 1e-2 * critic_loss / B  # γ^n, not γ, made the difference


def test_one_step_update_is_the_agents_own():
    sac = load("state_agent_check")
    agent, batch = tiny_agent(), tiny_batch()
    plain = copy.deepcopy(agent)
    torch.manual_seed(5)
    metrics = sac.n_step_update(agent, batch, 1)
    torch.manual_seed(5)
    assert plain.update(batch) == metrics
    for (name, p), q in zip(agent.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(p, q) or (p.isnan().all() and q.isnan().all()), name  # NaN: no episode cost yet


def test_state_agent_check_learns_lambda_and_reports(monkeypatch, capsys):
    """A few short episodes with 3-step targets and the step rule (smoke's): λ rises from its initial
    0.02 under episodes far over budget, and the final episodes' figures are within the episode's range."""
    sac = load("state_agent_check")
    run_main(sac, ["--preset", "smoke", "--episodes", "4", "--n-step", "3", "--final-episodes", "1",
                   "--set", "env_overrides.time_limit=20"], monkeypatch)
    out = capsys.readouterr().out
    (progress,) = [line for line in out.splitlines() if line.startswith("episode   4:")]
    fields = progress.split()
    lam = float(fields[fields.index("lambda") + 1])
    assert lam > 0.02
    finals = [line for line in out.splitlines() if line.startswith("final (1 ")]
    assert len(finals) == 2  # deterministic, then sampled
    for line in finals:
        cost = float(line.split("cost ")[1].split()[0])
        assert 0 <= cost <= 20 * 8  # 20 agent steps at the cartpole's action repeat 8, cost ≤ 1 per step


# ----------------------------------------------------------------------------- cartpole_behaviour
def test_cartpole_behaviour_summary_by_hand():
    summarise = load("cartpole_behaviour").summarise
    # falls (0.5 rad), passes upright twice while turning (2π ± 0.1), then stays up from step 4 on
    angles = [0.1, 0.5, 2 * math.pi - 0.1, 3.0, 4 * math.pi + 0.05, 4 * math.pi - 0.15, 4 * math.pi]
    s = summarise(angles, [0.0, -0.3, 0.1, 0.2, 0.0, 0.05, 0.1])
    assert s["upright"] == pytest.approx(5 / 7)
    assert s["held_at_end"] == 3 and s["turns"] == pytest.approx(2.0) and s["max_x"] == pytest.approx(0.3)
    assert s["final_x"] == pytest.approx(0.1)
    assert summarise([0.3, 0.0, 0.3], [0.0] * 3)["held_at_end"] == 0  # down at the end
    assert summarise([0.0, 0.1], [0.0] * 2)["held_at_end"] == 2  # never down


def test_cartpole_behaviour_runs_evaluate_pys_episodes(run_dir, evaluator, monkeypatch, capsys):
    behaviour = load("cartpole_behaviour")
    for index in (0, 1):
        b = behaviour.behaviour(evaluator, index, seed=2)
        reference = evaluator.run(index, seed=2)  # the episode evaluate.py runs
        assert (b["return"], b["cost"]) == (reference.episode_return, reference.episode_cost)
        assert 0.0 <= b["upright"] <= 1.0 and 0 <= b["held_at_end"] <= EPISODE_STEPS
        assert b["max_x"] >= abs(b["final_x"])
    run_main(behaviour, [str(run_dir), "--episodes", "2", "--seed", "2"], monkeypatch)
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 2
    assert float(rows[0].split()[1]) == pytest.approx(evaluator.run(0, seed=2).episode_return, abs=0.05)


# ---------------------------------------------------------------------------------- critic_check
def test_critic_check_returns_by_hand_and_windows_match_the_online_filter(evaluator):
    critic_check = load("critic_check")
    # tail mean 1 (all three values) goes on for ever: 1 / (1 - 0.5) = 2 after the last step
    assert critic_check.completed_returns(np.array([1.0, 0.0, 2.0]), 0.5) == pytest.approx(
        [1 + 0.5 * 0 + 0.25 * 2 + 0.125 * 2, 0 + 0.5 * 2 + 0.25 * 2, 2 + 0.5 * 2])
    episode = critic_check.episode_predictions(evaluator, 0, seed=1)
    reference = evaluator.run(0, seed=1)
    assert len(episode["qc"]) == reference.length == EPISODE_STEPS
    assert episode["cost"].sum() == pytest.approx(reference.episode_cost)
    assert episode["reward"].sum() == pytest.approx(reference.episode_return)
    # a window that starts at the episode's first frame is the online filter's whole history
    for h in (1, 3):
        qc = critic_check.short_history_qc(evaluator, episode, h)
        assert len(qc) == len(episode["qc"]) - h + 1
        assert qc[0] == pytest.approx(episode["qc"][h - 1], rel=1e-4, abs=1e-4)


def test_critic_check_prints_its_table(run_dir, evaluator, monkeypatch, capsys):
    critic_check = load("critic_check")
    run_main(critic_check, [str(run_dir), "--episodes", "1", "--history", "2"], monkeypatch)
    header, row, history = capsys.readouterr().out.splitlines()
    assert header.split()[:2] == ["checkpoint", "Q"] and "last 2 frames" in history
    assert float(row.split()[-1]) == pytest.approx(evaluator.run(0, seed=0).episode_cost, abs=0.05)


# ---------------------------------------------------------------------------------- latent_probe
def test_latent_probe_r2_against_independent_fits():
    """The probe's ridge R² on made-up data: a target linear in the features scores ~1, one
    independent of them scores ≤ ~0, and a tiny penalty gives numpy least squares' R²."""
    ridge_r2 = load("latent_probe").ridge_r2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    weights = rng.normal(size=(6,))
    noisy = x @ weights + 0.5 * rng.normal(size=400)
    y = np.stack([x @ weights + 3.0, rng.normal(size=400), noisy], axis=1)
    r2 = ridge_r2((x[:200], y[:200]), (x[200:], y[200:]), ridge=1e-9)
    assert r2[0] == pytest.approx(1.0, abs=1e-6)
    assert r2[1] < 0.05
    design = np.hstack([x[:200], np.ones((200, 1))])
    coef, *_ = np.linalg.lstsq(design, noisy[:200], rcond=None)
    predicted = np.hstack([x[200:], np.ones((200, 1))]) @ coef
    expected = 1 - np.sum((noisy[200:] - predicted) ** 2) / np.sum((noisy[200:] - noisy[200:].mean()) ** 2)
    assert r2[2] == pytest.approx(expected, abs=1e-6)


def test_latent_probe_signal_to_noise_by_hand():
    z1_signal_to_noise = load("latent_probe").z1_signal_to_noise
    # dim 0: means 0, 2 (variance 1), stds 1, 1 → 1; dim 1: means 1, 1, stds 0.5, 1.5 → 0 / 1.25 = 0
    means, stds = np.array([[0.0, 1.0], [2.0, 1.0]]), np.array([[1.0, 0.5], [1.0, 1.5]])  # (steps, dims)
    assert z1_signal_to_noise(means, stds) == pytest.approx([1.0, 0.0])


def test_latent_probe_pairs_latents_with_the_states_their_frames_show(evaluator):
    probe = load("latent_probe")
    model, _ = evaluator.env.unwrapped.mujoco_handles()
    variables = probe.state_variables(model)
    assert [name for name, _ in variables] == ["slider pos", "slider vel", "hinge_1 cos", "hinge_1 sin",
                                               "hinge_1 vel"]
    stats = {"z1_mean": [], "z2": []}
    latents, states = probe.probe_episode(evaluator, 0, 3, True, variables, posterior_stats=stats)
    assert latents.shape == (EPISODE_STEPS - 1, model_latent_size(evaluator))
    assert states.shape == (EPISODE_STEPS - 1, len(variables))
    assert len(stats["z1_mean"]) == EPISODE_STEPS
    np.testing.assert_allclose(states[:, 2] ** 2 + states[:, 3] ** 2, 1.0)  # cos² + sin² of the hinge
    # the same episode step by step: z_1 (filtered up to frame x_1) pairs with the state after step 0,
    # the one x_1 shows; z_T-1 with the state after step T-2
    _, data = evaluator.env.unwrapped.mujoco_handles()
    seen: list[tuple[np.ndarray, list[float]]] = []
    evaluation_episode(evaluator.env, evaluator.policy(), 3, 0, on_step=lambda step: seen.append(
        (step["policy_state"]["z"][0].numpy().copy(), [f(data) for _, f in variables])))
    assert len(seen) == EPISODE_STEPS
    for t in (0, EPISODE_STEPS - 2):
        np.testing.assert_array_equal(latents[t], seen[t + 1][0])
        assert states[t] == pytest.approx(seen[t][1])
    # random actions: the same states whenever the same episode is probed, other states in another one
    again = [probe.probe_episode(evaluator, k, 3, True, variables, random_actions=True)[1] for k in (0, 0, 1)]
    np.testing.assert_array_equal(again[0], again[1])
    assert not np.allclose(again[0], again[2])


def model_latent_size(evaluator) -> int:
    return evaluator.cfg.model.z1_dim + evaluator.cfg.model.z2_dim


def test_latent_probe_prints_r2_per_state_variable(run_dir, monkeypatch, capsys):
    probe = load("latent_probe")
    run_main(probe, [str(run_dir), "--episodes", "2", "--random-actions"], monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert f"{EPISODE_STEPS - 1} fit / {EPISODE_STEPS - 1} scored steps" in lines[0]
    r2 = {line.split()[1] + " " + line.split()[2]: float(line.split()[3]) for line in lines if "R²" in line}
    assert set(r2) == {"slider pos", "slider vel", "hinge_1 cos", "hinge_1 sin", "hinge_1 vel"}
    assert all(value <= 1.0 for value in r2.values())
    assert lines[-2].startswith("  z1 posterior:") and lines[-1].startswith("  z2:")


# ------------------------------------------------------------------------------- adversary_study
def test_adversary_study_tabulates_every_condition(run_dir, tmp_path, capsys):
    adversary_study = load("adversary_study")
    code = adversary_study.main(["--runs", f"none={run_dir}", f"image={run_dir},{run_dir}",
                                 "--attacks", "image-mc,latent-mr", "--image-epsilons", "0.02",
                                 "--latent-epsilons", "0.5", "--shift", "tilted-colours", "--episodes", "1",
                                 "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "study.json").read_text())
    clean = evaluation.evaluate(make_evaluator(run_dir, device="cpu"), episodes=1, seed=0)
    entry = report["results"]["image"][str(run_dir)]
    assert entry["clean"]["return"]["mean"] == pytest.approx(clean["return"]["mean"])
    assert entry["attacks"]["image-mc"][0]["epsilon"] == 0.02
    assert entry["zero_shot"]["dmc-cartpole-tilted-recoloured"]["env"] == "dmc-cartpole-tilted-recoloured"
    table = (tmp_path / "study.md").read_text()
    for row in ("| clean |", "| image-mc ε=0.02 |", "| latent-mr ε=0.5 |",
                "| zero-shot dmc-cartpole-tilted-recoloured |"):
        assert row in table
    assert (tmp_path / "study.png").stat().st_size > 0
    assert adversary_study.main(["--runs", "none", "--out", str(tmp_path)]) == 2
    assert "--runs expects KIND=RUN" in capsys.readouterr().err
    # a later study with the same settings takes the earlier one's runs in; other settings are refused
    later = tmp_path / "later"
    same = ["--attacks", "image-mc,latent-mr", "--image-epsilons", "0.02", "--latent-epsilons", "0.5",
            "--shift", "tilted-colours", "--episodes", "1"]
    assert adversary_study.main(["--runs", f"latent={run_dir}", *same, "--include", str(tmp_path / "study.json"),
                                 "--out", str(later)]) == 0
    merged = json.loads((later / "study.json").read_text())
    assert set(merged["results"]) == {"none", "image", "latent"}
    assert merged["results"]["image"] == report["results"]["image"]
    assert adversary_study.main(["--runs", f"latent={run_dir}", *same[:-1], "2", "--include",
                                 str(tmp_path / "study.json"), "--out", str(later)]) == 2
    assert "made with other episodes" in capsys.readouterr().err


def test_experiments_readme_names_every_script():
    readme = (EXPERIMENTS / "README.md").read_text()
    for script in sorted(EXPERIMENTS.glob("*.py")):
        assert f"python experiments/{script.name}" in readme, script.name
