"""Differentially private training by composition: `make_private` wires DP into an ordinary `Trainer`.

As Opacus's `make_private(model, optimizer, loader)` wraps what the user already has, this installs
three pieces into a trainer and leaves the training loop unchanged:

    trainer.real_batch_sampler       <- PoissonSampler (rate q = batch_size / N, its own saved RNG)
    trainer.discriminator_gradients  <- PrivateDiscriminatorGradients (per-face clip + noise; fakes exact)
    trainer.opt_D step hook          <- PrivacyLedger.step (one charge per discriminator step, even empty)

plus a `PrivateDiscriminator` extension that refuses a step past the budget, reports epsilon, writes
the guarantee into the export and saves the ledger and RNGs for exact resume. `train_private` is the
entry point (`facegan.train` routes a config with `privacy` on to it).

kimg counts real images in expectation: each step adds batch_size = q N, so a kimg target is
planned_steps(kimg, batch_size) steps whatever the Poisson draws were.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from facegan.errors import FaceganError
from facegan.privacy.accounting import PrivacyLedger, default_delta, noise_multiplier_for, planned_steps
from facegan.privacy.dp import MECHANISM, PoissonSampler, PrivateDiscriminatorGradients
from facegan.privacy.validate import check_private_config, check_private_discriminator
from facegan.training.extensions import TrainerExtension

if TYPE_CHECKING:
    from facegan.training.config import PrivacyConfig, TrainConfig
    from facegan.training.loop import Trainer, TrainResult


class PrivateDiscriminator(TrainerExtension):
    """The privacy state of one run: sampler, gradient transform and ledger, as installed in a trainer."""

    def __init__(self, sampler: PoissonSampler, gradients: PrivateDiscriminatorGradients, ledger: PrivacyLedger) -> None:
        self.sampler = sampler
        self.gradients = gradients
        self.ledger = ledger

    @property
    def expected_batch_size(self) -> float:
        return self.sampler.expected_batch_size

    def charge_step(self, *_: Any) -> None:
        """The discriminator optimizer's step hook: exactly one accountant step, whatever the batch size (even 0)."""
        self.ledger.step()

    # ---- TrainerExtension ---------------------------------------------------------------------------
    def before_step(self, trainer: Trainer) -> None:
        if not self.ledger.can_step():
            raise FaceganError(
                f"the privacy budget of this run is spent (epsilon {self.ledger.epsilon():.3f} of {self.ledger.target_epsilon:g} "
                f"after {self.ledger.num_steps} steps); it cannot train further. Start a new run with a larger --dp-epsilon"
            )

    def extra_stats(self, trainer: Trainer) -> dict[str, float]:
        return {"epsilon": round(self.ledger.epsilon(), 5), "delta": self.ledger.delta}

    def export_metadata(self, trainer: Trainer) -> dict[str, Any]:
        ledger = self.ledger
        return {"dp": {
            "epsilon": ledger.epsilon(),
            "delta": ledger.delta,
            "target_epsilon": ledger.target_epsilon or None,
            "noise_multiplier": ledger.noise_multiplier,
            "max_grad_norm": self.gradients.max_grad_norm,
            "sample_rate": ledger.sample_rate,
            "steps": ledger.num_steps,
            "accountant": ledger.accountant_name,
            "mechanism": MECHANISM,
        }}

    def should_stop(self, trainer: Trainer) -> str | None:
        if trainer.num_images_seen >= int(trainer.config.kimg * 1000):
            return None  # the kimg target ends the run anyway: no budget search needed
        if self.ledger.can_step():
            return None
        return (f"privacy budget reached: epsilon {self.ledger.epsilon():.3f} of {self.ledger.target_epsilon:g} "
                f"(delta {self.ledger.delta:.3g}) after {self.ledger.num_steps} steps; one more step would exceed it")

    def state_dict(self) -> dict[str, Any]:
        return {"privacy": self.ledger.state_dict(), **self.sampler.state_dict(), **self.gradients.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "privacy" not in state:
            raise FaceganError("cannot resume with differential privacy: the checkpoint has no privacy ledger (it was not trained privately)")
        self.ledger.load_state_dict(state["privacy"])
        self.sampler.load_state_dict(state)
        self.gradients.load_state_dict(state)
        # The saved sigma (derived for the run's first kimg target) keeps being the one noised and charged.
        self.gradients.noise_multiplier = self.ledger.noise_multiplier


def make_private(trainer: Trainer, privacy: PrivacyConfig | None = None) -> PrivateDiscriminator:
    """Install DP-SGD on `trainer`'s discriminator (see the module docstring); refuses what would break the guarantee."""
    config = trainer.config
    privacy = privacy or config.privacy
    if trainer.context.enabled:
        raise FaceganError("differentially private training runs in one process; start it without torchrun")
    if trainer.real_batch_sampler is not None or trainer.discriminator_gradients is not None:
        raise FaceganError("this trainer already has a batch sampler or discriminator gradients installed; make it private once")
    check_private_discriminator(trainer.D)
    num_images = len(trainer.images)
    if config.batch_size > num_images:
        raise FaceganError(f"batch_size {config.batch_size} is larger than the dataset ({num_images} images); DP sampling needs batch_size <= N")
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
    ledger = PrivacyLedger(privacy.accountant, noise_multiplier, sample_rate, delta, privacy.epsilon, known_safe_steps)
    if known_safe_steps and ledger.epsilon_after(known_safe_steps) > privacy.epsilon:
        ledger.known_safe_steps = 0  # never trust the search blindly: the budget check then finds the limit
    if not ledger.can_step():
        raise FaceganError(
            f"--dp-epsilon {privacy.epsilon:g} does not cover even one step at noise multiplier {noise_multiplier:g} "
            f"(one step costs epsilon {ledger.epsilon_after(1):.3g}); raise --dp-epsilon or --dp-noise-multiplier"
        )
    # Own RNG streams (saved for exact resume): which faces each step reads, and the Gaussian noise.
    sampler = PoissonSampler(num_images, sample_rate, seed=config.seed * 1_000_003 + 4)
    gradients = PrivateDiscriminatorGradients(trainer.loss, privacy.max_grad_norm, ledger.noise_multiplier,
                                              sampler.expected_batch_size, seed=config.seed * 1_000_003 + 5, device=trainer.device)
    private = PrivateDiscriminator(sampler, gradients, ledger)
    trainer.real_batch_sampler = sampler
    trainer.discriminator_gradients = gradients
    trainer.opt_D.register_step_post_hook(private.charge_step)
    trainer.extensions.append(private)
    return private


def check_private_launch(config: TrainConfig) -> None:
    """Everything refusable before any work: the recipe (architecture's declaration, R1) and a torchrun launch."""
    check_private_config(config)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise FaceganError("differentially private training runs in one process; start it without torchrun")


def train_private(config: TrainConfig, **options: Any) -> TrainResult:
    """Train (or resume) `config` with DP-SGD on the discriminator; options as `facegan.training.loop.train`."""
    from facegan.training.loop import train

    if not config.privacy.enabled:
        raise FaceganError("this config does not ask for differential privacy (set --dp-epsilon or --dp-noise-multiplier)")
    check_private_launch(config)
    user_setup = options.pop("setup_trainer", None)

    def setup(trainer: Trainer) -> None:
        make_private(trainer, trainer.config.privacy)
        if user_setup is not None:  # the caller's own extensions come after the private pieces
            user_setup(trainer)

    return train(config, setup_trainer=setup, **options)
