"""Repair-network training configuration (`facegan repair train`): one dataclass per concern, saved as the run's config.json.

Torch-free, like the other configs: validating a config (or `--dry-run`) loads no network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from facegan.config import check_range
from facegan.errors import FaceganError

REPAIR_KIND = "repair"
# Must match facegan.repair.masks.MASK_KINDS / facegan.repair.degrade.DEGRADATIONS (a test checks); spelled here
# so that validating a config imports neither numpy-heavy module.
MASK_KINDS = ("box", "strokes", "eyes", "mouth")
DEGRADATIONS = ("noise", "blur", "jpeg")
ANCHOR_NAMES = ("aligned", "rendered")  # repair.masks.ALIGNED_ANCHORS / RENDERED_ANCHORS
# Training severity ranges (repair.degrade's TRAINING_*; a test checks they agree).
TRAINING_NOISE_SIGMA = (5.0, 50.0)
TRAINING_BLUR_FACTOR = (0.5, 2.0)
TRAINING_JPEG_QUALITY = (5, 40)
# Fields that define what is being learned: a resumed run must agree with the saved one on all of them
# ("data" is compared by the dataset's content hash, not by how its path was spelled).
RESUME_LOCKED_FIELDS = ("kind", "batch_size", "seed", "model", "loss", "damage", "optimizer")
MAX_SEED = 2**32  # RNG seeds are derived as seed * 1_000_003 + k, which must stay within 64 bits
MIN_RESOLUTION, MAX_RESOLUTION = 16, 256  # RepairNet's range: square power-of-two chips


@dataclass
class RepairModelConfig:
    """The completion network (`repair.model.RepairNet`) and its patch discriminator."""

    width: int = 32
    """Channels of the first generator layer (doubled per downsampling, at most 8x)."""
    discriminator_width: int = 32
    """Channels of the discriminator's first layer (doubled per layer, at most 4x)."""

    def validate(self) -> None:
        check_range("model.width", self.width, 4, 512)
        check_range("model.discriminator_width", self.discriminator_width, 4, 512)


@dataclass
class RepairLossConfig:
    """Weights of the generator's loss terms (the discriminator always uses the hinge loss)."""

    l1: float = 1.0
    """Mean absolute error of the network's prediction against the clean image, over every pixel."""
    damaged_l1: float = 5.0
    """Extra L1 on the damaged pixels only (the holes; every pixel of a degraded image), averaged over them."""
    adversarial: float = 0.02
    """SN-PatchGAN hinge loss of the repaired image (0 = no discriminator: plain L1, blurrier fills)."""
    identity: float = 0.1
    """Distance of the repaired face to the clean face in dlib's 128-D face space (differentiable port)."""
    identity_every: int = 4
    """Compute the identity term every this many steps, weighted by as much (dlib's ResNet costs ~10x the repair net)."""
    identity_recogniser: str = "dlib"
    """Face space of the identity term: "dlib" (the differentiable port), or a `facegan recog train` run/export, whose
    L2-normalised descriptors are compared instead (Euclidean distance on the unit sphere: monotone in its cosine rule).
    Train it on the repair net's own training people, never on the people it will be evaluated on."""

    def validate(self) -> None:
        for name in ("l1", "damaged_l1", "adversarial", "identity"):
            check_range(f"loss.{name}", getattr(self, name), 0, 1e4)
        if self.l1 + self.damaged_l1 == 0:
            raise FaceganError("loss.l1 and loss.damaged_l1 are both 0: the network would get no reconstruction signal; keep one above 0")
        check_range("loss.identity_every", self.identity_every, 1, 10**6)
        if not isinstance(self.identity_recogniser, str) or not self.identity_recogniser:
            raise FaceganError("loss.identity_recogniser is empty; use \"dlib\" or a `facegan recog train` run/export")


@dataclass
class RepairDamageConfig:
    """What the network learns to undo: random holes of the listed kinds, or (with some probability) a degradation."""

    mask_kinds: list[str] = field(default_factory=lambda: list(MASK_KINDS))
    """Hole shapes drawn uniformly per image: box, strokes (free-form), eyes (a sunglasses band), mouth (lower face)."""
    min_hole_ratio: float = 0.05
    """Smallest share of missing pixels in a training mask."""
    max_hole_ratio: float = 0.6
    """Largest share of missing pixels in a training mask (the evaluation bands reach 60%)."""
    degradation_probability: float = 0.25
    """Share of training images that get a degradation (and no hole) instead of a mask."""
    degradations: list[str] = field(default_factory=lambda: list(DEGRADATIONS))
    """Degradations drawn uniformly (or by degradation_weights): noise (Gaussian), blur (Gaussian), jpeg (low quality)."""
    degradation_weights: list[float] = field(default_factory=list)
    """Relative frequencies of the listed degradations, one per name (empty = uniform), e.g. [1, 1, 3] to show the
    network three times as much JPEG, the damage it learns slowest."""
    flip: bool = True
    """Random horizontal flips of the clean images."""
    anchors: Literal["aligned", "rendered"] = "aligned"
    """Where eye bands and lower-face masks go (repair.masks): "aligned" for dlib-aligned photo chips and builtin:lfw-subset
    (eye line 0.37 of the height), "rendered" for builtin:rendered-faces (eye line 0.49)."""
    noise_sigma: list[float] = field(default_factory=lambda: list(TRAINING_NOISE_SIGMA))
    """Range [low, high] of the Gaussian noise sigma (0..255 scale), drawn uniformly per image."""
    blur_factor: list[float] = field(default_factory=lambda: list(TRAINING_BLUR_FACTOR))
    """Range [low, high] of the blur sigma as a multiple of the default (1.5 px at 64 px, scaled with the side)."""
    jpeg_quality: list[int] = field(default_factory=lambda: list(TRAINING_JPEG_QUALITY))
    """Range [low, high] of the JPEG quality (whole numbers, both ends included)."""

    def validate(self) -> None:
        _check_names("damage.mask_kinds", self.mask_kinds, MASK_KINDS)
        _check_names("damage.degradations", self.degradations, DEGRADATIONS)
        if self.anchors not in ANCHOR_NAMES:  # from_dict checks the Literal; a dataclass built in Python does not pass there
            raise FaceganError(f"damage.anchors: {self.anchors!r} is not one of {', '.join(ANCHOR_NAMES)}")
        if self.degradation_weights:
            if len(self.degradation_weights) != len(self.degradations):
                raise FaceganError(f"damage.degradation_weights has {len(self.degradation_weights)} numbers for {len(self.degradations)} "
                                   "damage.degradations; give one per degradation, or none for uniform draws")
            for weight in self.degradation_weights:
                check_range("damage.degradation_weights", weight, 0, 1e6)
            if sum(self.degradation_weights) <= 0:
                raise FaceganError("damage.degradation_weights are all 0; give at least one positive weight")
        _check_range_pair("damage.noise_sigma", self.noise_sigma, 0, 255, min_open=True)
        _check_range_pair("damage.blur_factor", self.blur_factor, 0, 64, min_open=True)
        _check_range_pair("damage.jpeg_quality", self.jpeg_quality, 1, 95, whole=True)
        check_range("damage.min_hole_ratio", self.min_hole_ratio, 0.01, 0.95)
        check_range("damage.max_hole_ratio", self.max_hole_ratio, 0.01, 0.95)
        if self.min_hole_ratio > self.max_hole_ratio:
            raise FaceganError(f"damage.min_hole_ratio ({self.min_hole_ratio}) is above damage.max_hole_ratio ({self.max_hole_ratio}); swap them")
        check_range("damage.degradation_probability", self.degradation_probability, 0, 1)
        if self.degradation_probability > 0 and not self.degradations:
            raise FaceganError("damage.degradations is empty but damage.degradation_probability is above 0; list some or set the probability to 0")
        if self.degradation_probability < 1 and not self.mask_kinds:
            raise FaceganError("damage.mask_kinds is empty but damage.degradation_probability is below 1; list some kinds or set the probability to 1")


def _check_range_pair(key: str, pair: list, low: float, high: float, min_open: bool = False, whole: bool = False) -> None:
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise FaceganError(f"{key} is a range [low, high], got {pair!r}")
    for value in pair:
        if whole and (isinstance(value, bool) or not isinstance(value, int)):
            raise FaceganError(f"{key} takes whole numbers, got {value!r}")
        check_range(key, value, low, high, min_open=min_open)
    if pair[0] > pair[1]:
        raise FaceganError(f"{key} is [low, high] but {pair[0]:g} > {pair[1]:g}; swap them")


def _check_names(key: str, names: list[str], allowed: tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise FaceganError(f"{key}: {unknown[0]!r} is not one of {', '.join(allowed)}")
    if len(set(names)) != len(names):
        raise FaceganError(f"{key} lists a name twice ({names}); list each once")


@dataclass
class RepairOptimizerConfig:
    """Adam for both networks (betas 0.5 / 0.999 as DeepFill v2)."""

    lr: float = 1e-3
    """Generator learning rate. DeepFill v2 uses 1e-4 over ~1M steps; for runs of hundreds to thousands of steps 1e-3
    learns faster (lfw-subset 32 px, width 16, batch 16: damaged-pixel L1 0.138 against 0.155 at 2e-4 after 400 steps)."""
    discriminator_lr: float = 1e-3
    """Discriminator learning rate."""
    beta1: float = 0.5
    beta2: float = 0.999

    def validate(self) -> None:
        check_range("optimizer.lr", self.lr, 0, 1, min_open=True)
        check_range("optimizer.discriminator_lr", self.discriminator_lr, 0, 1, min_open=True)
        check_range("optimizer.beta1", self.beta1, 0, 1, max_open=True)
        check_range("optimizer.beta2", self.beta2, 0, 1, max_open=True)


@dataclass
class RepairScheduleConfig:
    """How often to log and checkpoint, in steps."""

    log_steps: int = 50
    """Write a stats.jsonl line every this many steps."""
    checkpoint_steps: int = 1000
    """Write the resume state and the export every this many steps."""
    checkpoint_minutes: float = 5.0
    """Also write the resume state every this many minutes (0 = only every checkpoint_steps)."""

    def validate(self) -> None:
        check_range("schedule.log_steps", self.log_steps, 1, 10**9)
        check_range("schedule.checkpoint_steps", self.checkpoint_steps, 1, 10**9)
        check_range("schedule.checkpoint_minutes", self.checkpoint_minutes, 0, 10**6)


@dataclass
class RepairRuntimeConfig:
    """Where and how fast to run; none of this changes what is learned, only speed."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` picks CUDA when present."""
    num_threads: int = 0
    """Torch CPU threads (0 = all cores)."""
    tensorboard: bool = True
    """Write TensorBoard event files under the run folder."""

    def validate(self) -> None:
        check_range("runtime.num_threads", self.num_threads, 0, 4096, hint="0 uses all cores")


@dataclass
class RepairConfig:
    """A repair-network training run: the resolved config written to RUN/config.json."""

    kind: Literal["repair"] = REPAIR_KIND
    """Marks the run folder as a repair run (GAN runs have no such key)."""
    data: str = ""
    """Prepared dataset of clean face chips (16-256 px, a power of two)."""
    out: str = ""
    """Run folder."""
    steps: int = 0
    """Training length in optimizer steps."""
    batch_size: int = 16
    """Images per step."""
    seed: int = 0
    """Seed for weights, data order, masks and degradations."""
    model: RepairModelConfig = field(default_factory=RepairModelConfig)
    loss: RepairLossConfig = field(default_factory=RepairLossConfig)
    damage: RepairDamageConfig = field(default_factory=RepairDamageConfig)
    optimizer: RepairOptimizerConfig = field(default_factory=RepairOptimizerConfig)
    schedule: RepairScheduleConfig = field(default_factory=RepairScheduleConfig)
    runtime: RepairRuntimeConfig = field(default_factory=RepairRuntimeConfig)

    def validate(self) -> None:
        if not self.data:
            raise FaceganError("no training data: pass --data DATASET (a prepared dataset of face chips)")
        if not self.out:
            raise FaceganError("no run folder: pass --out RUN")
        if not self.steps:
            raise FaceganError("no training length: pass --steps N")
        check_range("--steps", self.steps, 1, 10**9)
        check_range("--batch-size", self.batch_size, 1, 65536)
        check_range("--seed", self.seed, 0, MAX_SEED, max_open=True)
        for part in (self.model, self.loss, self.damage, self.optimizer, self.schedule, self.runtime):
            part.validate()


def check_data_shape(resolution: int, channels: int, path: str) -> None:
    """Refuse data the network cannot take, naming the fix (the size is known only once the dataset is loaded)."""
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1):
        raise FaceganError(f"{path} holds {resolution} px images; the repair network trains on power-of-two sizes from "
                           f"{MIN_RESOLUTION} to {MAX_RESOLUTION} px: prepare it with --size 32, 64 or 128")
    if channels not in (1, 3):
        raise FaceganError(f"{path} holds {channels}-channel images; the repair network takes 1 (grey) or 3 (RGB)")
