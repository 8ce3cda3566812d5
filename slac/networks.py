"""Network building blocks: MLPs, the image encoder/decoder, Gaussian heads."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F


def mlp(in_dim: int, out_dim: int, hidden: list[int], activation=nn.LeakyReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), activation()]
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """x -> (mean, std) of a diagonal Gaussian; std = softplus(.) + 1e-5 as in SLAC."""

    def __init__(self, in_dim: int, out_dim: int, hidden: list[int]):
        super().__init__()
        self.net = mlp(in_dim, 2 * out_dim, hidden)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0]
        mean, raw_std = self.net(x).chunk(2, dim=-1)
        return mean, F.softplus(raw_std) + 1e-5


def check_image_size(image_shape: tuple[int, ...]) -> None:
    from envs.errors import InputError

    if tuple(image_shape[1:]) != (64, 64):
        raise InputError(f"the latent model's encoder/decoder take 64x64 images (Safe SLAC's size); got "
                         f"{tuple(image_shape)}; use image_size=64")


class ConvNet(nn.Module):
    """Runs ``self.net`` in channels-last layout (faster oneDNN kernels on CPU, same numbers) and,
    when ``bf16`` is set, under bfloat16 autocast (about 2x faster convolutions on CPUs with
    AVX512-BF16 or AMX; the parameters, the optimiser and the losses stay float32)."""

    net: nn.Sequential

    def __init__(self, bf16: bool):
        super().__init__()
        self.bf16 = bf16

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.net(x).float()


class Encoder(ConvNet):
    """x_t (C, 64, 64) in [0, 1] -> feature (feature_dim,): SLAC's five-layer convnet."""

    def __init__(self, channels: int, feature_dim: int, bf16: bool = False):
        super().__init__(bf16)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 5, 2, 2), nn.LeakyReLU(0.2),  # 32x32
            nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2),  # 16x16
            nn.Conv2d(64, 128, 3, 2, 1), nn.LeakyReLU(0.2),  # 8x8
            nn.Conv2d(128, 256, 3, 2, 1), nn.LeakyReLU(0.2),  # 4x4
            nn.Conv2d(256, feature_dim, 4), nn.LeakyReLU(0.2),  # 1x1
        ).to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        lead = images.shape[:-3]
        x = self.run(images.reshape(-1, *images.shape[-3:]))  # (N, F, 1, 1)
        return x.reshape(*lead, -1)


class Decoder(ConvNet):
    """z_t = (z1, z2) -> mean of p(x_t | z_t), (C, 64, 64); the std is the fixed image noise."""

    def __init__(self, latent_dim: int, channels: int, bf16: bool = False):
        super().__init__(bf16)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 256, 4), nn.LeakyReLU(0.2),  # 4x4
            nn.ConvTranspose2d(256, 128, 3, 2, 1, 1), nn.LeakyReLU(0.2),  # 8x8
            nn.ConvTranspose2d(128, 64, 3, 2, 1, 1), nn.LeakyReLU(0.2),  # 16x16
            nn.ConvTranspose2d(64, 32, 3, 2, 1, 1), nn.LeakyReLU(0.2),  # 32x32
            nn.ConvTranspose2d(32, channels, 5, 2, 2, 1),  # 64x64
        ).to(memory_format=torch.channels_last)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        x = self.run(rearrange(z.reshape(-1, z.shape[-1]), "n d -> n d 1 1"))
        return x.reshape(*lead, *x.shape[1:])


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """Elementwise log N(x; mean, std^2)."""
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)


def gaussian_kl(mean_q, std_q, mean_p, std_p) -> torch.Tensor:
    """Elementwise KL(N(mean_q, std_q^2) || N(mean_p, std_p^2))."""
    var_ratio = (std_q / std_p) ** 2
    return 0.5 * (var_ratio + ((mean_q - mean_p) / std_p) ** 2 - 1 - torch.log(var_ratio))
