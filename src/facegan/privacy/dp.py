r"""DP-SGD for GAN training: the pieces that make the discriminator's real-image gradient private.

Each step Poisson-samples the real faces (each one independently, at rate q = batch_size / N, so the
batch size varies and may be empty) and sets the discriminator's gradient to

    (sum_i clip_C(g_i) + N(0, sigma^2 C^2 I)) / (q N)   +   gradient of the fake-image loss
     \_____ real faces: per sample, clipped, noised ___/     \___ no private data: exact ___/

where g_i is one real face's loss gradient over all discriminator parameters (clipped by their joint
L2 norm). Per-sample gradients come from torch.func (vmap over grad) on the real faces only: no
wrapper module, so no `.grad_sample` that a fake pass could pollute and no `_module.` key prefix.

    PoissonSampler              which faces a step reads (its own saved RNG)
    PrivateDiscriminatorGradients   the gradient transform above (its own saved noise RNG)

`facegan.privacy.training.make_private` installs both into a trainer, with a `PrivacyLedger` charged
once per discriminator optimizer step (never for fakes: opacus issue #418). Nothing here needs a
`Trainer`: a federated client can compose the same pieces around its own discriminator.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from facegan.training.losses import AdversarialLoss, get_loss

MECHANISM = "DP-SGD on discriminator real-sample gradients"


def _as_loss(loss: AdversarialLoss | str) -> AdversarialLoss:
    return get_loss(loss) if isinstance(loss, str) else loss


def per_sample_gradients(discriminator: nn.Module, images: torch.Tensor,
                         loss: AdversarialLoss | str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each real face's loss gradient for every parameter, name -> (N, *shape), and the faces' logits (N,)."""
    loss = _as_loss(loss)
    params = {name: p.detach() for name, p in discriminator.named_parameters() if p.requires_grad}
    buffers = {name: b.detach() for name, b in discriminator.named_buffers()}
    if images.shape[0] == 0:  # an empty Poisson batch: no gradient, but the step still adds noise
        return {name: p.new_zeros((0, *p.shape)) for name, p in params.items()}, images.new_zeros(0)

    def one_face(params: dict[str, torch.Tensor], image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = functional_call(discriminator, (params, buffers), (image.unsqueeze(0),)).float().reshape(())  # (1, C, H, W) -> ()
        return loss.real_sample_losses(logit), logit.detach()

    # randomness="different": dropout draws a mask per face, as in an ordinary batched forward pass.
    return vmap(grad(one_face, has_aux=True), in_dims=(None, 0), randomness="different")(params, images)


def clip_and_noise(per_sample: dict[str, torch.Tensor], max_grad_norm: float, noise_multiplier: float,
                   expected_batch_size: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The private mean real-face gradient: (sum of per-face gradients clipped to norm C, + N(0, sigma^2 C^2)) / E[batch].

    Clipping uses each face's norm over all parameters together, so adding or removing one face moves the
    sum by at most C (replacing one, 2C); dividing by the expected batch size, not the drawn one, keeps that
    bound independent of the data.
    """
    first = next(iter(per_sample.values()))
    squared_norms = torch.zeros(first.shape[0], device=first.device)  # (N,)
    for gradient in per_sample.values():
        squared_norms += gradient.flatten(1).float().pow(2).sum(1)
    scale = (max_grad_norm / (squared_norms.sqrt() + 1e-6)).clamp(max=1.0)  # (N,), as Opacus's clipping
    private = {}
    for name, gradient in per_sample.items():
        summed = torch.einsum("n,n...->...", scale.to(gradient.dtype), gradient)  # (*shape)
        if noise_multiplier > 0:
            noise = torch.randn(summed.shape, generator=generator, device=summed.device, dtype=summed.dtype)
            summed = summed + noise * (noise_multiplier * max_grad_norm)
        private[name] = summed / expected_batch_size
    return private


class PoissonSampler:
    """Poisson sampling: every one of `num_items` joins a batch independently with probability `sample_rate`."""

    def __init__(self, num_items: int, sample_rate: float, seed: int) -> None:
        self.num_items = int(num_items)
        self.sample_rate = float(sample_rate)
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def expected_batch_size(self) -> float:
        return self.sample_rate * self.num_items

    def __call__(self) -> torch.Tensor:
        """Indices (B,) of this step's batch, B ~ Binomial(N, q); may be empty."""
        chosen = torch.rand(self.num_items, generator=self.generator) < self.sample_rate  # (N,)
        return chosen.nonzero().squeeze(1)

    def state_dict(self) -> dict[str, Any]:
        return {"rng_sampling": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["rng_sampling"])


class PrivateDiscriminatorGradients:
    """The discriminator's gradient with real faces clipped per sample and noised, fakes added exactly.

    Sets `.grad` (no optimizer step). `make_private` sets `noise_multiplier` from the ledger (also after a
    resume), so the sigma added here is the sigma charged on each optimizer step.
    """

    def __init__(self, loss: AdversarialLoss | str, max_grad_norm: float, noise_multiplier: float,
                 expected_batch_size: float, seed: int, device: torch.device) -> None:
        self.loss = _as_loss(loss)
        self.max_grad_norm = float(max_grad_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.expected_batch_size = float(expected_batch_size)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def accumulate(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, *,
                   forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   augment: Callable[[torch.Tensor], torch.Tensor] = lambda images: images,
                   autocast: Callable[[], AbstractContextManager] = nullcontext) -> dict[str, torch.Tensor]:
        """Add the private real-face gradient and the exact fake-image gradient to `discriminator`'s .grad.

        Returns detached 0-d stats without a host sync: `logit_fake` always, `loss_d` and `logit_real`
        only when the batch held real faces (known from its shape). They are diagnostics for the run
        folder, not covered by the guarantee.
        """
        forward = forward or discriminator
        # Fakes: an ordinary batched pass; they hold no private data, so they are neither clipped, noised nor charged.
        with autocast():
            fake_logits = forward(augment(fake)).float()
            fake_loss = self.loss.fake_batch_loss(fake_logits)
        fake_loss.backward()
        # Reals: per-face gradients, clipped and noised; the only place private data meets a gradient.
        augmented = augment(real) if real.shape[0] else real
        with autocast():
            per_sample, real_logits = per_sample_gradients(discriminator, augmented, self.loss)
        private = clip_and_noise(per_sample, self.max_grad_norm, self.noise_multiplier, self.expected_batch_size, self.generator)
        for name, param in discriminator.named_parameters():
            if param.grad is None:
                param.grad = private[name].to(param.dtype).clone()
            else:
                param.grad.add_(private[name].to(param.dtype))
        stats = {"logit_fake": fake_logits.detach().mean()}
        if real.shape[0]:
            # In float64: the sum of the two float32 halves, exactly as a Python float sum of their values.
            stats["loss_d"] = self.loss.real_sample_losses(real_logits).mean().double() + fake_loss.detach().double()
            stats["logit_real"] = real_logits.mean()
        return stats

    def __call__(self, trainer: Any, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """The `Trainer.discriminator_gradients` slot: this transform on the trainer's D, augmentation and autocast."""
        return self.accumulate(trainer.D, real, fake, forward=trainer.D_forward, augment=trainer.augment, autocast=trainer.autocast)

    def state_dict(self) -> dict[str, Any]:
        return {"rng_privacy_noise": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["rng_privacy_noise"])
