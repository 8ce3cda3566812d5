"""Perturbation balls and projected gradient ascent (PGD) inside them.

A ball is a set around a clean point ``center`` that an attack may move to. Every method returns
points inside the ball: the random start, each gradient step (followed by a projection) and the
projection itself. With radius 0 the ball is the single point ``center`` and every method
returns exactly ``center``.

- :class:`BoxBall` is an L∞ ball with a per-element radius ``epsilon * scale``, intersected with
  a valid range ``[low, high]``. Pixel balls use scale 1 and range [0, 1]; latent balls in
  posterior-std units use the posterior std as scale. A step moves every element by
  ``step_size * scale`` in the direction of the gradient's sign (FGSM/PGD, Madry et al., 2018).
- :class:`L2Ball` is an L2 ball of radius ``epsilon`` over the elements a ``mask`` selects, per
  row (first dimension). A step moves by ``step_size`` along the normalised gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class BoxBall:
    """{x : |x - center| <= epsilon * scale elementwise, low <= x <= high}."""

    def __init__(self, center: torch.Tensor, epsilon: float, scale: torch.Tensor | float = 1.0,
                 low: float | None = None, high: float | None = None):
        self.center = center.detach()
        self.radius = epsilon * torch.as_tensor(scale, dtype=center.dtype, device=center.device)
        self.scale = scale
        self.lower = self.center - self.radius
        self.upper = self.center + self.radius
        if low is not None:
            self.lower = self.lower.clamp(min=low)
        if high is not None:
            self.upper = self.upper.clamp(max=high)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(x, self.lower), self.upper)

    def random(self) -> torch.Tensor:
        """A uniform draw from the L∞ box (then clipped to the valid range)."""
        noise = torch.empty_like(self.center).uniform_(-1.0, 1.0)
        return self.project(self.center + noise * self.radius)

    def step(self, x: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
        return self.project(x + step_size * self.scale * grad.sign())


class L2Ball:
    """{x : ||(x - center) * mask||_2 <= epsilon per row, x = center where mask is 0}."""

    def __init__(self, center: torch.Tensor, epsilon: float, mask: torch.Tensor | float = 1.0):
        self.center = center.detach()
        self.epsilon = float(epsilon)
        self.mask = torch.as_tensor(mask, dtype=center.dtype, device=center.device).expand_as(center)

    def _norm(self, v: torch.Tensor) -> torch.Tensor:
        """Per-row L2 norm, shaped to broadcast against ``v``."""
        return v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.dim() - 1)))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        delta = (x - self.center) * self.mask
        factor = (self.epsilon / self._norm(delta)).clamp(max=1.0)
        return self.center + delta * factor

    def random(self) -> torch.Tensor:
        """A uniform draw from the ball: a Gaussian direction, radius ε U^(1/d)."""
        direction = torch.randn_like(self.center) * self.mask
        dims = self.mask.flatten(1).sum(1).clamp_min(1).view(-1, *([1] * (self.center.dim() - 1)))
        radius = self.epsilon * torch.rand_like(dims) ** (1.0 / dims)
        return self.project(self.center + direction / self._norm(direction) * radius)

    def step(self, x: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
        g = grad * self.mask
        return self.project(x + step_size * g / self._norm(g))


def pgd(ball: BoxBall | L2Ball, objective: Callable[[torch.Tensor], torch.Tensor], steps: int,
        step_size: float, random_start: bool) -> torch.Tensor:
    """Projected gradient ascent on ``objective`` (per-row values, maximised) inside ``ball``.

    ``steps=1`` without a random start is FGSM. Gradients are taken with respect to the input
    only (``torch.autograd.grad``): no network parameter accumulates a gradient.
    """
    x = ball.random() if random_start else ball.center.clone()
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(objective(x).sum(), x)
        x = ball.step(x.detach(), grad, step_size)
    return x.detach()
