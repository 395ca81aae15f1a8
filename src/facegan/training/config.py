"""Training configuration: one dataclass per concern; their union is a run's resolved config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from facegan.errors import FaceganError
from facegan.models.config import ModelConfig


@dataclass
class LossConfig:
    """Adversarial loss and its regularisation."""

    kind: Literal["logistic", "hinge"] = "logistic"
    """`logistic`: BCE minimax with the non-saturating generator loss; `hinge`: hinge loss."""
    r1_gamma: float = 0.1
    """Weight of the R1 gradient penalty on real images (0 disables it)."""
    r1_interval: int = 16
    """Apply R1 every this many discriminator steps (lazy regularisation, scaled to compensate)."""


@dataclass
class OptimizerConfig:
    """Adam settings for both networks."""

    lr_g: float = 2e-4
    """Generator learning rate."""
    lr_d: float = 2e-4
    """Discriminator learning rate."""
    beta1: float = 0.0
    """Adam beta1."""
    beta2: float = 0.99
    """Adam beta2."""


@dataclass
class AugmentConfig:
    """Differentiable augmentation (DiffAugment) applied to every image the discriminator sees."""

    policy: str = "color,translation,cutout"
    """Comma-separated subset of color, translation, cutout; empty disables augmentation."""
    probability: float = 1.0
    """Chance that each image is augmented (per image, per step)."""
    translation_ratio: float = 0.125
    """Largest shift as a fraction of the image side."""
    cutout_ratio: float = 0.5
    """Side of the cut-out square as a fraction of the image side."""


@dataclass
class EmaConfig:
    """Exponential moving average of the generator weights, used for sampling and export."""

    enabled: bool = True
    """Keep an EMA copy (else the raw generator is exported)."""
    half_life_kimg: float = 5.0
    """Half-life of the average in thousands of images."""
    rampup: float = 0.05
    """Early in training the half-life is at most this fraction of the images seen so far."""


@dataclass
class ScheduleConfig:
    """How often to log, snapshot and checkpoint, in kimg."""

    log_kimg: float = 1.0
    """Write a stats.jsonl line every this many kimg."""
    snapshot_kimg: float = 10.0
    """Write a sample grid at fixed seeds every this many kimg."""
    checkpoint_kimg: float = 10.0
    """Write the resume state and the export every this many kimg."""
    num_snapshot_images: int = 64
    """Images in each snapshot grid (seeds 0..N-1)."""
    metric_kimg: float = 0.0
    """Measure FD/KID every this many kimg (0 = never); the best export is kept in export-best/."""
    metric_num: int = 500
    """Generated (and real) images per training-time measurement."""
    metric_features: str = "face"
    """Feature space of training-time metrics (a registered extractor: face, inception)."""
    max_minutes: float = 0.0
    """Also stop after this much training time (0 = no limit); for equal-CPU-time comparisons."""
    checkpoint_minutes: float = 5.0
    """Also write the resume state every this many minutes of wall time (0 = only every checkpoint_kimg), so a killed run loses minutes."""


@dataclass
class RuntimeConfig:
    """Where and how fast to run; none of this changes what is learned, only speed."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` picks CUDA when present."""
    amp: bool = True
    """Mixed precision: bfloat16 autocast on CUDA and on CPUs with native bf16 (avx512_bf16/AMX); fp32 elsewhere."""
    channels_last: bool = True
    """NHWC memory layout for convolutions."""
    compile: bool = False
    """torch.compile the networks (slow start; helps long runs on GPU)."""
    num_threads: int = 0
    """Torch CPU threads (0 = all cores)."""
    tensorboard: bool = True
    """Write TensorBoard event files under the run folder."""


@dataclass
class PrivacyConfig:
    """Differentially private training of the discriminator (DP-SGD through Opacus); off by default."""

    epsilon: float = 0.0
    """Target epsilon of the whole run; 0 with noise_multiplier 0 means no DP."""
    delta: float = 0.0
    """Target delta; 0 picks 1 / (10 * number of training images)."""
    noise_multiplier: float = 0.0
    """Gaussian noise std as a multiple of max_grad_norm; 0 derives it from epsilon."""
    max_grad_norm: float = 1.0
    """Per-sample gradient clipping bound C."""
    accountant: Literal["rdp", "prv"] = "prv"
    """Opacus privacy accountant."""

    @property
    def enabled(self) -> bool:
        return self.epsilon > 0 or self.noise_multiplier > 0


@dataclass
class TrainConfig:
    """Everything a training run needs; saved resolved as the run's config.json."""

    data: str = ""
    """Prepared dataset folder (`facegan data prepare`)."""
    out: str = ""
    """Run folder to create (or resume)."""
    preset: str = "default"
    """Starting point for every other field: `default`, `seed-dcgan` or `dp`."""
    kimg: float = 100.0
    """Training length in thousands of real images shown."""
    batch_size: int = 64
    """Images per step (over all processes)."""
    seed: int = 0
    """Seed for weights, data order, noise and augmentation."""
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def validate(self) -> None:
        """Refuse impossible options before any work starts."""
        if not self.data:
            raise FaceganError("no dataset given: pass --data DATASET (a folder made by `facegan data prepare`)")
        if not self.out:
            raise FaceganError("no run folder given: pass --out runs/NAME")
        if self.kimg <= 0:
            raise FaceganError(f"--kimg must be positive, got {self.kimg}")
        if self.batch_size < 2:
            raise FaceganError(f"batch_size must be at least 2, got {self.batch_size}")
        if self.loss.r1_gamma < 0 or self.loss.r1_interval < 1:
            raise FaceganError("loss.r1_gamma must be >= 0 and loss.r1_interval >= 1")
        if not 0.0 <= self.augment.probability <= 1.0:
            raise FaceganError(f"augment.probability must be in [0, 1], got {self.augment.probability}")
        from facegan.training.augment import KNOWN_POLICIES

        unknown = [name for name in self.augment.policy.split(",") if name.strip() and name.strip() not in KNOWN_POLICIES]
        if unknown:
            raise FaceganError(f"unknown augmentation '{unknown[0]}' (known: {', '.join(KNOWN_POLICIES)})")
        if self.schedule.metric_kimg < 0 or self.schedule.metric_num < 2:
            raise FaceganError("schedule.metric_kimg must be >= 0 and schedule.metric_num >= 2")
        for name in ("log_kimg", "snapshot_kimg", "checkpoint_kimg"):
            if getattr(self.schedule, name) <= 0:
                raise FaceganError(f"schedule.{name} must be positive")
        if self.ema.half_life_kimg <= 0:
            raise FaceganError("ema.half_life_kimg must be positive")
        for name in ("lr_g", "lr_d"):
            if getattr(self.optimizer, name) <= 0:
                raise FaceganError(f"optimizer.{name} must be positive")
        self.model.validate()
        from facegan.privacy.validate import check_private_config

        check_private_config(self)


PRESETS: dict[str, dict[str, Any]] = {
    # The modern recipe we recommend: spectral-norm D, non-saturating logistic loss, lazy R1, EMA of G,
    # DiffAugment so that a hundred faces do not collapse; these are the dataclass defaults.
    "default": {},
    # The classic DCGAN recipe (TensorFlow tutorial architecture): dense -> BatchNorm -> LeakyReLU ->
    # transposed convs; conv D with dropout; BCE with the non-saturating G loss; Adam 1e-4 (Keras
    # defaults: beta1 0.9, LeakyReLU slope 0.3). No EMA, no augmentation, no penalty.
    "seed-dcgan": {
        "model": {
            "architecture": "dcgan",
            "z_dim": 100,
            "g_channels": 256,
            "d_channels": 256,
            "leaky_slope": 0.3,
            "spectral_norm": False,
            "d_dropout": 0.3,
            "minibatch_std": False,
        },
        "loss": {"kind": "logistic", "r1_gamma": 0.0},
        "optimizer": {"lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.9, "beta2": 0.999},
        "augment": {"policy": ""},
        "ema": {"enabled": False},
    },
    # `default` made ready for differentially private training (--dp-epsilon): every discriminator
    # layer must give per-sample gradients and no real-image gradient may bypass DP clipping, so no
    # spectral norm (a parametrization Opacus cannot differentiate per sample), no minibatch std
    # (mixes samples), GroupNorm instead, and no R1 penalty (an unclipped gradient on real images).
    "dp": {
        "model": {"spectral_norm": False, "d_norm": "group", "minibatch_std": False},
        "loss": {"r1_gamma": 0.0},
    },
}


def resolve_config(preset: str = "default", updates: dict[str, Any] | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults < preset < explicit updates (a nested mapping) < `--set key=value` strings."""
    from facegan.config import apply_overrides, merge

    if preset not in PRESETS:
        raise FaceganError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
    config = merge(TrainConfig(preset=preset), PRESETS[preset])
    if updates:
        config = merge(config, updates)
    if overrides:
        config = apply_overrides(config, overrides)
    return config
