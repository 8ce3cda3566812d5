"""Golden test: under the ``paper`` preset this project computes what Safe SLAC computes.

Safe SLAC's model loss (LAVA-LAB/safe-slac, ``slac/network/latent.py``, ``CostLatentModel.calculate_loss``)
and its λ step (``slac/algo.py``, ``update_lag``, called after every agent step) are recomputed here
from their published formulas, in float64 and with Safe SLAC's constants written out (decoder std
sqrt(0.4), cost weights 30 and 100, SGD at 2e-4, a clip at 50 × 40), from the same network outputs
the model produced. The constants are not read from the config: the test checks that the config's
`paper` values mean what Safe SLAC means by them.
"""

from __future__ import annotations

import math

import torch

from slac import config
from slac.agent import SafeSACAgent
from slac.latent import LatentModel

B, S, A = 2, 3, 2  # sequences, transitions per sequence, action size
SAFE_SLAC_IMAGE_STD = math.sqrt(0.4)  # Decoder(std=np.sqrt(image_noise)), image_noise = 0.4
SAFE_SLAC_COST_SCALE, SAFE_SLAC_POSITIVE_WEIGHT = 30.0, 100.0


def paper_model() -> LatentModel:
    torch.manual_seed(0)
    cfg = config.resolve("paper", sets=["env=toy-reach"])
    return LatentModel(cfg.model, A, (3, 64, 64))


def data():
    g = torch.Generator().manual_seed(3)
    images = torch.rand(B, S + 1, 3, 64, 64, generator=g)
    actions = torch.rand(B, S, A, generator=g) * 2 - 1
    rewards = torch.randn(B, S, generator=g)
    costs = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    return images, actions, rewards, costs


def safe_slac_loss_terms(model: LatentModel, images, actions, rewards, costs) -> dict[str, float]:
    """Safe SLAC's four loss terms from the model's own networks, posterior drawn with seed 11."""
    torch.manual_seed(11)
    post = model.filter_sequence(model.encode(images), actions)
    d = {k: v.double() for k, v in post.items()}
    # KL(q || p) per dimension (utils.calculate_kl_divergence), .mean(dim=0).sum()
    var_ratio = (d["z1_std"] / d["prior_std"]) ** 2
    kl = 0.5 * (var_ratio + ((d["z1_mean"] - d["prior_mean"]) / d["prior_std"]) ** 2 - 1 - var_ratio.log())
    z = torch.cat([post["z1"], post["z2"]], dim=-1)
    mean = model.decoder(z).double()
    std = SAFE_SLAC_IMAGE_STD
    noise = (images.double() - mean) / (std + 1e-8)
    image_ll = -0.5 * noise**2 - math.log(std) - 0.5 * math.log(2 * math.pi)
    transition = torch.cat([z[:, :-1], actions, z[:, 1:]], dim=-1)
    r_mean, r_std = (t.double() for t in model.reward(transition))
    r_noise = (rewards.double().unsqueeze(-1) - r_mean) / (r_std + 1e-8)
    reward_ll = (-0.5 * r_noise**2 - r_std.log()) - 0.5 * math.log(2 * math.pi)  # done = 0: no mask
    p = torch.sigmoid(model.cost(transition).double())
    y = torch.sign(costs.double()).unsqueeze(-1)
    cost = -SAFE_SLAC_COST_SCALE * (SAFE_SLAC_POSITIVE_WEIGHT * y * torch.log(p + 1e-6)
                                    + (1 - y) * torch.log(1 - p + 1e-6))
    per_sequence = lambda t: t.mean(dim=0).sum().item()  # noqa: E731  (Safe SLAC's reduction)
    return {"loss/kl": per_sequence(kl), "loss/image": per_sequence(-image_ll),
            "loss/reward": per_sequence(-reward_ll), "loss/cost": per_sequence(cost)}


def test_model_loss_terms_equal_safe_slacs():
    model, batch = paper_model(), data()
    expected = safe_slac_loss_terms(model, *batch)
    torch.manual_seed(11)  # the same posterior draws
    _, metrics = model.loss(*batch)
    for key, value in expected.items():
        # float32 against float64; Safe SLAC's +1e-8 and +1e-6 guards move the terms by < 1e-5
        assert math.isclose(metrics[key], value, rel_tol=2e-5), (key, metrics[key], value)
    assert expected["loss/cost"] > 100  # the positives' weight is in play (two costly steps of six)


def safe_slac_lambda_trajectory(costs: list[float], init: float, step_budget: float) -> list[float]:
    """update_lag: SGD(lr 2e-4) on softplus(ρ)/softplus(ρ).detach() · (D/T − c), clip 50 · 40."""
    raw = torch.tensor([math.log(math.exp(init) - 1)], requires_grad=True)
    optimizer = torch.optim.SGD([raw], lr=2e-4)
    values = []
    for c in costs:
        lam = torch.nn.functional.softplus(raw)
        loss = (lam / lam.detach() * (step_budget - c)).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(raw, 40.0 * 50)
        optimizer.step()
        values.append(torch.nn.functional.softplus(raw).item())
    return values


def test_lambda_steps_equal_safe_slacs():
    """Safety Gym's episode: 1000 simulator steps at action repeat 2, T = 500 agent steps, D = 25."""
    cfg = config.resolve("paper", sets=["env=toy-reach"])
    agent = SafeSACAgent(cfg.agent, latent_dim=4, action_dim=A, action_repeat=2, episode_agent_steps=500)
    g = torch.Generator().manual_seed(5)
    costs = (torch.rand(3000, generator=g) < 0.3).float().mul(2).tolist()  # costs 0 or 2 (two sim steps)
    costs[1500] = 1e6  # a step whose gradient Safe SLAC's clip cuts
    expected = safe_slac_lambda_trajectory(costs, cfg.agent.init_lagrange, 25 / 500)
    got = []
    for c in costs:
        agent.lagrangian.observe_step(c)
        got.append(agent.lagrangian.value)
    assert expected[-1] > 2 * cfg.agent.init_lagrange  # λ moved a lot over the run
    for k in (0, 1, 1499, 1500, 1501, 2999):
        assert math.isclose(got[k], expected[k], rel_tol=1e-4), (k, got[k], expected[k])
