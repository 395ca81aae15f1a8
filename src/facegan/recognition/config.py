"""Recogniser training configuration (`facegan recog train`): one dataclass per concern, saved as the run's config.json.

Torch-free, like `training.config`: validating a config (or `--dry-run`) loads no network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

from facegan.config import check_range
from facegan.errors import FaceganError

RECOGNISER_KIND = "recogniser"
# Fields that define what is being learned: a resumed run must agree with the saved one on all of them
# ("data" is compared by the datasets' content hashes, not by how their paths were spelled).
RESUME_LOCKED_FIELDS = ("kind", "mix", "batch_size", "seed", "calibration_images", "backbone", "head", "optimizer", "augment",
                        "adversarial")
MIN_RESOLUTION, MAX_RESOLUTION = 32, 112
NUM_STAGES = 4
MAX_SEED = 2**32  # RNG seeds are derived as seed * 1_000_003 + k, which must stay within 64 bits
ADVERSARIAL_NORMS = ("linf", "l2")  # facegan.attacks.budget.NORMS, spelled here so that validating a config imports no torch
ADVERSARIAL_LOSSES = ("madry", "trades", "trades-impersonation")
TRADES_LOSSES = ("trades", "trades-impersonation")  # the losses weighed by beta, trained on the clean loss
DEFAULT_TRADES_BETA = 6.0
MAX_PIXEL = 255.0


@dataclass
class BackboneConfig:
    """The embedding network (`recognition.backbone.EmbeddingNet`)."""

    embedding_size: int = 128
    """Length of the identity descriptor."""
    width: int = 32
    """Channels of the first stage (doubled at each of the four stages)."""
    blocks: list[int] = field(default_factory=lambda: [1, 2, 2, 1])
    """Residual blocks per stage."""


@dataclass
class HeadConfig:
    """The margin head used for training (dropped from the export)."""

    kind: Literal["arcface", "cosface"] = "arcface"
    """`arcface`: additive angular margin cos(theta + m); `cosface`: additive cosine margin cos(theta) - m."""
    scale: float = 64.0
    """Logit scale s (InsightFace: 64)."""
    margin: float | None = None
    """Margin m (default: 0.5 for arcface, 0.4 for cosface, as InsightFace)."""
    easy_margin: bool = False
    """ArcFace only: apply the margin only where cos(theta) > 0 (InsightFace's easy_margin)."""

    def validate(self) -> None:
        check_range("head.scale", self.scale, 0, 1024, min_open=True)
        if self.margin is not None:
            check_range("head.margin", self.margin, 0, 1.5)


@dataclass
class RecogOptimizerConfig:
    """AdamW or SGD (fused kernels where the device has them) over the backbone and the head."""

    kind: Literal["adamw", "sgd"] = "adamw"
    """Optimizer."""
    lr: float = 2e-3
    """Learning rate (after warm-up)."""
    weight_decay: float = 5e-4
    """Weight decay (decoupled for AdamW)."""
    momentum: float = 0.9
    """SGD momentum (AdamW: beta1)."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up from 0 over this many steps (margin heads diverge without it)."""

    def validate(self) -> None:
        check_range("optimizer.lr", self.lr, 0, 10, min_open=True)
        check_range("optimizer.weight_decay", self.weight_decay, 0, 1)
        check_range("optimizer.momentum", self.momentum, 0, 1, max_open=True)
        check_range("optimizer.warmup_steps", self.warmup_steps, 0, 10**9)


@dataclass
class RecogAugmentConfig:
    """Light augmentation of each training batch (on the device, in one gather)."""

    flip: bool = True
    """Random horizontal flips."""
    shift: float = 0.0625
    """Random shifts of up to this fraction of the image side in x and y (edge pixels repeated)."""

    def validate(self) -> None:
        check_range("augment.shift", self.shift, 0, 0.5)


@dataclass
class AdversarialConfig:
    """PGD adversarial training (Madry et al. 2018): each batch is replaced by its PGD perturbation before the update.

    Budgets are on the 0..255 pixel scale, as RobFR reports them (eps 4 = 4/255 of the range for linf; for l2 the
    norm of the perturbation in 0..255 units over all C*H*W values). Costs `steps` extra forward/backward passes per step.
    """

    eps: float = 0.0
    """Perturbation budget on the 0..255 scale (0 = plain training, bit-identical to a run without this section)."""
    steps: int = 3
    """PGD iterations per training batch."""
    norm: Literal["linf", "l2"] = "linf"
    """Threat model: `linf` (per-pixel bound) or `l2` (bound on the whole perturbation)."""
    step_size: float | None = None
    """PGD step on the 0..255 scale (default: 2.5 * eps / steps, as Madry et al.)."""
    loss: Literal["madry", "trades", "trades-impersonation"] = "madry"
    """`madry`: the attack raises the margin-head loss and the update minimises it on the perturbed batch (mixed with
    the clean loss by `clean_weight`); `trades`: TRADES's split (Zhang et al. 2019) on what verification thresholds,
    the attack moves each embedding away from its clean one (raising 1 - cos) and the update minimises the clean
    margin-head loss + beta * (1 - cos(clean embedding, perturbed embedding)); `trades-impersonation`: the same, but the
    attack pulls the first half of each batch toward another identity's clean embedding in the batch (an impersonation
    attempt) instead of away from its own, and beta * impersonation_weight weighs that similarity's rise over the
    clean image's."""
    clean_weight: float = 0.0
    """`madry` only: the update minimises clean_weight * clean loss + (1 - clean_weight) * perturbed loss (0 = Madry's)."""
    beta: float = DEFAULT_TRADES_BETA
    """`trades`, `trades-impersonation` only: weight of the embedding-drift term (Zhang et al.: 6 on CIFAR-10)."""
    impersonation_weight: float = 1.0
    """`trades-impersonation` only: weight of the similarity-rise term relative to beta (0 = the targeted attack only
    chooses the perturbations whose drift is penalised)."""

    @property
    def enabled(self) -> bool:
        return self.eps > 0

    def validate(self) -> None:
        if self.norm not in ADVERSARIAL_NORMS:  # from_dict checks the Literal; a dataclass built in Python does not pass there
            raise FaceganError(f"unknown norm {self.norm!r:.40} for adversarial.norm; choose linf or l2")
        check_range("--adversarial-eps", self.eps, 0, MAX_PIXEL, hint="a budget on the 0..255 pixel scale, e.g. 4/255 or 4")
        check_range("--adversarial-steps", self.steps, 1, 1000)
        if self.step_size is not None:
            check_range("--adversarial-step-size", self.step_size, 0, MAX_PIXEL, min_open=True, hint="a step on the 0..255 pixel scale")
        if self.loss not in ADVERSARIAL_LOSSES:
            raise FaceganError(f"unknown loss {self.loss!r:.40} for --adversarial-loss; choose {', '.join(ADVERSARIAL_LOSSES)}")
        check_range("--adversarial-clean-weight", self.clean_weight, 0, 1, max_open=True,
                    hint="the share of the clean loss in the update, e.g. 0.5")
        check_range("--adversarial-beta", self.beta, 0, 1000, min_open=True, hint="the weight of TRADES's drift term, e.g. 6")
        if self.loss == "madry" and self.beta != DEFAULT_TRADES_BETA:
            raise FaceganError("--adversarial-beta weighs TRADES's drift term; Madry's loss has none "
                               "(pass --adversarial-loss trades, or mix in the clean loss with --adversarial-clean-weight)")
        check_range("--adversarial-impersonation-weight", self.impersonation_weight, 0, 100,
                    hint="the weight of the similarity-rise term relative to --adversarial-beta, e.g. 1")
        if self.loss != "trades-impersonation" and self.impersonation_weight != 1.0:
            raise FaceganError("--adversarial-impersonation-weight weighs the similarity-rise term of --adversarial-loss "
                               "trades-impersonation; pass that loss or drop the weight")
        if self.loss in TRADES_LOSSES and self.clean_weight:
            raise FaceganError("--adversarial-clean-weight mixes the clean loss into Madry's; TRADES always trains on the clean loss "
                               "(weigh its drift term with --adversarial-beta), so drop one of them")

    def describe(self) -> str:
        """'PGD-AT linf eps 4 (0..255), 3 steps' for reports and logs ('none' when off)."""
        if not self.enabled:
            return "none"
        step = "" if self.step_size is None else f", step {self.step_size:g}"
        methods = {"trades": f"TRADES-cosine (beta {self.beta:g})",
                   "trades-impersonation": f"TRADES-cosine + impersonation (beta {self.beta:g}, rise weight {self.impersonation_weight:g})"}
        method = methods.get(self.loss, "PGD-AT")
        mixed = f", clean weight {self.clean_weight:g}" if self.loss == "madry" and self.clean_weight else ""
        return f"{method} {self.norm} eps {self.eps:g} (0..255), {self.steps} steps{step}{mixed}"


@dataclass
class RecogScheduleConfig:
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
class RecogRuntimeConfig:
    """Where and how fast to run; none of this changes what is learned, only speed."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` picks CUDA when present."""
    amp: bool = True
    """bfloat16 autocast where the hardware does it natively (CUDA, avx512_bf16 CPUs; elsewhere fp32). The margin head
    and its loss stay fp32. On this project's 2-core avx512_bf16 CPU a 32 px step was ~1.4x faster (quiet machine),
    and 400-step runs on rendered faces verified as well as fp32 (see README, "Recogniser throughput")."""
    channels_last: bool = True
    """NHWC memory layout for convolutions."""
    num_threads: int = 0
    """Torch CPU threads (0 = all cores)."""
    tensorboard: bool = True
    """Write TensorBoard event files under the run folder."""

    def validate(self) -> None:
        check_range("runtime.num_threads", self.num_threads, 0, 4096, hint="0 uses all cores")


@dataclass
class RecogConfig:
    """A recogniser training run: the resolved config written to RUN/config.json."""

    kind: Literal["recogniser"] = RECOGNISER_KIND
    """Marks the run folder as a recogniser run (GAN runs have no such key)."""
    data: list[str] = field(default_factory=list)
    """Identity-labelled prepared datasets; the identities of different datasets are kept apart."""
    out: str = ""
    """Run folder."""
    mix: float | None = None
    """With two datasets: the share of every batch drawn from the second (default: in proportion to their sizes)."""
    steps: int = 0
    """Training length in optimizer steps (or give epochs)."""
    epochs: float = 0.0
    """Training length in passes over the training images (used when steps is 0)."""
    batch_size: int = 128
    """Images per step."""
    init: str = ""
    """A recogniser export or run folder whose embedding-network weights (and BatchNorm statistics) start training,
    e.g. to fine-tune it with adversarial training; the head's class centres are imprinted from its embeddings of the
    training images. Its backbone must be this run's. '' = random initialisation."""
    seed: int = 0
    """Seed for weights, data order, augmentation and the calibration split."""
    calibration_images: int = 256
    """Held out from training: one image each of up to this many identities, to calibrate the match threshold."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optimizer: RecogOptimizerConfig = field(default_factory=RecogOptimizerConfig)
    augment: RecogAugmentConfig = field(default_factory=RecogAugmentConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    schedule: RecogScheduleConfig = field(default_factory=RecogScheduleConfig)
    runtime: RecogRuntimeConfig = field(default_factory=RecogRuntimeConfig)

    def validate(self) -> None:
        if not self.data:
            raise FaceganError("no training data: pass --data DATASET (an identity-labelled prepared dataset)")
        if not self.out:
            raise FaceganError("no run folder: pass --out RUN")
        if self.mix is not None:
            if len(self.data) != 2:
                raise FaceganError(f"--mix sets the share of the second dataset, so it needs exactly two --data, got {len(self.data)}")
            check_range("--mix", self.mix, 0, 1, min_open=True, max_open=True, hint="the share of each batch from the second --data")
        if self.steps and self.epochs:
            raise FaceganError("give --steps or --epochs, not both")
        check_range("--steps", self.steps, 0, 10**9)
        check_range("--epochs", self.epochs, 0, 10**6)
        if not self.steps and not self.epochs:
            raise FaceganError("no training length: pass --steps N or --epochs E")
        check_range("--batch-size", self.batch_size, 2, 65536)
        check_range("--seed", self.seed, 0, MAX_SEED, max_open=True)
        check_range("calibration_images", self.calibration_images, 0, 10**6)
        for part in (self.head, self.optimizer, self.augment, self.adversarial, self.schedule, self.runtime):
            part.validate()
        backbone = self.backbone
        check_architecture(MIN_RESOLUTION, 3, backbone.embedding_size, backbone.width, backbone.blocks)  # the data's size is checked on load


def check_architecture(resolution: int, channels: int, embedding_size: int, width: int, blocks: Sequence[int]) -> None:
    """Refuse an impossible network in one line, naming the option."""
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise FaceganError(
            f"recognisers train on {MIN_RESOLUTION}-{MAX_RESOLUTION} px chips, but the data is {resolution} px; "
            f"prepare it with --size between {MIN_RESOLUTION} and {MAX_RESOLUTION}"
        )
    if channels not in (1, 3):
        raise FaceganError(f"recogniser images must have 1 or 3 channels, got {channels}")
    if not 2 <= embedding_size <= 4096:
        raise FaceganError(f"--embedding-size must be between 2 and 4096, got {embedding_size}")
    if not 1 <= width <= 512:
        raise FaceganError(f"backbone.width must be between 1 and 512, got {width}")
    if len(blocks) != NUM_STAGES or any(not 1 <= count <= 64 for count in blocks):
        raise FaceganError(f"backbone.blocks must be {NUM_STAGES} block counts from 1 to 64, e.g. [1, 2, 2, 1]; got {list(blocks)}")
