"""The GAN training loop: one readable pass from a prepared dataset to a run folder and an export.

`train(config)` is embeddable: it logs through `logging` ("facegan.training"), reports progress and
stats lines through callbacks, can be stopped from another thread (`should_stop`), and takes the run
folder's lock for its whole length. The run-folder layout belongs to `facegan.run.Run`.
"""
from __future__ import annotations

import copy
import errno
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from facegan.config import from_dict, to_dict
from facegan.data.dataset import FaceDataset
from facegan.errors import DivergenceError, FaceganError
from facegan.images import make_grid, save_png, to_model
from facegan.models import build_discriminator, build_generator
from facegan.models.export import latents_for_seeds, render, save_export
from facegan.provenance.record import COMPOSITE, TRAINED, Provenance
from facegan.run import Run
from facegan.training.augment import DiffAugment
from facegan.training.control import StopFlag, accumulate_stats, mean_stats, remove_empty_run, remove_stale_temp_files, remove_temp_files
from facegan.training.checkpoint import load_state, save_state
from facegan.training.config import TrainConfig
from facegan.training.distributed import (
    DistributedContext,
    all_reduce_mean,
    any_rank,
    average_gradients,
    check_batch_split,
    broadcast_module,
    init_distributed,
    shutdown_distributed,
)
from facegan.training.ema import ema_beta, update_ema
from facegan.training.extensions import DiscriminatorGradients, RealBatchSampler, TrainerExtension
from facegan.training.losses import discriminator_loss, generator_loss, get_loss, r1_penalty

logger = logging.getLogger("facegan.training")

# Fields that define what is being learned: a resumed run must agree with the saved run on all of them.
# "data" is compared by the dataset's content hash, not by how its path was spelled.
RESUME_LOCKED_FIELDS = ("data", "preset", "batch_size", "seed", "model", "loss", "optimizer", "augment", "ema", "privacy", "identity",
                        "fingerprint")

ProgressCallback = Callable[[float, float], None]
"""progress(kimg_done, kimg_total), called once before the first step and after every step (rank 0 only)."""
LogCallback = Callable[[dict[str, Any]], None]
"""on_log(stats), called with each stats line as it is written to the run's stats (rank 0 only)."""
StopCallback = Callable[[], bool]
"""should_stop() -> True to stop cleanly (checkpoint, then return interrupted); polled every step, may be set from any thread."""


@dataclass
class TrainResult:
    """What a finished (or interrupted) run produced."""

    run_dir: Path
    export_dir: Path
    kimg: float
    num_steps: int
    seconds: float
    img_per_s: float
    interrupted: bool = False
    last_stats: dict[str, Any] = field(default_factory=dict)
    stopped_early: str | None = None
    """Why training ended before the kimg target without being interrupted (time or privacy budget), else None."""
    resumed_from_scratch: bool = False
    """A --resume of a run that had no checkpoint yet: it started from the beginning with its saved config."""



def dataset_fingerprint(dataset: FaceDataset) -> dict[str, Any]:
    """{"fingerprint": {id, bits, ...}} when the training images carry a learned fingerprint (recorded in
    the export, so every image the generator makes names it), else {}."""
    fingerprint = dataset.manifest.get("fingerprint")
    return {"fingerprint": dict(fingerprint)} if isinstance(fingerprint, dict) and fingerprint.get("id") else {}

def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise FaceganError("--set runtime.device=cuda was asked for, but no CUDA device is available; use cpu or auto")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def use_bf16(config: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast where the hardware does it natively (measured ~1.6-2x faster on avx512_bf16 CPUs)."""
    return config.runtime.amp and bf16_supported(device)


def bf16_supported(device: torch.device) -> bool:
    """Whether `device` does bf16 natively (CUDA with bf16, or an avx512_bf16 CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


# Training never imports privacy (privacy sits above it): a private config must come through its entry point.
PRIVATE_SETUP_NEEDED = "this config asks for differential privacy; call facegan.train or facegan.privacy.train_private"


class Trainer:
    """Holds the networks, optimizers, data stream and RNGs of one run; `step()` is one G+D update.

    Three slots change how D learns without subclassing (see `facegan.training.extensions`):
    `real_batch_sampler`, `discriminator_gradients` and `extensions`; `facegan.privacy.make_private`
    fills them for differentially private training.
    """

    def __init__(self, config: TrainConfig, dataset: FaceDataset, device: torch.device, context: DistributedContext) -> None:
        self.config = config
        self.device = device
        self.context = context
        self.bf16 = use_bf16(config, device)
        self.memory_format = torch.channels_last if config.runtime.channels_last else torch.contiguous_format
        self.loss = get_loss(config.loss.kind)

        # Identity-conditional runs (embedding mode) carry each image's identity label; None otherwise.
        self.identity_labels: torch.Tensor | None = None
        self.real_labels: torch.Tensor | None = None
        self.fake_labels: torch.Tensor | None = None
        # Same seed on every process -> identical initial weights (broadcast anyway, for safety).
        torch.manual_seed(config.seed)
        if config.identity.enabled:
            from facegan.training.identity import build_networks, identity_labels

            if config.identity.mode == "embedding":
                self.identity_labels = identity_labels(dataset)
            G, D = build_networks(config, dataset, self.identity_labels)
            self.G = G.to(device, memory_format=self.memory_format)
            self.D = D.to(device, memory_format=self.memory_format)
        else:
            self.G = build_generator(config.model).to(device, memory_format=self.memory_format)
            self.D = build_discriminator(config.model).to(device, memory_format=self.memory_format)
        broadcast_module(self.G, context)
        broadcast_module(self.D, context)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if config.ema.enabled else None
        self.G_forward = torch.compile(self.G) if config.runtime.compile else self.G
        self.D_forward = torch.compile(self.D) if config.runtime.compile else self.D

        optim = config.optimizer
        # Lazy R1: the penalty is applied every k steps, so D's Adam settings are rescaled as in StyleGAN2.
        ratio = config.loss.r1_interval / (config.loss.r1_interval + 1) if config.loss.r1_gamma > 0 else 1.0
        fused = device.type in ("cpu", "cuda")
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=optim.lr_g, betas=(optim.beta1, optim.beta2), fused=fused)
        self.opt_D = torch.optim.Adam(
            self.D.parameters(), lr=optim.lr_d * ratio, betas=(optim.beta1**ratio, optim.beta2**ratio), fused=fused
        )

        # Separate RNG streams: data order (same on every process), noise and augmentation (per process).
        self.data_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 1)
        self.noise_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 2 + 7919 * context.rank)
        self.augment_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 3 + 7919 * context.rank)
        self.augment = DiffAugment(config.augment, self.augment_rng)

        # Preload the uint8 images once: no decoding, no per-epoch work (on the GPU when they fit).
        images = torch.from_numpy(np.array(dataset.images))  # (N, H, W, C) uint8, copied out of the memmap once
        if device.type == "cuda" and images.numel() < 2**30:
            images = images.to(device)
        self.images = images
        self.data_order = torch.randperm(len(images), generator=self.data_rng)
        self.data_position = 0

        self.num_images_seen = 0
        self.num_steps = 0
        self.local_batch = config.batch_size // context.world_size

        # Extension slots (empty = ordinary training).
        self.real_batch_sampler: RealBatchSampler | None = None
        self.discriminator_gradients: DiscriminatorGradients | None = None
        self.extensions: list[TrainerExtension] = []

    # ---- data ------------------------------------------------------------------------------------
    def next_real_batch(self) -> torch.Tensor:
        """This process's share of the next real batch, as float NCHW in [-1, 1]."""
        indices = self.real_batch_sampler() if self.real_batch_sampler is not None else self._next_shuffled_indices()
        if self.identity_labels is not None:
            self.real_labels = self.identity_labels[indices].to(self.device)
        real = to_model(self.images[indices.to(self.images.device)], self.device)  # (B, C, H, W)
        return real.contiguous(memory_format=self.memory_format)

    def _next_shuffled_indices(self) -> torch.Tensor:
        """Epochs of a shuffled order: the next global batch, this process's share of it."""
        picked = []
        needed = self.config.batch_size
        while needed > 0:
            if self.data_position >= len(self.data_order):
                self.data_order = torch.randperm(len(self.images), generator=self.data_rng)
                self.data_position = 0
            take = self.data_order[self.data_position : self.data_position + needed]
            picked.append(take)
            self.data_position += len(take)
            needed -= len(take)
        return torch.cat(picked)[self.context.rank * self.local_batch : (self.context.rank + 1) * self.local_batch]

    def discriminate(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D's logits for augmented images (with their identity labels in a conditional run)."""
        images = self.augment(images)
        return self.D_forward(images) if labels is None else self.D_forward(images, labels)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    # ---- one step (no host sync: stats are detached 0-d tensors, read at log time) -----------------
    def accumulate_discriminator_gradients(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Set D's .grad for a real and a (detached) fake batch, with the installed strategy or the plain loss."""
        if self.discriminator_gradients is not None:
            return self.discriminator_gradients(self, real, fake)
        return self._plain_discriminator_gradients(real, fake)

    def _plain_discriminator_gradients(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """The GAN loss on both batches, with lazy R1 on the reals."""
        loss_cfg = self.config.loss
        with self.autocast():
            real_logits = self.discriminate(real, self.real_labels).float()
            fake_logits = self.discriminate(fake, self.fake_labels).float()
            loss = discriminator_loss(loss_cfg.kind, real_logits, fake_logits)
        loss.backward()
        stats = {"loss_d": loss.detach(), "logit_real": real_logits.detach().mean(), "logit_fake": fake_logits.detach().mean()}
        if loss_cfg.r1_gamma > 0 and self.num_steps % loss_cfg.r1_interval == 0:
            # R1 in fp32: second-order gradients are where bf16 rounding hurts most.
            real_r1 = real.detach().requires_grad_(True)
            penalty = r1_penalty(self.discriminate(real_r1, self.real_labels), real_r1)
            (penalty * (loss_cfg.r1_gamma / 2) * loss_cfg.r1_interval).backward()
            stats["r1"] = penalty.detach()
        return stats

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D update; hooks on `opt_D.step` (e.g. a privacy ledger) run with it."""
        self.opt_D.zero_grad(set_to_none=True)
        stats = self.accumulate_discriminator_gradients(real, fake)
        average_gradients(self.D, self.context)
        self.opt_D.step()
        return stats

    def generator_step(self, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update G through the (frozen) discriminator's view of its fakes."""
        self.opt_G.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)  # no D weight gradients: saves a third of the backward pass
        try:
            with self.autocast():
                loss = generator_loss(self.config.loss.kind, self.discriminate(fake, self.fake_labels).float())
            total = loss
            for extension in self.extensions:
                term = extension.generator_loss(self, fake)
                if term is not None:
                    total = total + term
            total.backward()
        finally:
            self.D.requires_grad_(True)
        average_gradients(self.G, self.context)
        self.opt_G.step()
        return {"loss_g": loss.detach()}

    def step(self) -> dict[str, torch.Tensor]:
        """One G+D update; returns detached 0-d tensors (no host sync: `train()` reads them at log time)."""
        for extension in self.extensions:
            extension.before_step(self)
        real = self.next_real_batch()
        z = torch.randn(self.local_batch, self.config.model.z_dim, generator=self.noise_rng).to(self.device)
        if self.identity_labels is not None:
            # Fake identities follow the dataset's label frequencies (labels of random training images).
            picks = torch.randint(len(self.identity_labels), (self.local_batch,), generator=self.noise_rng)
            self.fake_labels = self.identity_labels[picks].to(self.device)
        with self.autocast():
            fake = self.G_forward(z) if self.fake_labels is None else self.G_forward(z, self.fake_labels)  # (B, C, H, W)
        stats = self.discriminator_step(real, fake.detach())
        stats.update(self.generator_step(fake))
        self.num_images_seen += self.config.batch_size
        self.num_steps += 1
        if self.G_ema is not None:
            update_ema(self.G_ema, self.G, ema_beta(self.config.ema, self.config.batch_size, self.num_images_seen))
        return stats

    # ---- extensions ----------------------------------------------------------------------------------
    def extra_stats(self) -> dict[str, float]:
        """Values added to every stats.jsonl line (e.g. the privacy budget spent so far)."""
        stats: dict[str, float] = {}
        for extension in self.extensions:
            stats.update(extension.extra_stats(self))
        return stats

    def export_metadata(self) -> dict[str, Any]:
        """Entries added to the export's config.json (e.g. the DP guarantee)."""
        metadata: dict[str, Any] = {}
        for extension in self.extensions:
            metadata.update(extension.export_metadata(self))
        return metadata

    def should_stop(self) -> str | None:
        """A reason to end training before the kimg target (e.g. the privacy budget is spent), or None."""
        for extension in self.extensions:
            reason = extension.should_stop(self)
            if reason is not None:
                return reason
        return None

    # ---- state -------------------------------------------------------------------------------------
    @property
    def export_module(self) -> nn.Module:
        return self.G_ema if self.G_ema is not None else self.G

    def state_dict(self) -> dict[str, Any]:
        state = {
            "format": "facegan-train-state",
            "num_images_seen": self.num_images_seen,
            "num_steps": self.num_steps,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "data_order": self.data_order.clone(),
            "data_position": self.data_position,
            "rng_data": self.data_rng.get_state(),
            "rng_noise": self.noise_rng.get_state(),
            "rng_augment": self.augment_rng.get_state(),
            "rng_torch": torch.get_rng_state(),
        }
        if self.G_ema is not None:
            state["G_ema"] = self.G_ema.state_dict()
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        for extension in self.extensions:
            entries = extension.state_dict()
            clash = sorted(set(entries) & set(state))
            if clash:
                raise RuntimeError(f"{type(extension).__name__} saves '{clash[0]}', which the checkpoint already holds")
            state.update(entries)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for extension in self.extensions:  # first: an extension refuses a checkpoint it cannot continue
            extension.load_state_dict(state)
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(state["G_ema"])
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise FaceganError(f"the checkpoint does not match this run's architecture ({str(error).splitlines()[0]})") from None
        self.data_order = state["data_order"]
        self.data_position = int(state["data_position"])
        self.data_rng.set_state(state["rng_data"])
        self.noise_rng.set_state(state["rng_noise"])
        self.augment_rng.set_state(state["rng_augment"])
        torch.set_rng_state(state["rng_torch"])
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.num_images_seen = int(state["num_images_seen"])
        self.num_steps = int(state["num_steps"])


def make_trainer(config: TrainConfig, dataset: FaceDataset, device: torch.device, context: DistributedContext,
                 setup_trainer: Callable[[Trainer], None] | None = None) -> Trainer:
    """The trainer for `config`; `setup_trainer(trainer)` then installs extensions (e.g. `facegan.privacy.make_private`).

    A config that asks for differential privacy is refused without a setup: training it non-privately
    by mistake would publish weights with no guarantee.
    """
    if config.privacy.enabled and setup_trainer is None:
        raise FaceganError(PRIVATE_SETUP_NEEDED)
    trainer = Trainer(config, dataset, device, context)
    if config.identity.enabled:
        from facegan.training.identity import install_identity

        install_identity(trainer)
    if config.fingerprint.enabled:
        from facegan.training.fingerprint_loss import install_fingerprint_loss

        install_fingerprint_loss(trainer, dataset)
    if setup_trainer is not None:
        setup_trainer(trainer)
    return trainer


def check_not_federated(run_dir: str | Path) -> None:
    """A federated run's config is its clients' recipe and its checkpoint the server's: `train --resume` cannot continue it."""
    if Run(run_dir).is_federated():
        raise FaceganError(f"{run_dir} is a federated run (facegan federated train); resume it with "
                           f"`facegan federated train --out {run_dir} --resume`")


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config a run was started with."""
    saved = Run(run_dir).read_config()
    if saved.get("kind") == "recogniser":  # written by facegan.recognition, which this layer cannot import
        raise FaceganError(f"{run_dir} is a face recogniser run (facegan recog train), not a GAN run; "
                           f"resume it with `facegan recog train --out {run_dir} --resume`")
    if saved.get("kind") == "repair":  # written by facegan.repair, likewise above this layer
        raise FaceganError(f"{run_dir} is a face-repair run (facegan repair train), not a GAN run; "
                           f"resume it with `facegan repair train --out {run_dir} --resume`")
    fingerprint = saved.get("fingerprint")
    if isinstance(fingerprint, dict) and "mode" not in fingerprint:  # saved before fingerprint.mode: the separate update was all
        saved = {**saved, "fingerprint": {**fingerprint, "mode": "separate"}}
    fingerprint = saved.get("fingerprint")
    if isinstance(fingerprint, dict) and "mark_data" not in fingerprint:  # saved before mark_data: a loss trained on marked faces
        saved = {**saved, "fingerprint": {**fingerprint, "mark_data": bool(fingerprint.get("path"))}}
    return from_dict(TrainConfig, saved)


def _check_resume_compatible(saved: TrainConfig, requested: TrainConfig) -> None:
    saved_dict, requested_dict = to_dict(saved), to_dict(requested)
    for key in RESUME_LOCKED_FIELDS:
        if key == "data":
            continue  # the same dataset may be named another way (absolute, relative, trailing slash): compared by hash
        if saved_dict[key] != requested_dict[key]:
            detail = key
            if isinstance(saved_dict[key], dict):
                detail = next(f"{key}.{k}" for k in saved_dict[key] if saved_dict[key][k] != requested_dict[key].get(k))
            raise FaceganError(
                f"cannot resume: '{detail}' differs from the saved run; only kimg, schedule and runtime may change on resume"
            )


def _prepare_model_config(config: TrainConfig, dataset: FaceDataset) -> TrainConfig:
    """Fill resolution/channels from the dataset; refuse a mismatch before any work starts."""
    model = config.model
    if model.resolution and model.resolution != dataset.resolution:
        raise FaceganError(
            f"model.resolution={model.resolution} but the dataset is {dataset.resolution}px; "
            f"prepare it with --size {model.resolution} or drop the override"
        )
    if model.channels and model.channels != dataset.channels:
        raise FaceganError(f"model.channels={model.channels} but the dataset has {dataset.channels} channels")
    model.resolution, model.channels = dataset.resolution, dataset.channels
    model.validate()
    return config


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: ProgressCallback | bool | None = None,
    on_log: LogCallback | None = None,
    should_stop: StopCallback | None = None,
    setup_trainer: Callable[[Trainer], None] | None = None,
) -> TrainResult:
    """Train (or resume) a GAN as `config` says; returns where everything was written.

    progress(kimg_done, kimg_total) and on_log(stats) report to the caller (rank 0); should_stop() is
    polled every step and may be flipped from any thread: the run then checkpoints and returns with
    `interrupted=True`. setup_trainer(trainer) runs once the trainer is built (before a resume loads).
    """
    config = copy.deepcopy(config)
    config.validate()
    if not math.isfinite(config.kimg):
        raise FaceganError(f"--kimg must be a finite number of thousands of images, got {config.kimg}")
    if config.privacy.enabled and setup_trainer is None:
        raise FaceganError(PRIVATE_SETUP_NEEDED)  # before anything is written
    if isinstance(progress, bool):
        progress = None  # older callers asked for the library's own bar; the CLI owns the bar now
    run = Run(config.out)
    run.check_can_train_into()
    # One writer per run folder: rank 0 holds the lock for the whole run (torchrun's other ranks write nothing).
    is_rank0 = int(os.environ.get("RANK", "0")) == 0
    created = not run.path.exists()
    lock = run.lock().acquire() if is_rank0 else None
    if lock is not None:
        remove_stale_temp_files(run.path)  # a half-written checkpoint of a killed earlier run
    setup_done = [False]
    try:
        # The handlers stay until train() returns: torchrun forwards a Ctrl-C that may land after the loop ended.
        with StopFlag() as stop:
            return _train_locked(run, config, resume, progress, on_log, should_stop, setup_trainer, setup_done, stop)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        # A full (or read-only) disk while writing stats, samples or the run config: one line, no temp files left.
        remove_temp_files(run.path)
        raise FaceganError(f"cannot write to the run folder {run.path} ({error.strerror}); free some space or fix the folder, "
                           "then continue with --resume") from None
    finally:
        if lock is not None:
            lock.release()
            if created and not setup_done[0]:
                remove_empty_run(run)


def _train_locked(run: Run, config: TrainConfig, resume: bool, progress: ProgressCallback | None, on_log: LogCallback | None,
                  should_stop: StopCallback | None, setup_trainer: Callable[[Trainer], None] | None, setup_done: list[bool],
                  stop: StopFlag) -> TrainResult:
    state = None
    expected_hash = None
    resumed_from_scratch = False
    if config.fingerprint.path:  # absolute, as the data: a run resumes from any folder
        config.fingerprint.path = os.path.abspath(os.path.expanduser(config.fingerprint.path))
    if resume:
        if not run.has_config():
            raise FaceganError(f"nothing to resume in {run.path} (no run config); start it without --resume")
        check_not_federated(run.path)
        saved = load_run_config(run.path)
        _check_resume_compatible(saved, _fill_model_from(saved, config))
        config.model = saved.model
        if config.init_from and config.init_from != saved.init_from:
            raise FaceganError("--init-from applies when a run starts; a resumed run continues from its own checkpoint")
        config.init_from = saved.init_from
        if run.has_checkpoint():
            state = load_state(run.state_path)
        else:
            resumed_from_scratch = True
            logger.warning("%s has no checkpoint yet (it stopped before its first one): starting it from the beginning "
                           "with its saved config", run.path)
        expected_hash = (state or {}).get("dataset_hash") or (run.read_run_info() or {}).get("dataset_hash")
    elif run.has_checkpoint() or run.has_config():
        raise FaceganError(f"{run.path} already holds a run; pass --resume to continue it, or choose another --out")

    # The dataset is known by its content: stored as an absolute path (resume from any folder), checked by hash.
    data_path = Path(config.data).expanduser()
    dataset = FaceDataset.load(data_path)
    fingerprint_id = (dataset_fingerprint(dataset) or {}).get("fingerprint", {}).get("id")
    config.data = str(data_path.resolve())
    config = _prepare_model_config(config, dataset)
    if config.identity.enabled:
        from facegan.training.identity import resolve_identity_mode

        config = resolve_identity_mode(config, dataset)
    if expected_hash is not None and expected_hash != dataset.content_hash:
        raise FaceganError(
            f"cannot resume: the dataset {config.data} is not the one this run was trained on (content hash changed); "
            "pass --data with the original dataset"
        )
    if state is not None and len(state["data_order"]) and int(state["data_order"].max()) >= len(dataset):
        raise FaceganError(f"checkpoint {run.state_path} is damaged ('data_order' indexes past the dataset); delete it to start over")

    device = resolve_device(config.runtime.device)
    if config.runtime.num_threads > 0:
        torch.set_num_threads(config.runtime.num_threads)
    context = init_distributed(device.type)
    check_batch_split(config.batch_size, context.world_size)
    if device.type == "cuda" and context.enabled:
        device = torch.device("cuda", context.local_rank)

    trainer = make_trainer(config, dataset, device, context, setup_trainer=setup_trainer)
    init_record = None
    if config.init_from:
        from facegan.training.init_from import InitRecord, initialise_from

        if state is None:
            init_record = initialise_from(trainer, config.init_from, dataset)
            config.init_from = init_record["path"]
            logger.info("initialised G and D from %s (%s kimg on %d images disjoint from this data)", init_record["path"],
                        init_record["source_kimg"], init_record["dataset_images"])
        else:
            init_record = (run.read_run_info() or {}).get("init_from")
            if isinstance(init_record, dict):
                trainer.extensions.append(InitRecord(init_record))
    if state is not None:
        trainer.load_state_dict(state)
    main = context.is_main
    elapsed_before = float(state.get("seconds", 0.0)) if state else 0.0

    # Setup succeeded: only now does the folder become a run (a run that failed before this can simply be restarted).
    if main:
        run.write_config(to_dict(config))
        from facegan.version import __version__

        run.write_run_info({
            "facegan_version": __version__,
            "torch_version": torch.__version__,
            "device": str(device),
            "bf16_autocast": trainer.bf16,
            "num_processes": context.world_size,
            "num_threads": torch.get_num_threads(),
            "dataset_path": config.data,
            "dataset_hash": dataset.content_hash,
            "dataset_images": len(dataset),
            **({"init_from": init_record} if init_record else {}),
        })
        if resume:
            run.truncate_stats(trainer.num_images_seen / 1000)
        # Real faces re-encoded: no generated content, unless a learned fingerprint was written into them.
        reals_source = COMPOSITE if fingerprint_id else None
        save_png(make_grid(np.asarray(dataset.images[: config.schedule.num_snapshot_images])), run.reals_grid_path,
                 Provenance(source_type=reals_source, action="train", fingerprint=fingerprint_id))
    setup_done[0] = True

    writer = None
    if main and config.runtime.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run.tensorboard_dir))

    snapshot_z = latents_for_seeds(range(config.schedule.num_snapshot_images), config.model.z_dim)
    snapshot_provenance = Provenance(source_type=TRAINED, action="train", seeds=f"0-{config.schedule.num_snapshot_images - 1}",
                                     fingerprint=fingerprint_id)
    monitor = _QualityMonitor(config, dataset, trainer, run, state) if main and config.schedule.metric_kimg > 0 else None
    total_images = int(config.kimg * 1000)
    schedule = config.schedule
    checkpoint_seconds = schedule.checkpoint_minutes * 60
    next_tick = {name: _next_multiple(trainer.num_images_seen, getattr(schedule, f"{name}_kimg")) for name in ("log", "snapshot", "checkpoint")}
    next_tick["metric"] = _next_multiple(trainer.num_images_seen, schedule.metric_kimg) if schedule.metric_kimg > 0 else float("inf")

    def check_finite(values: dict[str, float], seen: int) -> None:
        """Never log on or checkpoint a diverged run: the last good checkpoint stays as it was."""
        for name, value in values.items():
            if not math.isfinite(value):
                kept = (f"the last good checkpoint is kept in {run.state_path}" if run.has_checkpoint()
                        else "no checkpoint had been written yet")
                raise DivergenceError(
                    f"training diverged: {name} became {value} at kimg {seen / 1000:.2f}; {kept}. "
                    "Lower the learning rates (--set optimizer.lr_d=...) or raise loss.r1_gamma, then --resume"
                )

    def save_all(seconds: float) -> None:
        if not main:
            return
        full = trainer.state_dict()
        full.update(seconds=seconds, dataset_hash=dataset.content_hash)
        if monitor is not None:
            full.update(best_fd=monitor.best_fd)
        save_state(run.state_path, full)
        write_export(trainer.export_module, {})

    def write_export(module: nn.Module, entries: dict[str, Any]) -> None:
        try:
            save_export(run.export_dir, module, config.model, {
                "dataset_hash": dataset.content_hash,
                "dataset": str(config.data),
                "preset": config.preset,
                "kimg": trainer.num_images_seen / 1000,
                "ema": config.ema.enabled,
                **dataset_fingerprint(dataset),
                **trainer.export_metadata(),
                **entries,
            })
        except OSError as error:
            remove_temp_files(run.export_dir)
            raise FaceganError(f"cannot write the export {run.export_dir} ({error.strerror or error}); "
                               "free some space or fix the folder, then continue with --resume") from None

    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}
    tick_start_time, tick_start_images = time.perf_counter(), trainer.num_images_seen
    start_time = last_checkpoint_time = time.perf_counter()
    last_stats: dict[str, Any] = {}
    interrupted = False
    stop_reason: str | None = None
    if main and progress is not None:
        progress(trainer.num_images_seen / 1000, total_images / 1000)

    # On CUDA the agreement is a device sync: take it every few steps there (every step costs nothing on gloo/CPU).
    agree_every = 8 if context.enabled and device.type == "cuda" else 1
    local_stop = False
    stop.armed = True
    try:
        while trainer.num_images_seen < total_images:
            try:
                step_stats = trainer.step()
            except DivergenceError as error:
                raise DivergenceError(
                    f"training diverged: {error}; the last good checkpoint is kept in {run.state_path}. "
                    "Lower the learning rates (--set optimizer.lr_d=...) or raise loss.r1_gamma, then --resume"
                ) from None
            accumulate_stats(sums, counts, step_stats)
            seen = trainer.num_images_seen
            if main and progress is not None:
                progress(seen / 1000, total_images / 1000)
            # Stop decisions are agreed over ranks (OR of every rank's flags), so all stop at this same step.
            now = time.perf_counter()
            local_stop = local_stop or stop.requested or (should_stop is not None and bool(should_stop()))
            local_over_time = schedule.max_minutes > 0 and elapsed_before + now - start_time >= schedule.max_minutes * 60
            wants_stop = over_time = False
            if trainer.num_steps % agree_every == 0:
                wants_stop, over_time = any_rank([local_stop, local_over_time], context)
            stop_reason = trainer.should_stop()  # a function of the (identical) training state: the same on every rank
            if over_time and not wants_stop:
                stop_reason = f"time budget of {schedule.max_minutes:g} min reached at {seen / 1000:.1f} kimg"
            interrupted = wants_stop
            finished = seen >= total_images or stop_reason is not None
            metric_due = seen >= next_tick["metric"] or (finished and schedule.metric_kimg > 0)
            log_due = seen >= next_tick["log"] or finished or interrupted or metric_due
            snapshot_due = main and (seen >= next_tick["snapshot"] or finished)
            checkpoint_due = (seen >= next_tick["checkpoint"] or finished or interrupted
                              or (main and checkpoint_seconds > 0 and now - last_checkpoint_time >= checkpoint_seconds))
            if not (log_due or snapshot_due or checkpoint_due):
                continue
            means = mean_stats(sums, counts)  # the one host sync, at log/snapshot/checkpoint time only
            check_finite(means, seen)
            if log_due:
                now = time.perf_counter()
                seconds = elapsed_before + now - start_time
                line = {"kimg": round(seen / 1000, 3), "step": trainer.num_steps, "time_s": round(seconds, 2),
                        "img_per_s": round((seen - tick_start_images) / max(now - tick_start_time, 1e-9), 1)}
                line.update({name: round(all_reduce_mean(value, context), 5) for name, value in means.items()})
                line.update(trainer.extra_stats())
                if metric_due:
                    if monitor is not None:
                        line.update(monitor.measure(seen))
                    next_tick["metric"] = _next_multiple(seen, schedule.metric_kimg)
                sums, counts = {}, {}
                tick_start_time, tick_start_images = now, seen
                last_stats = line
                if main:
                    run.append_stats(line)
                    if writer is not None:
                        for name, value in line.items():
                            if name not in ("kimg", "step"):
                                writer.add_scalar(f"train/{name}", value, global_step=seen)
                    if on_log is not None:
                        on_log(dict(line))
                next_tick["log"] = _next_multiple(seen, schedule.log_kimg)
            if snapshot_due:
                grid = make_grid(render(trainer.export_module, snapshot_z))
                save_png(grid, run.fakes_grid_path(int(round(seen / 1000))), snapshot_provenance)
                next_tick["snapshot"] = _next_multiple(seen, schedule.snapshot_kimg)
            if checkpoint_due:
                save_all(elapsed_before + time.perf_counter() - start_time)
                last_checkpoint_time = time.perf_counter()
                if seen >= next_tick["checkpoint"]:
                    next_tick["checkpoint"] = _next_multiple(seen, schedule.checkpoint_kimg)
            if interrupted:
                if not stop.requested:
                    logger.info("stopping: asked to stop at %.3f kimg; checkpoint saved", seen / 1000)
                stop_reason = None
                break
            if stop_reason is not None:
                logger.info("stopping early: %s", stop_reason)
                break
    finally:
        if writer is not None:
            writer.close()

    if main and not interrupted:
        # Extensions may replace the finished export (the fingerprint fine-tune); the checkpoint keeps what trained.
        written = _read_export_config(run)
        for extension in trainer.extensions:
            final = extension.final_export(trainer, trainer.export_module, written,
                                           lambda: stop.requested or (should_stop is not None and bool(should_stop())))
            if final is None:
                continue
            module, entries = final
            if module is None:  # stopped on the way: the export stays the untuned one, a resume tunes it
                logger.info("stopping: asked to stop while %s; the export is the unfinished one, --resume finishes it",
                            entries.get("doing", "finishing the export"))
                interrupted = True
                break
            write_export(module, entries)

    seconds = elapsed_before + time.perf_counter() - start_time
    result = TrainResult(
        run_dir=run.path,
        export_dir=run.export_dir,
        kimg=trainer.num_images_seen / 1000,
        num_steps=trainer.num_steps,
        seconds=seconds,
        img_per_s=(trainer.num_images_seen - (state or {}).get("num_images_seen", 0)) / max(time.perf_counter() - start_time, 1e-9),
        interrupted=interrupted,
        last_stats=last_stats,
        stopped_early=stop_reason,
        resumed_from_scratch=resumed_from_scratch,
    )
    if main:
        from facegan.plots import plot_training_curves

        plot_training_curves(run.stats_path, run.loss_curves_path)
        run.write_summary(
            {"kimg": result.kimg, "num_steps": result.num_steps, "seconds": round(seconds, 2), "img_per_s": round(result.img_per_s, 1),
             "interrupted": interrupted, "stopped_early": stop_reason, "last_stats": last_stats, "export": str(result.export_dir)}
        )
    shutdown_distributed(context)
    return result


class _QualityMonitor:
    """FD/KID of the exported generator during training, and the best export kept in the run's best-export folder.

    Under differential privacy the metrics are still logged (they stay in the run folder), but no
    checkpoint is *selected* with them: choosing by a statistic of the private data would spend
    privacy that the accountant never charged.
    """

    def __init__(self, config: TrainConfig, dataset: FaceDataset, trainer: Trainer, run: Run, state: dict[str, Any] | None) -> None:
        from facegan.metrics import compute_real_features, get_extractor

        self.config, self.trainer, self.run = config, trainer, run
        self.extractor = get_extractor(config.schedule.metric_features)
        self.real_features = compute_real_features(dataset, self.extractor, config.schedule.metric_num).features
        self.best_fd = float((state or {}).get("best_fd", float("inf")))
        self.select_best = not config.privacy.enabled
        self.dataset = dataset

    def measure(self, num_images_seen: int) -> dict[str, float]:
        from facegan.metrics import compute_fd_kid

        z_dim = self.config.model.z_dim
        module = self.trainer.export_module
        values = compute_fd_kid(lambda seeds: render(module, latents_for_seeds(seeds, z_dim)), self.real_features, self.extractor,
                                num=self.config.schedule.metric_num)
        values = {name: round(float(value), 6) for name, value in values.items()}
        if self.select_best and values["fd"] < self.best_fd:
            self.best_fd = values["fd"]
            save_export(self.run.export_best_dir, module, self.config.model, {
                "dataset_hash": self.dataset.content_hash, "dataset": str(self.config.data), "preset": self.config.preset,
                "kimg": num_images_seen / 1000, "ema": self.config.ema.enabled,
                "selected_by": {"fd": values["fd"], "features": self.extractor.name, "num": self.config.schedule.metric_num},
                **dataset_fingerprint(self.dataset),
                **self.trainer.export_metadata(),
            })
        return values


def _read_export_config(run: Run) -> dict[str, Any]:
    """The run's export config.json as written last ({} when missing or unreadable)."""
    try:
        written = json.loads((run.export_dir / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return written if isinstance(written, dict) else {}


def _fill_model_from(saved: TrainConfig, requested: TrainConfig) -> TrainConfig:
    """The requested config with model resolution/channels taken from the saved (resolved) run."""
    filled = copy.deepcopy(requested)
    for name in ("resolution", "channels"):
        if not getattr(filled.model, name):
            setattr(filled.model, name, getattr(saved.model, name))
    if filled.identity.mode == "auto":
        filled.identity.mode = saved.identity.mode  # resolved from the same data when the run started
    return filled


def _next_multiple(num_images: int, every_kimg: float) -> int:
    """The first multiple of `every_kimg` (in images) strictly after `num_images`."""
    every = max(1, int(round(every_kimg * 1000)))
    return (num_images // every + 1) * every
