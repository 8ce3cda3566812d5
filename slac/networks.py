"""Network building blocks: MLPs, the image encoder/decoder, Gaussian and tanh-Gaussian heads.

Architectures and initialisation follow SLAC / Safe SLAC (``slac/network/latent.py``, ``sac.py``,
``initializer.py`` of LAVA-LAB/safe-slac): ELU in the latent model's MLPs and in the encoder,
LeakyReLU(0.2) in the decoder and in the actor/critics, Xavier-uniform weights and zero biases.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from slac.config import decoder_channels
from slac.errors import InputError

# the encoder halves the image four times, then one convolution covers what is left
IMAGE_DIVISOR = 16


def xavier_init(module: nn.Module) -> None:
    """SLAC's initialiser: Xavier-uniform weights, zero biases, for linear and convolutional layers."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def mlp(in_dim: int, out_dim: int, hidden: list[int], activation=nn.ELU) -> nn.Sequential:
    """Linear layers of sizes ``hidden`` with ``activation`` between them, and a linear output."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), activation()]
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers).apply(xavier_init)


class GaussianHead(nn.Module):
    """inputs -> (mean, std) of a diagonal Gaussian; std = softplus(.) + 1e-5 as in SLAC.

    Several inputs are concatenated on the last dim; any leading dims pass through.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: list[int]):
        super().__init__()
        self.net = mlp(in_dim, 2 * out_dim, hidden)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0]
        mean, raw_std = self.net(x).chunk(2, dim=-1)
        return mean, F.softplus(raw_std) + 1e-5


def tanh_gaussian_sample(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised a = tanh(u), u ~ N(mean, std^2), and log π(a) summed over the last dim.

    log π(a) = log N(u; mean, std) − Σ log(1 − tanh(u)^2), the tanh change of variables, with
    log(1 − tanh(u)^2) = 2 (log 2 − u − softplus(−2u)) (exact, and stable for large |u|).
    """
    noise = torch.randn_like(std)
    u = mean + std * noise
    log_prob = (-0.5 * noise**2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
    return torch.tanh(u), log_prob


def check_image_size(image_shape: tuple[int, ...]) -> None:
    """The encoder/decoder take (C, H, W) images with H and W positive multiples of 16 (64x64 in
    Safe SLAC; 32, 48, 96, 128, ... also work, non-square too)."""
    if len(image_shape) != 3 or any(s <= 0 or s % IMAGE_DIVISOR for s in image_shape[1:]):
        raise InputError(f"the latent model takes (C, H, W) images with H and W multiples of {IMAGE_DIVISOR} "
                         f"(e.g. 64x64, Safe SLAC's size); got {tuple(image_shape)}")


@functools.cache
def native_bf16(device_type: str) -> bool:
    """Whether bfloat16 convolutions are fast on this machine: a GPU with bf16 support, or a CPU that
    oneDNN runs bf16 on natively (AVX512 or AMX). Without it oneDNN emulates bf16, ~10x slower than
    float32 (measured on an AVX2-only AMD EPYC, docs/performance.md)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


@functools.cache
def _warn_bf16_not_native(device_type: str) -> None:
    warnings.warn(f"model.bf16_convs is set but this {device_type} has no native bfloat16 convolutions; "
                  "they run in float32 (emulated bf16 would be ~10x slower)", stacklevel=3)


class ConvNet(nn.Module):
    """Runs ``self.net`` in channels-last layout (faster oneDNN kernels on CPU, same numbers) and,
    when ``bf16`` is set and the device has native bfloat16 (``native_bf16``), under bfloat16
    autocast (about 2x faster convolutions on CPUs with AVX512-BF16 or AMX; the parameters, the
    optimiser and the losses stay float32). Elsewhere a requested bf16 runs as float32, with a warning."""

    net: nn.Sequential

    def __init__(self, bf16: bool):
        super().__init__()
        self.bf16 = bf16

    def uses_bf16(self, device: torch.device) -> bool:
        if self.bf16 and not native_bf16(device.type):
            _warn_bf16_not_native(device.type)
            return False
        return self.bf16

    def run(self, x: torch.Tensor, allow_bf16: bool = True) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=allow_bf16 and self.uses_bf16(x.device)):
            return self.net(x).float()


class Encoder(ConvNet):
    """x_t (C, H, W) in [0, 1] -> feature (feature_dim,): SLAC's five-layer convnet.

    Four stride-2 convolutions take H x W to H/16 x W/16 (64x64 -> 4x4); the last convolution's
    kernel covers that map, giving a 1x1 feature.
    """

    def __init__(self, image_shape: tuple[int, ...], feature_dim: int, bf16: bool = False):
        super().__init__(bf16)
        check_image_size(image_shape)
        channels, height, width = image_shape
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 5, 2, 2), nn.ELU(),  # (32, H/2, W/2)
            nn.Conv2d(32, 64, 3, 2, 1), nn.ELU(),  # (64, H/4, W/4)
            nn.Conv2d(64, 128, 3, 2, 1), nn.ELU(),  # (128, H/8, W/8)
            nn.Conv2d(128, 256, 3, 2, 1), nn.ELU(),  # (256, H/16, W/16)
            nn.Conv2d(256, feature_dim, (height // IMAGE_DIVISOR, width // IMAGE_DIVISOR)),
            nn.ELU(),  # (F, 1, 1)
        ).apply(xavier_init).to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor, allow_bf16: bool = True) -> torch.Tensor:
        """(..., C, H, W) -> (..., F); ``allow_bf16`` False runs float32 even where ``bf16`` is set."""
        lead = images.shape[:-3]
        x = self.run(images.reshape(-1, *images.shape[-3:]), allow_bf16)  # (N, F, 1, 1)
        return x.reshape(*lead, -1)


class Decoder(ConvNet):
    """z_t = (z1, z2) -> mean of p(x_t | z_t), (C, H, W); the std is the fixed image noise.

    The mirror image of the encoder: a transposed convolution to (256, H/16, W/16), then four
    stride-2 upsamplings. (Safe SLAC also puts a LeakyReLU on the output; the mean here is linear.)
    """

    def __init__(self, latent_dim: int, image_shape: tuple[int, ...], bf16: bool = False, width: float = 1.0):
        """``width`` scales the hidden channel counts (SLAC's 256, 128, 64, 32 at 1)."""
        super().__init__(bf16)
        check_image_size(image_shape)
        channels, height, width_px = image_shape
        c1, c2, c3, c4 = decoder_channels(width)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, c1, (height // IMAGE_DIVISOR, width_px // IMAGE_DIVISOR)),
            nn.LeakyReLU(0.2),  # (256, H/16, W/16)
            nn.ConvTranspose2d(c1, c2, 3, 2, 1, 1), nn.LeakyReLU(0.2),  # (128, H/8, W/8)
            nn.ConvTranspose2d(c2, c3, 3, 2, 1, 1), nn.LeakyReLU(0.2),  # (64, H/4, W/4)
            nn.ConvTranspose2d(c3, c4, 3, 2, 1, 1), nn.LeakyReLU(0.2),  # (32, H/2, W/2)
            nn.ConvTranspose2d(c4, channels, 5, 2, 2, 1),  # (C, H, W)
        ).apply(xavier_init).to(memory_format=torch.channels_last)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(..., latent_dim) -> (..., C, H, W)."""
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
