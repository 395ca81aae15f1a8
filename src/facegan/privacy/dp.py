r"""DP-SGD for GAN training: only the discriminator's gradient from real faces is private.

Each step Poisson-samples the real faces (each one independently, at rate q = batch_size / N, so the
batch size varies and may be empty) and sets the discriminator's gradient to

    (sum_i clip_C(g_i) + N(0, sigma^2 C^2 I)) / (q N)   +   gradient of the fake-image loss
     \_____ real faces: per sample, clipped, noised ___/     \___ no private data: exact ___/

where g_i is one real face's loss gradient over all discriminator parameters (clipped by their joint
L2 norm). Per-sample gradients come from torch.func (vmap over grad) on the real faces only: no
wrapper module, so no `.grad_sample` that a fake pass could pollute and no `_module.` key prefix.
The accountant is charged once per discriminator step, never for fakes (opacus issue #418), and the
generator learns through the private discriminator: post-processing, at no privacy cost. The R1
penalty (an unclipped real-image gradient) is refused by `validate.check_private_config`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.images import to_model
from facegan.privacy.accounting import PrivacyLedger, default_delta, noise_multiplier_for, planned_steps
from facegan.privacy.validate import check_private_config, check_private_discriminator
from facegan.training.config import TrainConfig
from facegan.training.distributed import DistributedContext
from facegan.training.loop import Trainer

MECHANISM = "DP-SGD on discriminator real-sample gradients"


def real_sample_losses(kind: str, real_logits: torch.Tensor) -> torch.Tensor:
    """Each real face's discriminator loss (N,); `losses.discriminator_loss` is their mean plus `fake_batch_loss`."""
    return F.relu(1.0 - real_logits) if kind == "hinge" else F.softplus(-real_logits)


def fake_batch_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The fake half of `losses.discriminator_loss`: a mean over generated images, which carry no private data."""
    return F.relu(1.0 + fake_logits).mean() if kind == "hinge" else F.softplus(fake_logits).mean()


def per_sample_gradients(discriminator: nn.Module, images: torch.Tensor, loss_kind: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each real face's loss gradient for every parameter, name -> (N, *shape), and the faces' logits (N,)."""
    params = {name: p.detach() for name, p in discriminator.named_parameters() if p.requires_grad}
    buffers = {name: b.detach() for name, b in discriminator.named_buffers()}
    if images.shape[0] == 0:  # an empty Poisson batch: no gradient, but the step still adds noise
        return {name: p.new_zeros((0, *p.shape)) for name, p in params.items()}, images.new_zeros(0)

    def one_face(params: dict[str, torch.Tensor], image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = functional_call(discriminator, (params, buffers), (image.unsqueeze(0),)).float().reshape(())  # (1, C, H, W) -> ()
        return real_sample_losses(loss_kind, logit), logit.detach()

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


class PrivateTrainer(Trainer):
    """The GAN trainer with a differentially private discriminator (see the module docstring).

    kimg counts real images in expectation: each step adds batch_size = q N, so a kimg target is
    planned_steps(kimg, batch_size) steps whatever the Poisson draws were.
    """

    def __init__(self, config: TrainConfig, dataset: FaceDataset, device: torch.device, context: DistributedContext) -> None:
        check_private_config(config)
        if context.enabled:
            raise FaceganError("differentially private training runs in one process; start it without torchrun")
        super().__init__(config, dataset, device, context)
        check_private_discriminator(self.D)
        num_images = len(self.images)
        if config.batch_size > num_images:
            raise FaceganError(f"batch_size {config.batch_size} is larger than the dataset ({num_images} images); DP sampling needs batch_size <= N")
        privacy = config.privacy
        delta = privacy.delta or default_delta(num_images)
        if delta >= 1 / num_images:
            raise FaceganError(f"--dp-delta {delta:g} is not below 1/N = {1 / num_images:.3g}; use a smaller delta or 0 for 1/(10 N)")
        sample_rate = config.batch_size / num_images
        num_planned = planned_steps(config.kimg, config.batch_size)
        noise_multiplier, known_safe_steps = privacy.noise_multiplier, 0
        if noise_multiplier <= 0:
            # Derived for this run's kimg target; a resumed run takes the saved value from its checkpoint instead.
            noise_multiplier = noise_multiplier_for(privacy.epsilon, delta, sample_rate, num_planned, privacy.accountant)
            known_safe_steps = num_planned
        self.ledger = PrivacyLedger(privacy.accountant, noise_multiplier, sample_rate, delta, privacy.epsilon, known_safe_steps)
        if known_safe_steps and self.ledger.epsilon_after(known_safe_steps) > privacy.epsilon:
            self.ledger.known_safe_steps = 0  # never trust the search blindly: the budget check then finds the limit
        if not self.ledger.can_step():
            raise FaceganError(
                f"--dp-epsilon {privacy.epsilon:g} does not cover even one step at noise multiplier {noise_multiplier:g} "
                f"(one step costs epsilon {self.ledger.epsilon_after(1):.3g}); raise --dp-epsilon or --dp-noise-multiplier"
            )
        # Own RNG streams (saved for exact resume): which faces each step reads, and the Gaussian noise.
        self.sampling_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 4)
        self.privacy_noise_rng = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + 5)

    @property
    def expected_batch_size(self) -> float:
        return self.ledger.sample_rate * len(self.images)

    # ---- data ------------------------------------------------------------------------------------
    def next_real_batch(self) -> torch.Tensor:
        """Poisson sampling: every training face joins this step's batch independently with probability q."""
        chosen = torch.rand(len(self.images), generator=self.sampling_rng) < self.ledger.sample_rate  # (N,)
        indices = chosen.nonzero().squeeze(1)
        real = to_model(self.images[indices.to(self.images.device)], self.device)  # (B, C, H, W), B ~ Binomial(N, q)
        return real.contiguous(memory_format=self.memory_format)

    # ---- one step ----------------------------------------------------------------------------------
    def accumulate_discriminator_gradients(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """Set D's .grad to the private real-face gradient plus the exact fake-image gradient (no optimizer step)."""
        kind = self.config.loss.kind
        # Fakes: an ordinary batched pass; they hold no private data, so they are neither clipped, noised nor charged.
        with self.autocast():
            fake_logits = self.D_forward(self.augment(fake)).float()
            fake_loss = fake_batch_loss(kind, fake_logits)
        fake_loss.backward()
        # Reals: per-face gradients, clipped and noised; the only place private data meets a gradient.
        augmented = self.augment(real) if real.shape[0] else real
        with self.autocast():
            per_sample, real_logits = per_sample_gradients(self.D, augmented, kind)
        private = clip_and_noise(per_sample, self.config.privacy.max_grad_norm, self.ledger.noise_multiplier,
                                 self.expected_batch_size, self.privacy_noise_rng)
        for name, param in self.D.named_parameters():
            if param.grad is None:
                param.grad = private[name].to(param.dtype).clone()
            else:
                param.grad.add_(private[name].to(param.dtype))
        stats = {"logit_fake": fake_logits.mean().item()}
        if real.shape[0]:  # diagnostics on real faces, for the run folder only (not covered by the guarantee)
            stats["loss_d"] = real_sample_losses(kind, real_logits).mean().item() + fake_loss.item()
            stats["logit_real"] = real_logits.mean().item()
        return stats

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """One private D update on a Poisson batch of reals (maybe empty) and a batch of detached fakes."""
        self.opt_D.zero_grad(set_to_none=True)
        stats = self.accumulate_discriminator_gradients(real, fake)
        self.opt_D.step()
        self.ledger.step()  # exactly one charge per D step, whatever the batch size (even 0)
        return stats

    def step(self) -> dict[str, float]:
        if not self.ledger.can_step():
            raise FaceganError(
                f"the privacy budget of this run is spent (epsilon {self.ledger.epsilon():.3f} of {self.ledger.target_epsilon:g} "
                f"after {self.ledger.num_steps} steps); it cannot train further. Start a new run with a larger --dp-epsilon"
            )
        return super().step()

    # ---- extension points ---------------------------------------------------------------------------
    def extra_stats(self) -> dict[str, float]:
        return {"epsilon": round(self.ledger.epsilon(), 5), "delta": self.ledger.delta}

    def export_metadata(self) -> dict[str, Any]:
        ledger = self.ledger
        return {"dp": {
            "epsilon": ledger.epsilon(),
            "delta": ledger.delta,
            "target_epsilon": ledger.target_epsilon or None,
            "noise_multiplier": ledger.noise_multiplier,
            "max_grad_norm": self.config.privacy.max_grad_norm,
            "sample_rate": ledger.sample_rate,
            "steps": ledger.num_steps,
            "accountant": ledger.accountant_name,
            "mechanism": MECHANISM,
        }}

    def should_stop(self) -> str | None:
        if self.num_images_seen >= int(self.config.kimg * 1000):
            return None  # the kimg target ends the run anyway: no budget search needed
        if self.ledger.can_step():
            return None
        return (f"privacy budget reached: epsilon {self.ledger.epsilon():.3f} of {self.ledger.target_epsilon:g} "
                f"(delta {self.ledger.delta:.3g}) after {self.ledger.num_steps} steps; one more step would exceed it")

    # ---- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(privacy=self.ledger.state_dict(), rng_sampling=self.sampling_rng.get_state(),
                     rng_privacy_noise=self.privacy_noise_rng.get_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "privacy" not in state:
            raise FaceganError("cannot resume with differential privacy: the checkpoint has no privacy ledger (it was not trained privately)")
        super().load_state_dict(state)
        self.ledger.load_state_dict(state["privacy"])
        self.sampling_rng.set_state(state["rng_sampling"])
        self.privacy_noise_rng.set_state(state["rng_privacy_noise"])
