"""Adversarial losses (a registry by name) and the R1 penalty. Logits in, losses out.

Each loss is split by what it reads: a per-sample loss on real images (differential privacy clips
each real face's gradient, so it needs them one by one), a per-sample loss on generated images, and
the generator's loss. The discriminator loss is the mean of the first plus the mean of the second;
the plain trainer and the private discriminator both use these same formulas.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from facegan.registry import Registry


@dataclass(frozen=True)
class AdversarialLoss:
    """One GAN loss, split into the parts that read real images, generated images, and the generator's view."""

    name: str
    real_sample_losses: Callable[[torch.Tensor], torch.Tensor]
    """Each real image's discriminator loss: logits (N,) -> losses (N,)."""
    fake_sample_losses: Callable[[torch.Tensor], torch.Tensor]
    """Each generated image's discriminator loss: logits (N,) -> losses (N,)."""
    generator_loss: Callable[[torch.Tensor], torch.Tensor]
    """The generator's loss on a batch of generated images: logits (N,) -> scalar."""

    def fake_batch_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """The generated-image half of `discriminator_loss` (generated images carry no private data)."""
        return self.fake_sample_losses(fake_logits).mean()

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """D wants real -> high, fake -> low: the mean real-image loss plus the mean generated-image loss."""
        return self.real_sample_losses(real_logits).mean() + self.fake_batch_loss(fake_logits)


_LOSSES: Registry[AdversarialLoss] = Registry("loss", unknown="unknown loss.kind '{name}' (known: {known})")


def register_loss(loss: AdversarialLoss) -> AdversarialLoss:
    """Add a loss under its name; a name already taken is refused (no silent replacement)."""
    return _LOSSES.add(loss.name, loss)


def unregister_loss(name: str) -> None:
    """Remove a registered loss (for tests and plug-ins that register temporarily)."""
    _LOSSES.remove(name)


def available_losses() -> tuple[str, ...]:
    return tuple(_LOSSES.names())


def get_loss(kind: str) -> AdversarialLoss:
    """The registered loss called `kind` (`loss.kind` in the config)."""
    return _LOSSES.get(kind)


# BCE with logits: -log sigmoid(real) - log(1 - sigmoid(fake)) = softplus(-real) + softplus(fake);
# the generator uses the non-saturating form -log sigmoid(fake).
register_loss(AdversarialLoss(
    name="logistic",
    real_sample_losses=lambda real_logits: F.softplus(-real_logits),
    fake_sample_losses=lambda fake_logits: F.softplus(fake_logits),
    generator_loss=lambda fake_logits: F.softplus(-fake_logits).mean(),
))
register_loss(AdversarialLoss(
    name="hinge",
    real_sample_losses=lambda real_logits: F.relu(1.0 - real_logits),
    fake_sample_losses=lambda fake_logits: F.relu(1.0 + fake_logits),
    generator_loss=lambda fake_logits: -fake_logits.mean(),
))


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D wants real -> high, fake -> low (the registered loss `kind`)."""
    return get_loss(kind).discriminator_loss(real_logits, fake_logits)


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """G wants fake -> high (the registered loss `kind`)."""
    return get_loss(kind).generator_loss(fake_logits)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||d D(x) / d x||^2 on real images (x must require grad)."""
    (gradient,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return gradient.pow(2).flatten(1).sum(1).mean()
