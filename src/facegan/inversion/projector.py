"""Projection (GAN inversion): the latent whose image reproduces a given face, as StyleGAN2's projector does.

For each target, `starts` random latents are optimised with Adam on the pixel loss alone for a short
first phase; the start with the lowest loss is kept and refined for the remaining steps with the full
loss: pixel L2 (+ L1) on the known pixels, an identity term in dlib's face space (the differentiable
port, `DlibResNetRecogniser.embed_tensor`) and a latent prior. With `extended=True` the refinement
also optimises the generator's first activation (its "intermediate latent", see `latent_split`) as an
offset from the activation of z, pulled toward 0, so the result stays near the generator's range.
Learning rate: StyleGAN2's schedule (linear warm-up over the first 5 %, cosine ramp-down over the last 25 %).

Every row of a batch has its own loss and Adam works per element, so a face's result does not depend
on the other faces in its batch; starts come from `np.random.default_rng([seed, index])`, so the
result depends only on (seed, index of the face, settings). Across batch sizes the float kernels sum
in another order, which can move a pixel by one grey level (as `Generator.synthesize`).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from facegan.errors import FaceganError

DEFAULT_STEPS = 300
DEFAULT_STARTS = 4
DEFAULT_IDENTITY_WEIGHT = 0.05
DEFAULT_BATCH_SIZE = 16
DEFAULT_LEARNING_RATE = 0.1
# Share of the steps spent trying every start on the pixel loss alone (the identity network is ~10x the
# generator's cost at 32 px, so it runs only on the one start that is kept).
START_PHASE_FRACTION = 0.25
# Each start is the best (by pixel loss, one forward pass, no gradient) of this many random draws: cheap, and
# on a random-init stable generator it lifts self-projection from ~20 to ~25 dB at 300 steps.
CANDIDATES_PER_START = 16
PRIOR_WEIGHT = 1e-3
# The extended offset is penalised relative to the activation's own mean square, so the weight means the same
# for every architecture and width.
EXTENDED_WEIGHT = 0.1
L1_WEIGHT = 0.1
# The identity network (dlib's ResNet at 150 px) costs ~4x the generator at 32 px per step. `identity_every` > 1
# recomputes its image gradient only every k steps and reuses it in between (a linear surrogate <image, cached
# gradient>). Measured on the builtin faces (2 held-out, 100 steps, CPU seconds): k=1 29.8 s/image, face distance
# 0.17; k=4 14.5 s/image, 0.29 — a real loss, so the default stays exact (k=1).
DEFAULT_IDENTITY_EVERY = 1
MAX_STEPS = 100_000
MAX_STARTS = 256
RAMP_UP, RAMP_DOWN = 0.05, 0.25


# ---- the generator's first activation (the "extended latent") -----------------------------------------
@dataclass(frozen=True)
class LatentSplit:
    """A generator cut after its first activation: `rest(first(z)) == module(z)` (to float rounding)."""

    first: Callable[[torch.Tensor], torch.Tensor]
    """z (N, z_dim) -> the first activation, flattened (N, D)."""
    rest: Callable[[torch.Tensor], torch.Tensor]
    """(N, D) -> images (N, C, H, W) in [-1, 1]."""
    where: str
    """Where the cut is, for projection.json (e.g. "StableGenerator: after dense")."""


def latent_split(module: nn.Module) -> LatentSplit | None:
    """The cut for the architectures facegan has (stable: after `dense`; dcgan: after dense + BatchNorm +
    LeakyReLU; an identity-conditional wrapper: its base's cut, behind the identity mapping), else None."""
    from facegan.models.conditional import ConditionalGenerator
    from facegan.models.dcgan import DCGANGenerator
    from facegan.models.stable import StableGenerator

    if isinstance(module, StableGenerator):
        def stable_rest(h: torch.Tensor) -> torch.Tensor:
            x = h.view(h.shape[0], -1, 4, 4)  # (N, W, 4, 4)
            return torch.tanh(module.to_image(module.stages(module.stem(x))))

        return LatentSplit(lambda z: module.dense(module.norm(z)), stable_rest, "StableGenerator: after dense")
    if isinstance(module, DCGANGenerator):
        def dcgan_rest(h: torch.Tensor) -> torch.Tensor:
            return torch.tanh(module.upsample(h.view(h.shape[0], -1, 4, 4)))

        return LatentSplit(lambda z: module.act(module.dense_norm(module.dense(z))), dcgan_rest,
                           "DCGANGenerator: after dense + BatchNorm + LeakyReLU")
    if isinstance(module, ConditionalGenerator):
        inner = latent_split(module.base)
        if inner is None:
            return None
        dim = module.identity_dim

        def conditional_first(z: torch.Tensor) -> torch.Tensor:
            return inner.first(torch.cat([module.new_identities(z[:, :dim]), z[:, dim:]], dim=1))

        return LatentSplit(conditional_first, inner.rest, f"ConditionalGenerator (identity mapping), then {inner.where}")
    return None


# ---- the result -------------------------------------------------------------------------------------
@dataclass
class ProjectionResult:
    """What `project` found for N targets."""

    z: np.ndarray
    """float32 (N, z_dim): the latents; `generator.synthesize(torch.from_numpy(z))` renders the z-only image."""
    images: np.ndarray
    """uint8 (N, H, W, C): the reconstructions (from `extended` when it is set), not composited with the targets."""
    psnr: np.ndarray
    """(N,) dB, reconstruction vs target over every pixel (inf when equal)."""
    ssim: np.ndarray
    """(N,) SSIM, reconstruction vs target."""
    face_distance: np.ndarray
    """(N,) dlib descriptor distance reconstruction vs target (same person below 0.6)."""
    loss: np.ndarray
    """(N,) the final value of the optimised loss."""
    extended: np.ndarray | None = None
    """float32 (N, D): the optimised first activation (see `latent_split`), or None for a z-only projection."""
    settings: dict[str, Any] = field(default_factory=dict)
    """steps, starts, seed, weights, ... as passed (for projection.json)."""
    names: list[str] | None = None
    """Optional source name per target (file names), kept in projection.json."""

    def __len__(self) -> int:
        return len(self.z)


def composite(reconstructions: np.ndarray, targets: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """Known pixels from the targets (bit-equal), holes (mask True) from the reconstructions: uint8 NHWC."""
    if masks is None:
        return np.array(targets, copy=True)
    hole = np.asarray(masks, dtype=bool)[..., None]  # (N, H, W, 1)
    return np.where(hole, reconstructions, targets).astype(np.uint8)


# ---- checks ---------------------------------------------------------------------------------------------
def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise FaceganError(f"{name} must be an integer from {low} to {high:,}, got {value!r:.60}")
    return int(value)


def _check_weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) or not 0 <= value <= 1e6:
        raise FaceganError(f"{name} must be a number from 0 to 1e6, got {value!r:.60}")
    return float(value)


def check_targets(generator: Any, targets: Any) -> np.ndarray:
    """uint8 (N, H, W, C) matching the generator's resolution and channels, or one clear line."""
    if not isinstance(targets, np.ndarray) or targets.dtype != np.uint8:
        raise FaceganError(f"targets must be a uint8 array (N, H, W, C), got {getattr(targets, 'dtype', type(targets).__name__)}")
    if targets.ndim == 3 and generator.channels == 1:
        targets = targets[..., None]
    if targets.ndim != 4 or len(targets) == 0:
        raise FaceganError(f"targets must be a non-empty uint8 array (N, H, W, C), got shape {targets.shape}")
    size, channels = generator.resolution, generator.channels
    if targets.shape[1:3] != (size, size):
        raise FaceganError(f"the targets are {targets.shape[2]}x{targets.shape[1]}, the generator makes {size}x{size} images; "
                           f"prepare them at its size (`facegan data prepare SRC OUT --size {size}`)")
    if targets.shape[3] != channels:
        if channels == 1 and targets.shape[3] == 3:
            # Luma as PIL's "L" conversion computes it, so a colour photo projects into a grey generator.
            weights = np.array([299, 587, 114], dtype=np.uint32)
            targets = ((targets.astype(np.uint32) * weights).sum(axis=3, keepdims=True) + 500) // 1000
            return targets.astype(np.uint8)
        if channels == 3 and targets.shape[3] == 1:
            return np.repeat(targets, 3, axis=3)
        raise FaceganError(f"the targets have {targets.shape[3]} channels, the generator makes {channels}")
    return targets


def check_masks(masks: Any, count: int, size: int) -> np.ndarray | None:
    """bool (N, H, W) with True = hole, or None; a mask that hides every pixel is refused."""
    if masks is None:
        return None
    masks = np.asarray(masks)
    if masks.dtype != bool:
        if not np.issubdtype(masks.dtype, np.integer) or not np.isin(masks, (0, 1)).all():
            raise FaceganError(f"masks must be bool (N, H, W) with True where pixels are missing, got {masks.dtype}")
        masks = masks.astype(bool)
    if masks.ndim == 2:
        masks = np.broadcast_to(masks, (count, *masks.shape))
    if masks.ndim != 3 or masks.shape[1:] != (size, size):
        raise FaceganError(f"the masks are {'x'.join(map(str, masks.shape[1:][::-1])) or masks.shape}, the images are {size}x{size}; "
                           "give one mask per image at the images' size")
    if len(masks) != count:
        raise FaceganError(f"{len(masks)} masks for {count} images; give one mask per image (or one for all)")
    full = np.flatnonzero(masks.reshape(count, -1).all(axis=1))
    if len(full):
        raise FaceganError(f"mask {int(full[0])} hides every pixel: nothing is left to project from; "
                           "give a mask with some known pixels (True/white = missing)")
    return np.ascontiguousarray(masks)


# ---- the optimisation ---------------------------------------------------------------------------------
def learning_rate(base: float, t: float) -> float:
    """StyleGAN2's projector schedule at progress t in [0, 1]: warm-up, flat, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / RAMP_DOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return base * ramp * min(1.0, t / RAMP_UP)


def _start_latents(seed: int, indices: range, starts: int, z_dim: int) -> torch.Tensor:
    """(len(indices) * starts * CANDIDATES_PER_START, z_dim) standard normal draws, each face's from its own RNG [seed, index]."""
    rows = [np.random.default_rng([seed, index]).standard_normal((starts * CANDIDATES_PER_START, z_dim)) for index in indices]
    return torch.from_numpy(np.concatenate(rows).astype(np.float32))


def project(
    generator: Any,
    targets: np.ndarray,
    masks: np.ndarray | None = None,
    steps: int = DEFAULT_STEPS,
    starts: int = DEFAULT_STARTS,
    seed: int = 0,
    identity_weight: float | None = None,
    extended: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate_base: float = DEFAULT_LEARNING_RATE,
    progress: Callable[[int, int], None] | None = None,
    recogniser: Any = None,
    names: list[str] | None = None,
    identity_every: int = DEFAULT_IDENTITY_EVERY,
) -> ProjectionResult:
    """Project uint8 (N, H, W, C) targets into `generator` (a loaded `facegan.models.export.Generator`).

    masks: bool (N, H, W) or (H, W), True = missing: those pixels do not count in any loss (the identity
    term, which needs the whole face, is then off unless `identity_weight` is given explicitly).
    identity_weight: weight of the squared dlib descriptor distance (default DEFAULT_IDENTITY_WEIGHT, 0 when masked).
    progress(done, total) is called once per optimisation step of each batch.
    recogniser: a `DlibResNetRecogniser` to reuse (one is built when needed).
    identity_every: recompute the identity term's gradient every k steps (1 = every step; see DEFAULT_IDENTITY_EVERY).
    """
    targets = check_targets(generator, targets)
    count = len(targets)
    masks = check_masks(masks, count, generator.resolution)
    steps = _check_int("steps", steps, 1, MAX_STEPS)
    starts = _check_int("starts", starts, 1, MAX_STARTS)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    batch_size = _check_int("batch_size", batch_size, 1, 65536)
    identity_every = _check_int("identity_every", identity_every, 1, MAX_STEPS)
    if identity_weight is None:
        identity_weight = 0.0 if masks is not None else DEFAULT_IDENTITY_WEIGHT
    identity_weight = _check_weight("identity_weight", identity_weight)
    learning_rate_base = _check_weight("learning_rate", learning_rate_base)
    if names is not None and len(names) != count:
        raise FaceganError(f"{len(names)} names for {count} targets")
    split = latent_split(generator.module)
    if extended and split is None:
        raise FaceganError(f"extended projection does not know where to cut {type(generator.module).__name__}; pass extended=False "
                           "(--no-extended) to optimise z only")
    if recogniser is None and identity_weight > 0:
        from facegan.faces.dlib_resnet import DlibResNetRecogniser

        recogniser = DlibResNetRecogniser(device=generator.device)

    start_steps = max(1, round(steps * START_PHASE_FRACTION)) if starts > 1 else 0
    total = -(-count // batch_size) * (start_steps + steps)
    done = 0
    z_rows, extended_rows, image_rows, loss_rows = [], [], [], []
    for begin in range(0, count, batch_size):
        indices = range(begin, min(begin + batch_size, count))

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        z, h, images, loss = _project_batch(
            generator, split, targets[begin : indices.stop], None if masks is None else masks[begin : indices.stop],
            _start_latents(seed, indices, starts, generator.z_dim), starts, start_steps, steps, identity_weight,
            extended, learning_rate_base, recogniser, tick, identity_every,
        )
        z_rows.append(z)
        extended_rows.append(h)
        image_rows.append(images)
        loss_rows.append(loss)
    images = np.concatenate(image_rows)
    psnr, ssim, face_distance = measure(images, targets, recogniser)
    settings = {
        "steps": steps, "starts": starts, "start_steps": start_steps, "seed": seed, "identity_weight": identity_weight,
        "extended": bool(extended), "extended_at": split.where if extended and split is not None else None,
        "batch_size": batch_size, "learning_rate": learning_rate_base, "prior_weight": PRIOR_WEIGHT,
        "extended_weight": EXTENDED_WEIGHT, "l1_weight": L1_WEIGHT, "identity_every": identity_every, "masked": masks is not None,
    }
    return ProjectionResult(
        z=np.concatenate(z_rows), images=images, psnr=psnr, ssim=ssim, face_distance=face_distance,
        loss=np.concatenate(loss_rows), extended=np.concatenate(extended_rows) if extended else None,
        settings=settings, names=list(names) if names is not None else None,
    )


def measure(images: np.ndarray, targets: np.ndarray, recogniser: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PSNR, SSIM (facegan.metrics.quality) and dlib descriptor distance of images vs targets, each (N,)."""
    from facegan.metrics.quality import psnr, ssim

    if recogniser is None:
        from facegan.faces.dlib_resnet import DlibResNetRecogniser

        recogniser = DlibResNetRecogniser()
    distance = np.linalg.norm(recogniser.embed(images).astype(np.float64) - recogniser.embed(targets).astype(np.float64), axis=1)
    return np.asarray(psnr(images, targets), dtype=np.float64), np.asarray(ssim(images, targets), dtype=np.float64), distance


def _project_batch(generator, split, targets, masks, z_starts, starts, start_steps, steps, identity_weight, extended,
                   base_lr, recogniser, tick, identity_every) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    from facegan.images import to_model, to_uint8

    device = generator.device
    module = generator.module
    target = to_model(np.array(targets), device)  # (B, C, H, W); a copy: the targets may be a read-only memmap
    known = torch.ones_like(target[:, :1]) if masks is None else torch.from_numpy(~masks).to(device).float().unsqueeze(1)  # (B, 1, H, W)
    num_known = known.sum(dim=(1, 2, 3)) * target.shape[1]  # (B,) values that count
    render = split.rest if split is not None else None

    def synthesize(z: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
        if offset is None:
            return module(z) if render is None else render(split.first(z))
        return render(split.first(z) + offset)

    def pixel_loss(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Per row: mean squared + L1 error over the known values of the row's target (rows index the batch)."""
        difference = (images - target[rows]) * known[rows]
        squared = difference.pow(2).sum(dim=(1, 2, 3)) / num_known[rows]
        absolute = difference.abs().sum(dim=(1, 2, 3)) / num_known[rows]
        return squared + L1_WEIGHT * absolute

    def prior(z: torch.Tensor) -> torch.Tensor:
        # z ~ N(0, I) lives near the sphere of radius sqrt(z_dim): penalise drifting off it (pixel-normalised
        # generators ignore the norm, but an unbounded norm would make Adam's steps meaningless).
        return PRIOR_WEIGHT * (z.pow(2).mean(dim=1) - 1.0).pow(2)

    # Phase 0: each face's `starts` best random draws (no gradient).
    batch = len(targets)
    with torch.no_grad():
        draws = z_starts.to(device).view(batch, starts * CANDIDATES_PER_START, -1)
        scores = torch.stack([pixel_loss(synthesize(draws[:, column], None), torch.arange(batch, device=device))
                              for column in range(draws.shape[1])], dim=1)  # (B, S*K)
        # A stable sort: equal scores keep draw order, so the choice never depends on the sort's internals.
        chosen = torch.sort(scores, dim=1, stable=True).indices[:, :starts]  # (B, S)
        z_starts = torch.gather(draws, 1, chosen.unsqueeze(2).expand(-1, -1, draws.shape[2])).reshape(batch * starts, -1)

    # Phase 1: every start on the pixel loss; keep each face's best.
    if start_steps:
        rows = torch.arange(batch, device=device).repeat_interleave(starts)  # (B*S,)
        z = z_starts.to(device).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=base_lr, betas=(0.9, 0.999))
        for step in range(start_steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(base_lr, (step + 1) / start_steps)
            loss = pixel_loss(synthesize(z, None), rows) + prior(z)  # (B*S,)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            tick()
        with torch.no_grad():
            final = (pixel_loss(synthesize(z, None), rows) + prior(z)).view(batch, starts)
            best = final.argmin(dim=1)  # (B,) ties: the first start
            z_best = z.detach().view(batch, starts, -1)[torch.arange(batch), best]
    else:
        z_best = z_starts.to(device)

    # Phase 2: the kept start, the full loss, and the extended offset.
    rows = torch.arange(batch, device=device)
    z = z_best.clone().requires_grad_(True)
    parameters = [z]
    offset = None
    scale = None
    if extended:
        with torch.no_grad():
            scale = split.first(z).pow(2).mean(dim=1).clamp_min(1e-8)  # (B,)
        offset = torch.zeros_like(split.first(z.detach())).requires_grad_(True)
        parameters.append(offset)
    optimizer = torch.optim.Adam(parameters, lr=base_lr, betas=(0.9, 0.999))
    target_descriptor = None
    if identity_weight > 0:
        with torch.no_grad():
            target_descriptor = recogniser.embed_tensor(target)

    def identity_loss(images: torch.Tensor) -> torch.Tensor:
        return identity_weight * (recogniser.embed_tensor(images) - target_descriptor).pow(2).sum(dim=1)  # (B,)

    def full_loss() -> tuple[torch.Tensor, torch.Tensor]:
        images = synthesize(z, offset)
        loss = pixel_loss(images, rows) + prior(z)
        if offset is not None:
            loss = loss + EXTENDED_WEIGHT * offset.pow(2).mean(dim=1) / scale
        return loss, images

    identity_gradient = None  # d(identity loss)/d(image), (B, C, H, W), refreshed every `identity_every` steps
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(base_lr, (step + 1) / steps)
        loss, images = full_loss()
        if target_descriptor is not None:
            if step % identity_every == 0:
                leaf = images.detach().requires_grad_(True)
                (identity_gradient,) = torch.autograd.grad(identity_loss(leaf).sum(), leaf)
            loss = loss + (images * identity_gradient).sum(dim=(1, 2, 3))
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        tick()
    with torch.no_grad():
        loss, images = full_loss()
        if target_descriptor is not None:
            loss = loss + identity_loss(images)
        h = None if offset is None else (split.first(z) + offset).float().cpu().numpy()
    return z.detach().float().cpu().numpy(), h, to_uint8(images).numpy(), loss.float().cpu().numpy()
