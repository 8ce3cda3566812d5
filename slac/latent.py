"""The Safe SLAC latent variable model: SLAC (Lee et al., 2019) plus a cost head (Hogewind et al., 2023).

Two latent levels per step, z_t = (z1_t, z2_t). Generative model:
    p(z1_0) = N(0, I),                     p(z2_0 | z1_0)
    p(z1_{t+1} | z2_t, a_t),                p(z2_{t+1} | z1_{t+1}, z2_t, a_t)
    p(x_t | z_t) = N(decoder(z_t), image_noise^2)
    p(r_t | z_t, a_t, z_{t+1}) Gaussian,    p(c_t > 0 | z_t, a_t, z_{t+1}) Bernoulli
Filtering posterior (sharing the z2 transitions with the prior, as SLAC does):
    q(z1_0 | x_0),   q(z1_{t+1} | x_{t+1}, z2_t, a_t),   z2 from the same p(z2 | ...) as above.
Loss per sequence (the negative ELBO, SLAC eq. 6, plus Safe SLAC's cost term), summed over time
and dimensions, averaged over the batch:
    sum_t KL(q(z1_t | .) || p(z1_t | .)) - log p(x_t | z_t) - log p(r_t | .) - log p(c_t | .)
Images are float tensors in [0, 1] (``to_float``); attacks measure their L-inf ball in this scale.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from slac.config import ModelConfig
from slac.networks import Decoder, Encoder, GaussianHead, check_image_size, gaussian_kl, gaussian_log_prob, mlp


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def _draw(mean: torch.Tensor, std: torch.Tensor, sample: bool) -> torch.Tensor:
    return mean + std * torch.randn_like(std) if sample else mean


class LatentModel(nn.Module):
    def __init__(self, cfg: ModelConfig, action_dim: int, image_shape: tuple[int, ...] = (3, 64, 64)):
        super().__init__()
        check_image_size(image_shape)
        self.cfg = cfg
        z1, z2, feat, hidden = cfg.z1_dim, cfg.z2_dim, cfg.feature_dim, list(cfg.hidden_units)
        self.latent_dim = z1 + z2
        self.encoder = Encoder(image_shape[0], feat, bf16=cfg.bf16_convs)
        self.decoder = Decoder(self.latent_dim, image_shape[0], bf16=cfg.bf16_convs)
        self.z2_init = GaussianHead(z1, z2, hidden)  # p(z2_0 | z1_0), shared by prior and posterior
        self.z1_prior = GaussianHead(z2 + action_dim, z1, hidden)  # p(z1_{t+1} | z2_t, a_t)
        self.z2_transition = GaussianHead(z1 + z2 + action_dim, z2, hidden)  # p(z2_{t+1} | z1_{t+1}, z2_t, a_t)
        self.z1_posterior_init = GaussianHead(feat, z1, hidden)  # q(z1_0 | x_0)
        self.z1_posterior = GaussianHead(feat + z2 + action_dim, z1, hidden)  # q(z1_{t+1} | x_{t+1}, z2_t, a_t)
        transition_dim = 2 * self.latent_dim + action_dim
        self.reward = GaussianHead(transition_dim, 1, hidden)  # p(r_t | z_t, a_t, z_{t+1})
        self.cost = mlp(transition_dim, 1, hidden)  # logit of p(c_t > 0 | z_t, a_t, z_{t+1})
        self.optimizer = torch.optim.Adam(self.parameters(), lr=cfg.lr, foreach=True)

    # ------------------------------------------------------------ inference
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) in [0, 1] -> features (B, T, F)."""
        return self.encoder(images)

    def filter_sequence(self, features: torch.Tensor, actions: torch.Tensor, sample: bool = True) -> dict:
        """Filter a sequence: features (B, S+1, F), actions (B, S, A) with actions[:, t] from t to t+1.

        Returns posterior z1 stats and samples, z2 samples and the std of the z2 distribution they
        were drawn from, and the matching z1 prior stats, all (B, S+1, .); with ``sample=False``
        every draw is replaced by its mean. (The stds are what latent attacks measure their ball in.)
        """
        z1_mean, z1_std = self.z1_posterior_init(features[:, 0])  # q(z1_0 | x_0)
        z1 = _draw(z1_mean, z1_std, sample)
        z2_mean, z2_std = self.z2_init(z1)  # p(z2_0 | z1_0)
        z2 = _draw(z2_mean, z2_std, sample)
        post_mean, post_std, z1s, z2s, z2_stds = [z1_mean], [z1_std], [z1], [z2], [z2_std]
        prior_mean, prior_std = [torch.zeros_like(z1_mean)], [torch.ones_like(z1_std)]  # p(z1_0) = N(0, I)
        for t in range(actions.shape[1]):
            a = actions[:, t]
            p_mean, p_std = self.z1_prior(z2, a)  # p(z1_{t+1} | z2_t, a_t)
            z1_mean, z1_std = self.z1_posterior(features[:, t + 1], z2, a)  # q(z1_{t+1} | x_{t+1}, z2_t, a_t)
            z1 = _draw(z1_mean, z1_std, sample)
            z2_mean, z2_std = self.z2_transition(z1, z2, a)  # p(z2_{t+1} | z1_{t+1}, z2_t, a_t)
            z2 = _draw(z2_mean, z2_std, sample)
            z2_stds.append(z2_std)
            prior_mean.append(p_mean)
            prior_std.append(p_std)
            post_mean.append(z1_mean)
            post_std.append(z1_std)
            z1s.append(z1)
            z2s.append(z2)
        stack = lambda xs: torch.stack(xs, dim=1)  # noqa: E731
        return {"z1": stack(z1s), "z2": stack(z2s), "z1_mean": stack(post_mean), "z1_std": stack(post_std),
                "z2_std": stack(z2_stds), "prior_mean": stack(prior_mean), "prior_std": stack(prior_std)}

    @torch.no_grad()
    def latents(self, images: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Posterior samples z = (z1, z2) for a batch of sequences: (B, S+1, latent_dim)."""
        post = self.filter_sequence(self.encode(images), actions)
        return torch.cat([post["z1"], post["z2"]], dim=-1)

    def init_filter(self, image: torch.Tensor, sample: bool = True) -> dict:
        """Online filtering, first frame: image (B, C, H, W) -> state with 'z1', 'z2', 'z'."""
        z1_mean, z1_std = self.z1_posterior_init(self.encoder(image))
        z1 = _draw(z1_mean, z1_std, sample)
        z2_mean, z2_std = self.z2_init(z1)
        return self._state(z1, _draw(z2_mean, z2_std, sample), z1_mean, z1_std, z2_std)

    def filter_step(self, state: dict, image: torch.Tensor, action: torch.Tensor, sample: bool = True) -> dict:
        """One filtering step from the previous state, the action taken and the new frame."""
        z1_mean, z1_std = self.z1_posterior(self.encoder(image), state["z2"], action)
        z1 = _draw(z1_mean, z1_std, sample)
        z2_mean, z2_std = self.z2_transition(z1, state["z2"], action)
        return self._state(z1, _draw(z2_mean, z2_std, sample), z1_mean, z1_std, z2_std)

    @staticmethod
    def _state(z1, z2, z1_mean, z1_std, z2_std) -> dict:
        return {"z1": z1, "z2": z2, "z": torch.cat([z1, z2], dim=-1), "z1_mean": z1_mean, "z1_std": z1_std,
                "z2_std": z2_std}

    def decode(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Mean image of p(x | z1, z2), same leading dims, (..., C, H, W)."""
        return self.decoder(torch.cat([z1, z2], dim=-1))

    # -------------------------------------------------------------- learning
    def loss(self, images, actions, rewards, costs, terminated) -> tuple[torch.Tensor, dict[str, float]]:
        """Negative ELBO of a batch: images (B, S+1, C, H, W), actions (B, S, A), rest (B, S).

        Sequences never cross an episode end, so every reward and cost in them is real data and
        none is masked; ``terminated`` is accepted for interface symmetry.
        """
        post = self.filter_sequence(self.encode(images), actions)
        kl = gaussian_kl(post["z1_mean"], post["z1_std"], post["prior_mean"], post["prior_std"])
        loss_kl = kl.sum(-1).mean(0).sum()
        z = torch.cat([post["z1"], post["z2"]], dim=-1)  # (B, S+1, latent_dim)
        image_mean = self.decoder(z)
        loss_image = -gaussian_log_prob(images, image_mean, self.cfg.image_noise).sum((-3, -2, -1)).mean(0).sum()
        transition = torch.cat([z[:, :-1], actions, z[:, 1:]], dim=-1)  # (B, S, 2L + A)
        r_mean, r_std = self.reward(transition)
        loss_reward = -gaussian_log_prob(rewards.unsqueeze(-1), r_mean, r_std).squeeze(-1).mean(0).sum()
        cost_logit = self.cost(transition).squeeze(-1)
        loss_cost = F.binary_cross_entropy_with_logits(cost_logit, (costs > 0).float(), reduction="none")
        loss_cost = loss_cost.mean(0).sum()
        loss = loss_kl + loss_image + loss_reward + loss_cost
        metrics = {"loss/kl": loss_kl.item(), "loss/image": loss_image.item(), "loss/reward": loss_reward.item(),
                   "loss/cost": loss_cost.item(), "loss/model": loss.item()}
        return loss, metrics

    def update(self, images, actions, rewards, costs, terminated) -> dict[str, float]:
        """One Adam step on the negative ELBO, with gradient-norm clipping."""
        loss, metrics = self.loss(images, actions, rewards, costs, terminated)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.parameters(), self.cfg.grad_clip_norm, foreach=True)
        self.optimizer.step()
        metrics["loss/model_grad_norm"] = grad_norm.item()
        return metrics
