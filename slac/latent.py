"""The Safe SLAC latent variable model: SLAC (Lee et al., 2019) plus a cost head (Hogewind et al., 2023).

Two latent levels per step, z_t = (z1_t, z2_t). Generative model:
    p(z1_0) = N(0, I),                     p(z2_0 | z1_0)
    p(z1_{t+1} | z2_t, a_t),                p(z2_{t+1} | z1_{t+1}, z2_t, a_t)
    p(x_t | z_t) = N(decoder(z_t), image_noise)    (image_noise is a variance, as in Safe SLAC)
    p(r_t | z_t, a_t, z_{t+1}) Gaussian,    p(c_t > 0 | z_t, a_t, z_{t+1}) Bernoulli
Filtering posterior (sharing the z2 distributions with the prior, as SLAC does):
    q(z1_0 | x_0),   q(z1_{t+1} | x_{t+1}, z2_t, a_t),   z2 from the same p(z2 | ...) as above.
Loss per sequence (the negative ELBO, SLAC eq. 6, plus Safe SLAC's cost term), summed over time
and dimensions, averaged over the batch (as SLAC and Safe SLAC reduce it):
    sum_t KL(q(z1_t | .) || p(z1_t | .)) - log p(x_t | z_t) - log p(r_t | .) + cost_t
    cost_t = -k (w y_t log p_t + (1 - y_t) log(1 - p_t)),   y_t = sign(c_t),  p_t = p(c_t > 0 | .)
with Safe SLAC's k = 30 and w = 100 (``cost_loss_scale``, ``cost_positive_weight``): a step with
cost weighs w times a step without, since the cost head is what puts hazards into the latent state.
Images are float tensors in [0, 1] (``to_float``); attacks measure their L-inf ball in this scale.
Each frame is encoded once per update; the filter then runs over features (the only sequential
part), and the priors, decoder and reward/cost heads run batched over all time steps.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from slac.config import ModelConfig
from slac.networks import Decoder, Encoder, GaussianHead, gaussian_kl, gaussian_log_prob, mlp


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def _draw(mean: torch.Tensor, std: torch.Tensor, sample: bool) -> torch.Tensor:
    """A reparameterised draw from N(mean, std^2), or the mean itself."""
    return mean + std * torch.randn_like(std) if sample else mean


class LatentModel(nn.Module):
    """Encoder, two-level latent filter/prior, decoder, reward and cost heads, and their optimiser."""

    def __init__(self, cfg: ModelConfig, action_dim: int, image_shape: tuple[int, ...] = (3, 64, 64)):
        super().__init__()
        self.cfg = cfg
        z1, z2, feat, hidden = cfg.z1_dim, cfg.z2_dim, cfg.feature_dim, list(cfg.hidden_units)
        self.latent_dim = z1 + z2
        image_shape, a = tuple(image_shape), action_dim
        self.encoder = Encoder(image_shape, feat, bf16=cfg.bf16_convs)  # x_t -> feat_t
        self.decoder = Decoder(self.latent_dim, image_shape, bf16=cfg.bf16_convs, width=cfg.decoder_width)  # p(x_t|z_t)
        self.z2_init = GaussianHead(z1, z2, hidden)  # p(z2_0 | z1_0), shared by prior and posterior
        self.z1_prior = GaussianHead(z2 + a, z1, hidden)  # p(z1_{t+1} | z2_t, a_t)
        self.z2_transition = GaussianHead(z1 + z2 + a, z2, hidden)  # p(z2_{t+1} | z1_{t+1}, z2_t, a_t)
        self.z1_posterior_init = GaussianHead(feat, z1, hidden)  # q(z1_0 | x_0)
        self.z1_posterior = GaussianHead(feat + z2 + a, z1, hidden)  # q(z1_{t+1} | x_{t+1}, z2_t, a_t)
        transition_dim = 2 * self.latent_dim + action_dim
        self.reward = GaussianHead(transition_dim, 1, hidden)  # p(r_t | z_t, a_t, z_{t+1})
        self.cost = mlp(transition_dim, 1, hidden)  # logit of p(c_t > 0 | z_t, a_t, z_{t+1})
        self.optimizer = torch.optim.Adam(self.parameters(), lr=cfg.lr, foreach=True)

    # ------------------------------------------------------------ inference
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) in [0, 1] -> features (B, T, F)."""
        return self.encoder(images)

    def filter_sequence(self, features: torch.Tensor, actions: torch.Tensor, sample: bool = True,
                        prior: bool = True) -> dict:
        """Filter a sequence: features (B, S+1, F), actions (B, S, A) with actions[:, t] from t to t+1.

        Returns, all (B, S+1, .): posterior z1 stats 'z1_mean', 'z1_std' and draws 'z1'; z2 draws
        'z2' and the std 'z2_std' of the distribution each was drawn from (what latent attacks
        measure their ball in); and, unless ``prior=False``, the z1 prior 'prior_mean',
        'prior_std' along the posterior path. With ``sample=False`` every draw is its mean.
        """
        z1_mean, z1_std = self.z1_posterior_init(features[:, 0])  # q(z1_0 | x_0), (B, z1)
        z1 = _draw(z1_mean, z1_std, sample)
        z2_mean, z2_std = self.z2_init(z1)  # p(z2_0 | z1_0), (B, z2)
        z2 = _draw(z2_mean, z2_std, sample)
        steps = [(z1_mean, z1_std, z1, z2, z2_std)]
        for t in range(actions.shape[1]):
            a = actions[:, t]
            z1_mean, z1_std = self.z1_posterior(features[:, t + 1], z2, a)  # q(z1_{t+1} | x_{t+1}, z2_t, a_t)
            z1 = _draw(z1_mean, z1_std, sample)
            z2_mean, z2_std = self.z2_transition(z1, z2, a)  # p(z2_{t+1} | z1_{t+1}, z2_t, a_t)
            z2 = _draw(z2_mean, z2_std, sample)
            steps.append((z1_mean, z1_std, z1, z2, z2_std))
        keys = ("z1_mean", "z1_std", "z1", "z2", "z2_std")
        out = {k: torch.stack(v, dim=1) for k, v in zip(keys, zip(*steps, strict=True), strict=True)}
        if prior:
            # p(z1_{t+1} | z2_t, a_t) for all t at once, after p(z1_0) = N(0, I): (B, S+1, z1)
            mean, std = self.z1_prior(out["z2"][:, :-1], actions)
            out["prior_mean"] = torch.cat([torch.zeros_like(mean[:, :1]), mean], dim=1)
            out["prior_std"] = torch.cat([torch.ones_like(std[:, :1]), std], dim=1)
        return out

    @torch.no_grad()
    def latents(self, images: torch.Tensor, actions: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """Posterior draws z = (z1, z2) for a batch of sequences (means with ``sample=False``): (B, S+1, latent_dim)."""
        post = self.filter_sequence(self.encode(images), actions, sample=sample, prior=False)
        return torch.cat([post["z1"], post["z2"]], dim=-1)

    def _encode_online(self, image: torch.Tensor) -> torch.Tensor:
        """The online filter's frame (B, C, H, W) -> (B, F): in float32 unless ``model.bf16_acting``. One frame
        at a time, bf16 is slower than float32 on a CPU (1.23 against 0.83 ms per filter step, measured)."""
        return self.encoder(image, allow_bf16=self.cfg.bf16_acting)

    def init_filter(self, image: torch.Tensor, sample: bool = True) -> dict:
        """Online filtering, first frame: image (B, C, H, W) -> state with 'z1', 'z2', 'z' (B, .)."""
        z1_mean, z1_std = self.z1_posterior_init(self._encode_online(image))  # q(z1_0 | x_0)
        z1 = _draw(z1_mean, z1_std, sample)
        z2_mean, z2_std = self.z2_init(z1)  # p(z2_0 | z1_0)
        return self._state(z1, _draw(z2_mean, z2_std, sample), z1_mean, z1_std, z2_std)

    def filter_step(self, state: dict, image: torch.Tensor, action: torch.Tensor,
                    sample: bool = True) -> dict:
        """One filtering step from the previous state, the action a_{t-1} taken and the new frame x_t."""
        # q(z1_t | x_t, z2_{t-1}, a_{t-1})
        z1_mean, z1_std = self.z1_posterior(self._encode_online(image), state["z2"], action)
        z1 = _draw(z1_mean, z1_std, sample)
        z2_mean, z2_std = self.z2_transition(z1, state["z2"], action)  # p(z2_t | z1_t, z2_{t-1}, a_{t-1})
        return self._state(z1, _draw(z2_mean, z2_std, sample), z1_mean, z1_std, z2_std)

    @staticmethod
    def _state(z1, z2, z1_mean, z1_std, z2_std) -> dict:
        return {"z1": z1, "z2": z2, "z": torch.cat([z1, z2], dim=-1), "z1_mean": z1_mean, "z1_std": z1_std,
                "z2_std": z2_std}

    def decode(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Mean image of p(x | z1, z2), same leading dims, (..., C, H, W)."""
        return self.decoder(torch.cat([z1, z2], dim=-1))

    # -------------------------------------------------------------- learning
    def loss(self, images, actions, rewards, costs) -> tuple[torch.Tensor, dict[str, float]]:
        """Negative ELBO of a batch: images (B, S+1, C, H, W), actions (B, S, A), rewards and costs (B, S).

        Sequences never cross an episode end, so every reward and cost in them is real data and
        none is masked.
        """
        batch = images.shape[0]
        post = self.filter_sequence(self.encode(images), actions)
        # KL(q(z1_t | .) || p(z1_t | .)), summed over dims and time
        kl = gaussian_kl(post["z1_mean"], post["z1_std"], post["prior_mean"], post["prior_std"])
        loss_kl = kl.sum() / batch
        z = torch.cat([post["z1"], post["z2"]], dim=-1)  # (B, S+1, latent_dim)
        # -log N(x; decoder(z), σ²) = (x - mean)² / (2σ²) + log σ + log(2π)/2 per pixel, σ² = image_noise
        sigma = math.sqrt(self.cfg.image_noise)
        squared_error = (images - self.decoder(z)).square().sum()
        log_normaliser = math.log(sigma) + 0.5 * math.log(2 * math.pi)
        loss_image = (0.5 * squared_error / sigma**2 + images.numel() * log_normaliser) / batch
        transition = torch.cat([z[:, :-1], actions, z[:, 1:]], dim=-1)  # (z_t, a_t, z_{t+1}): (B, S, 2L + A)
        r_mean, r_std = self.reward(transition)  # p(r_t | z_t, a_t, z_{t+1}), (B, S, 1)
        loss_reward = -gaussian_log_prob(rearrange(rewards, "b s -> b s 1"), r_mean, r_std).sum() / batch
        cost_logit = rearrange(self.cost(transition), "b s 1 -> b s")  # p(c_t > 0 | z_t, a_t, z_{t+1})
        labels = (costs > 0).float()  # Safe SLAC's label: sign(c_t), costs being >= 0
        positive_weight = torch.tensor(self.cfg.cost_positive_weight, device=cost_logit.device)
        bce = F.binary_cross_entropy_with_logits(cost_logit, labels, pos_weight=positive_weight, reduction="sum")
        loss_cost = self.cfg.cost_loss_scale * bce / batch
        loss = loss_kl + loss_image + loss_reward + loss_cost
        names = ("loss/kl", "loss/image", "loss/reward", "loss/cost", "loss/model")
        values = torch.stack([loss_kl, loss_image, loss_reward, loss_cost, loss]).tolist()  # one device sync
        return loss, dict(zip(names, values, strict=True))

    def update(self, images, actions, rewards, costs) -> dict[str, float]:
        """One Adam step on the negative ELBO, with global gradient-norm clipping."""
        loss, metrics = self.loss(images, actions, rewards, costs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.parameters(), self.cfg.grad_clip_norm, foreach=True)
        self.optimizer.step()
        metrics["loss/model_grad_norm"] = grad_norm.item()
        return metrics
