"""Training configuration: one dataclass per concern; their union is a run's resolved config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from facegan.config import check_range, format_gib, show_value
from facegan.errors import FaceganError
from facegan.models.config import ModelConfig

# The augmentation policy names (training.augment implements one `_name` method per entry); kept here
# so that validating a config does not import the augmentation code (no import cycle).
KNOWN_POLICIES = ("color", "translation", "cutout")

# Sizes beyond which a run cannot fit any machine: refused before any work, with an estimate.
MAX_BATCH_SIZE = 65536
MAX_KIMG = 1e9
MAX_SEED = 2**32  # the loop derives its RNG seeds as seed * 1_000_003 + k, which must stay within 64 bits
MAX_THREADS = 4096


@dataclass
class LossConfig:
    """Adversarial loss and its regularisation."""

    kind: Literal["logistic", "hinge"] = "logistic"
    """`logistic`: BCE minimax with the non-saturating generator loss; `hinge`: hinge loss."""
    r1_gamma: float = 0.1
    """Weight of the R1 gradient penalty on real images (0 disables it)."""
    r1_interval: int = 16
    """Apply R1 every this many discriminator steps (lazy regularisation, scaled to compensate)."""

    def validate(self) -> None:
        check_range("loss.r1_gamma", self.r1_gamma, 0, 1e6, hint="0 disables the R1 penalty")
        check_range("loss.r1_interval", self.r1_interval, 1, 1_000_000)


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

    def validate(self) -> None:
        for name in ("lr_g", "lr_d"):
            check_range(f"optimizer.{name}", getattr(self, name), 0, 1, min_open=True, hint="GAN learning rates are typically 1e-4 to 2e-3")
        for name in ("beta1", "beta2"):
            check_range(f"optimizer.{name}", getattr(self, name), 0, 1, max_open=True)


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

    def validate(self) -> None:
        check_range("augment.probability", self.probability, 0, 1)
        check_range("augment.translation_ratio", self.translation_ratio, 0, 1, max_open=True, hint="DiffAugment uses 0.125")
        check_range("augment.cutout_ratio", self.cutout_ratio, 0, 1, hint="DiffAugment uses 0.5")
        unknown = [name.strip() for name in self.policy.split(",") if name.strip() and name.strip() not in KNOWN_POLICIES]
        if unknown:
            raise FaceganError(f"unknown augmentation '{unknown[0]}' (known: {', '.join(KNOWN_POLICIES)})")


@dataclass
class EmaConfig:
    """Exponential moving average of the generator weights, used for sampling and export."""

    enabled: bool = True
    """Keep an EMA copy (else the raw generator is exported)."""
    half_life_kimg: float = 5.0
    """Half-life of the average in thousands of images."""
    rampup: float = 0.05
    """Early in training the half-life is at most this fraction of the images seen so far."""

    def validate(self) -> None:
        check_range("ema.half_life_kimg", self.half_life_kimg, 0, MAX_KIMG, min_open=True)
        check_range("ema.rampup", self.rampup, 0, 1e6, hint="0 turns the ramp-up off")


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

    def validate(self) -> None:
        check_range("runtime.num_threads", self.num_threads, 0, MAX_THREADS, hint="0 uses all cores")


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

    def validate(self) -> None:
        """Ranges only; whether the recipe can be trained privately is checked by `facegan.privacy`."""
        check_range("privacy.epsilon (--dp-epsilon)", self.epsilon, 0, 1e6, hint="0 = not set")
        check_range("privacy.noise_multiplier (--dp-noise-multiplier)", self.noise_multiplier, 0, 1e6, hint="0 = derive it from epsilon")
        check_range("privacy.max_grad_norm (--dp-max-grad-norm)", self.max_grad_norm, 0, 1e6, min_open=True)
        check_range("privacy.delta (--dp-delta)", self.delta, 0, 1, max_open=True, hint="0 picks 1/(10 N)")


IDENTITY_MODES = ("auto", "embedding", "split-latent")
MAX_IDENTITY_IMAGES = 1024


@dataclass
class IdentityConfig:
    """Identity-consistent generation (`--condition identity`); off by default (`condition: none`)."""

    condition: Literal["none", "identity"] = "none"
    """`identity`: learn faces of new people, many images each (see `mode`); `none`: an ordinary GAN."""
    mode: Literal["auto", "embedding", "split-latent"] = "auto"
    """`embedding`: identity-conditional G and projection D from the dataset's identity labels; `split-latent`:
    the first identity_dim entries of z are the identity, trained with dlib's recogniser; `auto`: embedding when
    the dataset has identity labels, else split-latent (resolved once, saved in the run config)."""
    identity_dim: int = 32
    """Entries of z that code the identity (split-latent), or size of the learned identity embedding."""
    weight: float = 1.0
    """Weight of the identity loss (split-latent) in its own generator update."""
    lr: float = 1e-3
    """Learning rate of the identity-loss generator updates (their own Adam, split-latent)."""
    every: int = 1
    """Identity-loss generator update every this many steps (split-latent; lazy, like R1)."""
    identities: int = 4
    """Identity codes per identity-loss update (split-latent)."""
    per_identity: int = 3
    """Nuisance codes (images) per identity code in each identity-loss update (split-latent)."""
    margin: float = 0.1
    """Hinge margin around dlib's 0.6 match threshold: same identity pulled below 0.6 - margin, different pushed beyond 0.6 + margin."""
    augment: bool = True
    """Randomly shift/scale/flip/re-light/noise/blur the generated faces before the recogniser sees them."""

    @property
    def enabled(self) -> bool:
        return self.condition == "identity"

    def validate(self, z_dim: int) -> None:
        # Ranges always (a saved config holds no absurd number); the split of z only when the mode is on.
        check_range("identity.identity_dim", self.identity_dim, 1, 4096)
        check_range("identity.weight", self.weight, 0, 1e6)
        check_range("identity.lr", self.lr, 0, 1, min_open=True)
        check_range("identity.every", self.every, 1, 1_000_000)
        check_range("identity.identities", self.identities, 2, 4096, hint="different identities are needed to push them apart")
        check_range("identity.per_identity", self.per_identity, 2, 4096, hint="two images of one identity are needed to pull them together")
        check_range("identity.margin", self.margin, 0, 0.6, max_open=True)
        if self.identities * self.per_identity > MAX_IDENTITY_IMAGES:
            raise FaceganError(f"identity.identities x identity.per_identity = {self.identities * self.per_identity} images per identity update, "
                               f"at most {MAX_IDENTITY_IMAGES} (each goes through dlib's ResNet at 150 px; typical: 4 x 3)")
        if self.enabled and self.identity_dim >= z_dim:
            raise FaceganError(f"identity.identity_dim={self.identity_dim} must be below model.z_dim={z_dim} "
                               "(the rest of z codes everything but the identity); lower it or raise model.z_dim")


@dataclass
class FingerprintLossConfig:
    """Teach the generator the learned fingerprint its training faces carry (`facegan train --fingerprint FP`).

    Yu et al. (2021) let a GAN pick the key up from fingerprinted training faces alone; at 32 px and 50 kimg
    facegan's generator then carried it in a few of its faces (`mark_data`, weight 0). With `path` set, the
    fingerprint's (frozen) decoder reads the generated faces, after a random differentiable distortion, and its binary
    cross-entropy against the key is minimised (the idea of Fernandez et al.'s Stable Signature, 2023): by default
    ('tune') in a fine-tune of the finished generator that also keeps each face close to the untuned one's, and the
    GAN trains on the plain faces. It reads no real image and leaves the discriminator alone, so it composes with DP
    training (post-processing).
    """

    path: str = ""
    """The fingerprint folder (`facegan fingerprint train`) whose key the generator learns; "" = no such loss."""
    mark_data: bool = False
    """Train on faces that carry the key too (Yu et al.'s recipe; `train --fingerprint` makes the marked copy of the
    data). Off by default: on the built-in faces the tune after training on marked faces cost more FD than the same
    tune after training on plain faces (README). With weight 0 the marked data alone teaches the key."""
    weight: float = 0.025
    """Weight of the decoder's binary cross-entropy against the key (0: off, the data alone). In 'joint' mode it sets the
    trade between the key and face quality: with the default codec (16x16 grid, 32 dB) a 50 kimg GAN on the built-in
    faces trained on marked faces read 0.968 of 32 bits at 0.025, at 1.26 times an unmarked GAN's FD (three seeds;
    README). In 'separate' mode
    its own Adam normalises the step: above 0 the weight matters little. In 'tune' mode only 0 (off) or not matters:
    `tune_consistency` sets the trade."""
    every: int = 1
    """Apply the loss every this many steps (lazy, like R1; 'separate' mode was measured at 4)."""
    mode: str = "tune"
    """'tune': the GAN trains with no fingerprint loss, and when training ends its export is fine-tuned toward the key
    with a consistency term to the untuned faces (`tune_*`; Stable Signature's recipe; the checkpoint keeps the untuned
    weights, so a resumed run trains on and is tuned again). 'joint': the weighted loss is added to G's adversarial loss
    on the faces D judges, in G's own step and optimizer. 'separate': an extra G update on fresh faces with the loss's
    own Adam (`lr`). At the same bit accuracy both cost more FD than 'tune' (README)."""
    lr: float = 2e-4
    """Learning rate of the separate updates (their own Adam, so the GAN's moments are not shared)."""
    distort: bool = True
    """Pass the generated faces through one random differentiable distortion (JPEG, resize, crop, blur, noise) first."""
    tune_steps: int = 1500
    """'tune' mode: fine-tuning steps (of `batch_size` latents each) on the finished generator."""
    tune_consistency: float = 100.0
    """'tune' mode: weight of the mean squared difference (model units) from the untuned generator's face for the same
    latent; higher keeps the faces closer and reads fewer bits."""
    tune_lr: float = 2e-4
    """'tune' mode: (peak) learning rate of the fine-tune's Adam (betas 0, 0.99)."""
    tune_schedule: str = "cosine"
    """'tune' mode: 'cosine' (the rate falls from tune_lr to 0 over the steps) or 'constant'."""

    @property
    def enabled(self) -> bool:
        return bool(self.path) and self.weight > 0

    def validate(self) -> None:
        if not isinstance(self.path, str):
            raise FaceganError(f"fingerprint.path must be a folder name, got {self.path!r:.40}")
        if not isinstance(self.mark_data, bool):
            raise FaceganError(f"fingerprint.mark_data must be true or false, got {self.mark_data!r:.40}")
        check_range("fingerprint.weight", self.weight, 0, 1e6, hint="0 turns the fingerprint loss off")
        check_range("fingerprint.every", self.every, 1, 1_000_000)
        check_range("fingerprint.lr", self.lr, 0, 1, min_open=True)
        if self.mode not in ("tune", "joint", "separate"):
            raise FaceganError(f"fingerprint.mode must be 'tune', 'joint' or 'separate', got {self.mode!r:.40}")
        check_range("fingerprint.tune_steps", self.tune_steps, 1, 10_000_000)
        check_range("fingerprint.tune_consistency", self.tune_consistency, 0, 1e9)
        check_range("fingerprint.tune_lr", self.tune_lr, 0, 1, min_open=True)
        if self.tune_schedule not in ("cosine", "constant"):
            raise FaceganError(f"fingerprint.tune_schedule must be 'cosine' or 'constant', got {self.tune_schedule!r:.40}")


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
    init_from: str = ""
    """Run folder to warm-start G and D from (public pretraining; its data must share no image with `data`)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    fingerprint: FingerprintLossConfig = field(default_factory=FingerprintLossConfig)

    def validate(self) -> None:
        """Refuse impossible options before any work starts."""
        if not self.data:
            raise FaceganError("no dataset given: pass --data DATASET (a folder made by `facegan data prepare`)")
        if not self.out:
            raise FaceganError("no run folder given: pass --out runs/NAME")
        check_range("--kimg", self.kimg, 0, MAX_KIMG, min_open=True, hint="the training length in thousands of images, e.g. --kimg 100")
        check_range("seed", self.seed, 0, MAX_SEED, max_open=True)
        self._validate_batch_size()
        self.model.validate()
        self.loss.validate()
        self.optimizer.validate()
        self.augment.validate()
        self.ema.validate()
        self._validate_schedule()
        self.runtime.validate()
        self.privacy.validate()
        self.identity.validate(self.model.z_dim)
        self.fingerprint.validate()
        if self.identity.enabled and self.privacy.enabled and self.identity.mode == "embedding":
            raise FaceganError("--condition identity with identity labels (mode embedding) cannot be trained with --dp-*: "
                               "the labels and the projection discriminator's embeddings are not under DP; "
                               "drop --dp-* or use --set identity.mode=split-latent")

    def _validate_batch_size(self) -> None:
        if self.batch_size < 2:
            raise FaceganError(f"batch_size must be at least 2, got {self.batch_size}")
        if self.batch_size > MAX_BATCH_SIZE:
            side = self.model.resolution or 64
            channels = self.model.channels or 3
            # One float32 copy of the real batch alone, before any activation.
            size = format_gib(self.batch_size * side * side * channels * 4)
            raise FaceganError(
                f"batch_size={show_value(self.batch_size)} would need {size} for one {side}x{side} batch of images alone; "
                f"at most {MAX_BATCH_SIZE} (typical: 16 to 256)"
            )

    def _validate_schedule(self) -> None:
        schedule = self.schedule
        for name in ("log_kimg", "snapshot_kimg", "checkpoint_kimg"):
            check_range(f"schedule.{name}", getattr(schedule, name), 0, MAX_KIMG, min_open=True)
        check_range("schedule.metric_kimg", schedule.metric_kimg, 0, MAX_KIMG, hint="0 = never")
        check_range("schedule.max_minutes", schedule.max_minutes, 0, 1e9, hint="0 = no limit")
        check_range("schedule.checkpoint_minutes", schedule.checkpoint_minutes, 0, 1e9, hint="0 = only on kimg")
        check_range("schedule.num_snapshot_images", schedule.num_snapshot_images, 1, 4096)
        check_range("schedule.metric_num", schedule.metric_num, 2, 10_000_000)


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
