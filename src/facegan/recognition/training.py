"""Recogniser training: identity-labelled datasets -> a run folder and a recogniser export.

The same run contract as the GAN loop (`facegan.training.loop`): a `Run` folder with its lock, the
resolved config, stats.jsonl, TensorBoard, an atomic resume state, Ctrl-C = checkpoint and return
`interrupted`, `progress`/`on_log`/`should_stop` callbacks, and no host sync between log ticks. The
images are preloaded once as a uint8 tensor; each batch is gathered, flipped and shifted in one
indexing operation, so nothing is decoded per epoch.

With `adversarial.eps > 0` (`--adversarial-eps`) each batch is first moved by PGD within the budget to raise its
margin-head loss, and the update is made on it (Madry et al.'s PGD adversarial training; see
`RecogTrainer.adversarial_batch`). A step then costs about steps + 0.7 plain steps (CPU, 1 thread, 32 px: 2.1x with
1 PGD step, 3.6-3.8x with 3, 7.2-7.3x with 7, at widths 8 and 32); eps 0 trains bit for bit as without it.
`adversarial.clean_weight` mixes the clean loss in, `adversarial.loss = "trades"` trains on the clean loss plus beta times
the embedding drift the attack maximises; "trades-impersonation" attacks half of each batch toward another identity
instead (see `RecogTrainer.impersonation_targets`). `init` (`--init`) starts from a recogniser export's weights (fine-tuning; see
`RecogTrainer.initialise_from`); a resume takes them from the checkpoint instead.
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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facegan.config import from_dict, to_dict
from facegan.data.dataset import FaceDataset
from facegan.errors import DivergenceError, FaceganError
from facegan.recognition.backbone import EmbeddingNet
from facegan.recognition.config import RECOGNISER_KIND, RESUME_LOCKED_FIELDS, TRADES_LOSSES, RecogConfig, check_architecture
from facegan.recognition.heads import MarginHead
from facegan.run import Run, is_export_folder
from facegan.training.checkpoint import save_state
# The GAN loop's run machinery, reused as is: stats accumulation without host syncs, the Ctrl-C flag,
# device and bf16 choice, and the clean-up of temp files after a failed write.
from facegan.training.control import StopFlag, accumulate_stats, mean_stats, remove_empty_run, remove_stale_temp_files, remove_temp_files
from facegan.training.loop import LogCallback, ProgressCallback, StopCallback, resolve_device, use_bf16

logger = logging.getLogger("facegan.training")

STATE_FORMAT = "facegan-recog-state"


@dataclass
class RecogTrainResult:
    """What a finished (or interrupted) recogniser run produced."""

    run_dir: Path
    export_dir: Path
    num_steps: int
    num_images_seen: int
    seconds: float
    img_per_s: float
    interrupted: bool = False
    last_stats: dict[str, Any] = field(default_factory=dict)
    resumed_from_scratch: bool = False


# ---- data ------------------------------------------------------------------------------------------
@dataclass
class IdentityData:
    """The training images of all datasets (uint8 NHWC), their classes, and the held-out calibration images."""

    streams: list[tuple[np.ndarray, np.ndarray]]
    """Per batch source: (images (N, H, W, C) uint8, classes (N,) int64); one source unless --mix splits them."""
    num_classes: int
    calibration_images: np.ndarray
    calibration_same: np.ndarray
    """Per calibration image, a training image of the same identity (the "same" pairs)."""
    calibration_different: np.ndarray
    """Per calibration image, a training image of another identity (the "different" pairs)."""
    hashes: list[str]
    resolution: int
    channels: int

    @property
    def num_images(self) -> int:
        return sum(len(images) for images, _ in self.streams)


def load_identity_data(config: RecogConfig) -> IdentityData:
    """Load every --data, give each dataset's identities their own classes, hold out the calibration images."""
    datasets = [FaceDataset.load(Path(path).expanduser()) for path in config.data]
    seen: dict[str, str] = {}
    for path, dataset in zip(config.data, datasets):
        if dataset.content_hash in seen:
            # Each --data gets its own classes, so one dataset given twice would teach every person as two different people.
            raise FaceganError(f"--data {path} is the same dataset as --data {seen[dataset.content_hash]} (content hash "
                               f"{dataset.content_hash[:16]}); give each dataset once")
        seen[dataset.content_hash] = str(path)
    first = datasets[0]
    parts, hashes, offset = [], [], 0
    for path, dataset in zip(config.data, datasets):
        if not dataset.has_identities:
            raise FaceganError(f"{path} has no identity labels; prepare it with `facegan data prepare SOURCE OUT --layout identity-folders` "
                               "(or builtin:rendered-faces)")
        if (dataset.resolution, dataset.channels) != (first.resolution, first.channels):
            raise FaceganError(f"{path} holds {dataset.resolution} px x {dataset.channels} channel images but {config.data[0]} holds "
                               f"{first.resolution} px x {first.channels}; prepare them with one --size and colour mode")
        rows = np.flatnonzero(dataset.identity >= 0)
        # Identities as contiguous classes, offset per dataset so that two datasets' "0" stay two people.
        names, classes = np.unique(dataset.identity[rows], return_inverse=True)
        parts.append((np.asarray(dataset.images[rows]), classes.astype(np.int64) + offset))
        offset += len(names)
        hashes.append(dataset.content_hash)
    if offset < 2:
        raise FaceganError(f"{config.data[0]} has one identity only; a recogniser learns to tell people apart, so it needs at least two")
    check_architecture(first.resolution, first.channels, config.backbone.embedding_size, config.backbone.width, config.backbone.blocks)

    # Calibration: one image each of up to N identities that have at least two, never trained on.
    rng = np.random.default_rng(config.seed)
    all_classes = np.concatenate([classes for _, classes in parts])
    counts = np.bincount(all_classes, minlength=offset)
    eligible = np.flatnonzero(counts >= 2)
    chosen = rng.permutation(eligible)[: config.calibration_images]
    held_out = np.zeros(len(all_classes), dtype=bool)
    if len(chosen) >= 2:
        for identity in np.sort(chosen):
            rows = np.flatnonzero(all_classes == identity)
            held_out[rows[rng.integers(len(rows))]] = True
    elif config.calibration_images:
        raise FaceganError(f"{' and '.join(config.data)}: fewer than two identities have two or more images, so no match threshold "
                           "can be calibrated; add images or set calibration_images=0")
    kept, start = [], 0
    calibration_images, calibration_classes = [], []
    for images, classes in parts:
        mask = held_out[start : start + len(classes)]
        start += len(classes)
        kept.append((images[~mask], classes[~mask]))
        calibration_images.append(images[mask])
        calibration_classes.append(classes[mask])
    if config.mix is None:
        streams = [(np.concatenate([images for images, _ in kept]), np.concatenate([classes for _, classes in kept]))]
    else:
        streams = kept
    for images, _ in streams:
        if len(images) == 0:
            raise FaceganError("no training images are left after holding out the calibration images; add images or lower calibration_images")
    # Pairs: each held-out image with a training image of its own identity and one of another identity.
    pool_images = np.concatenate([images for images, _ in kept])
    pool_classes = np.concatenate([classes for _, classes in kept])
    held_classes = np.concatenate(calibration_classes)
    same = np.array([rng.choice(np.flatnonzero(pool_classes == identity)) for identity in held_classes], dtype=np.int64)
    different = np.array([rng.choice(np.flatnonzero(pool_classes != identity)) for identity in held_classes], dtype=np.int64)
    return IdentityData(streams, offset, np.concatenate(calibration_images), pool_images[same], pool_images[different], hashes,
                        first.resolution, first.channels)


# ---- the trainer ---------------------------------------------------------------------------------------
class RecogTrainer:
    """The embedding network, the margin head, the optimizer, the data streams and the RNGs of one run."""

    def __init__(self, config: RecogConfig, data: IdentityData, device: torch.device) -> None:
        self.config, self.device = config, device
        self.bf16 = use_bf16(config, device)
        self.memory_format = torch.channels_last if config.runtime.channels_last else torch.contiguous_format
        torch.manual_seed(config.seed)
        backbone = config.backbone
        self.net = EmbeddingNet(data.resolution, data.channels, backbone.embedding_size, backbone.width, backbone.blocks)
        self.net = self.net.to(device, memory_format=self.memory_format)
        self.head = MarginHead(backbone.embedding_size, data.num_classes, config.head.kind, config.head.scale, config.head.margin,
                               config.head.easy_margin).to(device)
        parameters = [*self.net.parameters(), *self.head.parameters()]
        optim = config.optimizer
        fused = device.type in ("cpu", "cuda")
        if optim.kind == "adamw":
            self.optimizer = torch.optim.AdamW(parameters, lr=optim.lr, betas=(optim.momentum, 0.999), weight_decay=optim.weight_decay,
                                               fused=fused)
        else:
            self.optimizer = torch.optim.SGD(parameters, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay, fused=fused)

        self.data_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 1)
        self.augment_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 3)
        # PGD-AT's random starts draw from their own generator (on the CPU, so a state resumes on any device): turning
        # adversarial training on or off leaves the data order and augmentation draws of every other step unchanged.
        self.adversarial_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 5)
        self.batch_norms = [module for module in self.net.modules() if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
        # Preloaded once (on the GPU when they fit): a batch is one gather, never a decode.
        self.images, self.classes = [], []
        for images, classes in data.streams:
            tensor = torch.from_numpy(np.ascontiguousarray(images))
            self.images.append(tensor.to(device) if device.type == "cuda" and tensor.numel() < 2**30 else tensor)
            self.classes.append(torch.from_numpy(classes).to(device))
        self.orders = [torch.randperm(len(images), generator=self.data_rng) for images in self.images]
        self.positions = [0] * len(self.images)
        share = config.mix if config.mix is not None else 0.0
        second = int(round(share * config.batch_size))
        self.batch_shares = [config.batch_size] if len(self.images) == 1 else [config.batch_size - second, second]
        size = data.resolution
        self.max_shift = int(round(config.augment.shift * size))
        self.grid = torch.arange(size)
        self.num_steps = 0
        self.num_images_seen = 0
        self.init_record: dict[str, Any] | None = None
        """With --init: what the run started from (`initialise_from`'s record), kept in the state and the export."""

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def _take(self, stream: int, count: int) -> torch.Tensor:
        """The next `count` indices of a stream's shuffled epochs."""
        picked = []
        while count > 0:
            if self.positions[stream] >= len(self.orders[stream]):
                self.orders[stream] = torch.randperm(len(self.images[stream]), generator=self.data_rng)
                self.positions[stream] = 0
            take = self.orders[stream][self.positions[stream] : self.positions[stream] + count]
            picked.append(take)
            self.positions[stream] += len(take)
            count -= len(take)
        return torch.cat(picked)

    def _augmented(self, stream: int, indices: torch.Tensor) -> torch.Tensor:
        """Gather, shift and flip a batch in one indexing op: uint8 (B, H, W, C); shifted-in edges repeat the border."""
        batch, grid, shift = len(indices), self.grid, self.max_shift
        offsets = torch.randint(-shift, shift + 1, (batch, 2), generator=self.augment_rng) if shift else torch.zeros(batch, 2, dtype=torch.long)
        rows = (grid[None] + offsets[:, :1]).clamp(0, len(grid) - 1)  # (B, H)
        cols = (grid[None] + offsets[:, 1:]).clamp(0, len(grid) - 1)  # (B, W)
        if self.config.augment.flip:
            flip = torch.rand(batch, generator=self.augment_rng) < 0.5
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        device = self.images[stream].device
        return self.images[stream][indices.to(device)[:, None, None], rows.to(device)[:, :, None], cols.to(device)[:, None, :]]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float NCHW in [-1, 1] (channels_last) and int64 classes for the next step."""
        images, classes = [], []
        for stream, count in enumerate(self.batch_shares):
            if count == 0:
                continue
            indices = self._take(stream, count)
            images.append(self._augmented(stream, indices))
            classes.append(self.classes[stream][indices.to(self.classes[stream].device)])
        batch = torch.cat(images).to(self.device, non_blocking=True)
        # NHWC permuted to NCHW is already channels_last in memory.
        x = batch.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        return x.contiguous(memory_format=self.memory_format), torch.cat(classes).to(self.device)

    def learning_rate(self) -> float:
        warmup = self.config.optimizer.warmup_steps
        factor = min(1.0, (self.num_steps + 1) / warmup) if warmup else 1.0
        return self.config.optimizer.lr * factor

    def step(self) -> dict[str, torch.Tensor]:
        """One optimizer step; returns detached 0-d tensors (read at log time: no host sync here).

        With adversarial training on, `loss`/`accuracy` are those of the perturbed batch the update is made on, and
        `clean_loss`/`clean_accuracy` those of the same batch before the attack. With `adversarial.clean_weight` the
        update is on the weighted sum of both (`loss` is that sum); with `adversarial.loss` "trades" `loss` is the
        clean margin loss + beta * `drift`, the mean 1 - cos(clean embedding, perturbed embedding); "trades-impersonation"
        adds beta * impersonation_weight * `similarity_rise`, the mean rise of the targeted half's similarity to its targets.
        """
        x, classes = self.next_batch()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        self.net.train()
        extra: dict[str, torch.Tensor] = {}
        adversarial = self.config.adversarial
        if adversarial.enabled and (adversarial.loss in TRADES_LOSSES or adversarial.clean_weight > 0):
            loss, accuracy, extra = self._clean_and_adversarial_loss(x, classes)
        else:
            if adversarial.enabled:
                x, extra = self.adversarial_batch(x, classes)
            with self.autocast():
                embeddings = self.net(x)
            logits = self.head(embeddings.float(), classes)  # margins in fp32
            loss = F.cross_entropy(logits, classes)
            accuracy = (logits.detach().argmax(1) == classes).float().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.num_steps += 1
        self.num_images_seen += len(classes)
        return {"loss": loss.detach(), "accuracy": accuracy, **extra}

    def _clean_and_adversarial_loss(self, x: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The update's loss when it sees the clean batch too (Madry mixed with clean, or TRADES-cosine), and its stats.

        Clean and perturbed batches go through the network in one pass, so BatchNorm normalises (and its running
        statistics average) over both, the mixture the deployed network then meets.
        """
        adversarial = self.config.adversarial
        x_adv, extra = self.adversarial_batch(x, classes)
        with self.autocast():
            embeddings = self.net(torch.cat([x, x_adv]).contiguous(memory_format=self.memory_format)).float()  # (2B, D)
        clean, perturbed = embeddings.chunk(2)
        clean_logits = self.head(clean, classes)
        clean_loss = F.cross_entropy(clean_logits, classes)
        if adversarial.loss in TRADES_LOSSES:
            drift = (1.0 - F.cosine_similarity(clean, perturbed, dim=1)).mean()
            loss = clean_loss + adversarial.beta * drift
            extra = {**extra, "drift": drift.detach()}
            if adversarial.loss == "trades-impersonation":
                targets, targeted = self.impersonation_targets(classes)
                # Only the perturbed image is pushed away from its target: the clean similarity is the baseline and the
                # target a fixed point, so the term cannot pull clean images of different people together.
                goal = clean.detach()[targets]  # (B, D)
                rise = F.cosine_similarity(perturbed, goal, dim=1) - F.cosine_similarity(clean.detach(), goal, dim=1)
                rise = (rise.clamp(min=0) * targeted).sum() / targeted.sum().clamp(min=1)
                loss = loss + adversarial.beta * adversarial.impersonation_weight * rise
                extra["similarity_rise"] = rise.detach()
            accuracy = (self.head(perturbed.detach(), classes).argmax(1) == classes).float().mean()
        else:
            perturbed_logits = self.head(perturbed, classes)
            weight = adversarial.clean_weight
            loss = weight * clean_loss + (1.0 - weight) * F.cross_entropy(perturbed_logits, classes)
            accuracy = (perturbed_logits.detach().argmax(1) == classes).float().mean()
        return loss, accuracy, extra

    def adversarial_batch(self, x: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Madry's PGD-AT inner maximisation: the batch ([-1, 1]) moved within the budget to raise its margin-head loss
        (with `adversarial.loss` "trades": to raise 1 - cos between each image's embedding and its clean embedding).

        The attack works in 0..255 (the budget's scale) on the per-sample cross-entropy; facegan.attacks descends its
        objective, so the objective is minus the loss. BatchNorm stays in train mode (batch statistics) during the
        attack, so the perturbation maximises exactly the loss the update then minimises (eval mode would attack the
        running averages, which lag the weights by ~10 steps), but the running statistics are frozen meanwhile: they
        see one batch per step, the perturbed one, as in plain training. Parameters are frozen too, so the attack's
        backward passes compute input gradients only. Also returns the clean batch's loss and accuracy (no grad).
        """
        from facegan.attacks import pgd

        adversarial = self.config.adversarial
        parameters = [*self.net.parameters(), *self.head.parameters()]
        for module in self.batch_norms:
            module.track_running_stats = False  # train mode without it: batch statistics, buffers untouched
        for parameter in parameters:
            parameter.requires_grad_(False)
        try:
            def embed(pixels: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) in 0..255 -> (B, D) in fp32
                images = (pixels / 127.5 - 1.0).contiguous(memory_format=self.memory_format)
                with self.autocast():
                    return self.net(images).float()

            pixels = (x + 1.0) * 127.5  # (B, C, H, W): the uint8 values again, up to float rounding
            with torch.no_grad():
                clean_embeddings = embed(pixels)
                logits = self.head(clean_embeddings, classes)
                clean_loss = F.cross_entropy(logits, classes)
                clean_accuracy = (logits.argmax(1) == classes).float().mean()

            if adversarial.loss == "trades":
                def objective(pixels: torch.Tensor) -> torch.Tensor:  # (B,): descending it moves each embedding away
                    return F.cosine_similarity(embed(pixels), clean_embeddings, dim=1)
            elif adversarial.loss == "trades-impersonation":
                targets, targeted = self.impersonation_targets(classes)
                goal = clean_embeddings[targets]  # (B, D): another identity's clean embedding for the targeted half

                def objective(pixels: torch.Tensor) -> torch.Tensor:  # (B,): targeted half toward its goal, the rest away
                    embeddings = embed(pixels)
                    away = F.cosine_similarity(embeddings, clean_embeddings, dim=1)
                    toward = -F.cosine_similarity(embeddings, goal, dim=1)
                    return torch.where(targeted, toward, away)
            else:
                def objective(pixels: torch.Tensor) -> torch.Tensor:  # (B,): descending it raises each sample's loss
                    return -F.cross_entropy(self.head(embed(pixels), classes), classes, reduction="none")

            perturbed = pgd(objective, pixels, norm=adversarial.norm, eps=adversarial.eps, steps=adversarial.steps,
                            step_size=adversarial.step_size, random_start=True, generator=self.adversarial_rng)
        finally:
            for parameter in parameters:
                parameter.requires_grad_(True)
            for module in self.batch_norms:
                module.track_running_stats = True
        x_adv = (perturbed.detach() / 127.5 - 1.0).contiguous(memory_format=self.memory_format)
        return x_adv, {"clean_loss": clean_loss, "clean_accuracy": clean_accuracy}

    @staticmethod
    def impersonation_targets(classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For "trades-impersonation": each sample's target index in the batch (the sample half a batch on) and whether
        it is attacked toward it (the first half, where the target is another identity). (B,) int64, (B,) bool.

        Batches are drawn in shuffled order, so the sample half a batch on is a random one; a same-class partner (rare
        with hundreds of identities) is attacked away from its own embedding instead, as the second half is."""
        count = len(classes)
        targets = (torch.arange(count, device=classes.device) + count // 2) % count
        targeted = (torch.arange(count, device=classes.device) < count // 2) & (classes[targets] != classes)
        return targets, targeted

    def initialise_from(self, source: str, data: IdentityData) -> dict[str, Any]:
        """Start from a recogniser export's embedding network; imprint the head's class centres from its embeddings.

        The head is dropped from exports, so each class centre becomes the normalised mean embedding of that class's
        training images (weight imprinting, Qi et al. 2018): the margin loss starts near the exported network's own
        optimum instead of at random centres, whose gradients would first scramble the features being fine-tuned.
        Returns the record the run info and the export keep.
        """
        from facegan.recognition.export import load_recogniser_export

        recogniser = load_recogniser_export(source)
        wanted = {"resolution": data.resolution, "channels": data.channels, "embedding_size": self.config.backbone.embedding_size,
                  "width": self.config.backbone.width, "blocks": list(self.config.backbone.blocks)}
        saved = recogniser.metadata.get("backbone", {})
        have = {key: (list(saved.get(key) or []) if key == "blocks" else saved.get(key)) for key in wanted}
        if have != wanted:
            differences = ", ".join(f"{key} {have[key]} vs {wanted[key]}" for key in wanted if have[key] != wanted[key])
            raise FaceganError(f"--init {source} has another backbone than this run ({differences}; init vs run); train with its "
                               f"backbone (--set backbone.width=... etc., the same --size) or pass a recogniser with this one")
        self.net.load_state_dict(recogniser.net.state_dict())
        # BatchNorm buffers come with the weights; the optimizer state starts fresh, as in any fine-tuning.
        images = np.concatenate([images for images, _ in data.streams])
        classes = torch.from_numpy(np.concatenate([classes for _, classes in data.streams]))
        embeddings = torch.from_numpy(self.embed(images))  # (N, D), normalised, eval mode
        centres = torch.zeros(data.num_classes, embeddings.shape[1]).index_add_(0, classes, embeddings)
        with torch.no_grad():
            self.head.weight.copy_(F.normalize(centres, dim=1).to(self.head.weight.device))
        return {"path": recogniser.name.split(":", 1)[1], "version": recogniser.version,
                "num_steps": recogniser.metadata.get("num_steps"), "adversarial_training": recogniser.metadata.get("adversarial_training"),
                "head": "imprinted"}

    @torch.inference_mode()
    def embed(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, H, W, C) at the training size -> L2-normalised float32 (N, D), in eval mode (train mode restored)."""
        was_training = self.net.training
        self.net.eval()
        try:
            chunks = []
            for start in range(0, len(images), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(self.device)
                x = batch.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous(memory_format=self.memory_format)
                with self.autocast():
                    chunks.append(F.normalize(self.net(x).float()).cpu())
            return torch.cat(chunks).numpy() if chunks else np.zeros((0, self.config.backbone.embedding_size), np.float32)
        finally:
            self.net.train(was_training)

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "format": STATE_FORMAT,
            "num_steps": self.num_steps,
            "num_images_seen": self.num_images_seen,
            "net": self.net.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "orders": [order.clone() for order in self.orders],
            "positions": list(self.positions),
            "rng_data": self.data_rng.get_state(),
            "rng_augment": self.augment_rng.get_state(),
            "rng_adversarial": self.adversarial_rng.get_state(),
            "rng_torch": torch.get_rng_state(),
        }
        if self.init_record is not None:
            state["init"] = json.dumps(self.init_record)  # as JSON text: the record nests values of mixed types
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.net.load_state_dict(state["net"])
            self.head.load_state_dict(state["head"])
            self.optimizer.load_state_dict(state["optimizer"])
            orders, positions = list(state["orders"]), [int(position) for position in state["positions"]]
            if len(orders) != len(self.orders) or any(
                    not isinstance(order, torch.Tensor) or order.dtype != torch.int64 or len(order) != len(images)
                    or not 0 <= position <= len(order) for order, position, images in zip(orders, positions, self.images)):
                raise ValueError("the data order does not fit the datasets")
            rngs = [state["rng_data"], state["rng_augment"], state["rng_torch"]]
            # Checkpoints from before PGD-AT have no adversarial generator; they can only be plain runs (the
            # adversarial settings are resume-locked), which never draw from it.
            rng_adversarial = state["rng_adversarial"] if self.config.adversarial.enabled else state.get("rng_adversarial")
            num_steps, num_images_seen = int(state["num_steps"]), int(state["num_images_seen"])
            init_record = json.loads(state["init"]) if self.config.init else None
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise FaceganError(f"checkpoint {path} does not fit this run ({str(error).splitlines()[0][:160]}); "
                               "delete it to start over") from None
        self.orders, self.positions = orders, positions
        self.data_rng.set_state(rngs[0])
        self.augment_rng.set_state(rngs[1])
        if rng_adversarial is not None:
            self.adversarial_rng.set_state(rng_adversarial)
        torch.set_rng_state(rngs[2])
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.num_steps, self.num_images_seen = num_steps, num_images_seen
        self.init_record = init_record


def load_recog_state(path: Path) -> dict[str, Any]:
    """The resume state, read weights-only (no code is unpickled); a foreign or damaged file is one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated/corrupt/foreign files
        raise FaceganError(f"checkpoint {path} is corrupt or not a facegan checkpoint ({type(error).__name__}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise FaceganError(f"{path} is not a recogniser training checkpoint (a GAN run's?); pass a run folder of `facegan recog train`")
    return state


def load_recog_run_config(run_dir: str | Path) -> RecogConfig:
    """The resolved config a recogniser run was started with; a GAN run is refused in one line."""
    run = Run(run_dir)
    if is_export_folder(run.path):
        # An export's config.json is not a run config: reading it as one says "unknown config key 'datasets'".
        owner = Run.containing(run.path)
        hint = f"resume its run: `facegan recog train --out {owner.path} --resume`" if owner is not None else "give the run folder"
        raise FaceganError(f"{run.path} is an export folder (weights only, no training state); {hint}")
    saved = run.read_config()
    if saved.get("kind") == "repair":  # facegan.repair sits above recognition: its kind is spelled here
        raise FaceganError(f"{run.path} is a face-repair run (facegan repair train), not a recogniser run; "
                           f"resume it with `facegan repair train --out {run.path} --resume`")
    if saved.get("kind") != RECOGNISER_KIND:
        raise FaceganError(f"{run.path} is a GAN run (facegan train), not a recogniser run; resume it with `facegan train --out {run.path} --resume`")
    return from_dict(RecogConfig, saved)


def total_steps(config: RecogConfig, data: IdentityData) -> int:
    if config.steps:
        return config.steps
    return max(1, math.ceil(config.epochs * data.num_images / config.batch_size))


def _resolved(path: str) -> str:
    return str(Path(path).expanduser().resolve()) if path else ""


def _check_resume_compatible(saved: RecogConfig, requested: RecogConfig) -> None:
    saved_dict, requested_dict = to_dict(saved), to_dict(requested)
    for key in RESUME_LOCKED_FIELDS:
        if saved_dict[key] != requested_dict[key]:
            detail = key
            if isinstance(saved_dict[key], dict):
                detail = next(f"{key}.{k}" for k in saved_dict[key] if saved_dict[key][k] != requested_dict[key].get(k))
            raise FaceganError(f"cannot resume: '{detail}' differs from the saved run; only steps/epochs, schedule and runtime may change on resume")
    if _resolved(saved.init) != _resolved(requested.init):
        # Compared as resolved paths, as the data are by content: a run started from a recogniser resumes only from it.
        raise FaceganError(f"cannot resume: '--init' differs from the saved run ({saved.init or 'none'} vs {requested.init or 'none'}); "
                           "only steps/epochs, schedule and runtime may change on resume")
    if len(saved.data) != len(requested.data):
        raise FaceganError(f"cannot resume: the run was trained on {len(saved.data)} dataset(s), not {len(requested.data)}; pass the same --data")


# ---- the entry point --------------------------------------------------------------------------------
def train_recogniser(config: RecogConfig, *, resume: bool = False, progress: ProgressCallback | None = None,
                     on_log: LogCallback | None = None, should_stop: StopCallback | None = None) -> RecogTrainResult:
    """Train (or resume) a recogniser as `config` says; returns where everything was written.

    progress(kimg_done, kimg_total) and on_log(stats) report to the caller; should_stop() is polled every
    step (from any thread): the run then checkpoints and returns with `interrupted=True`, as Ctrl-C does.
    """
    if not isinstance(config, RecogConfig):
        raise FaceganError(f"train_recogniser needs a RecogConfig (facegan.recognition.config), got {type(config).__name__}")
    config = copy.deepcopy(config)
    if resume and config.out and not Run(config.out).has_config():
        # Before validate(): it would ask for --data, which a resume does not need.
        raise FaceganError(f"nothing to resume in {config.out} (no recogniser run there); start it without --resume, with --data")
    config.validate()
    _check_out_outside_data(config)
    run = Run(config.out)
    run.check_can_train_into()
    created = not run.path.exists()
    lock = run.lock().acquire()
    remove_stale_temp_files(run.path)  # a half-written checkpoint of a killed earlier run
    setup_done = [False]
    try:
        with StopFlag() as stop:
            return _train_locked(run, config, resume, progress, on_log, should_stop, setup_done, stop)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        remove_temp_files(run.path)
        raise FaceganError(f"cannot write to the run folder {run.path} ({error.strerror}); free some space or fix the folder, "
                           "then continue with --resume") from None
    finally:
        lock.release()
        if created and not setup_done[0]:
            remove_empty_run(run)


def _check_out_outside_data(config: RecogConfig) -> None:
    """Before the run folder is made: a run inside a --data folder would make it a dataset that also holds user files."""
    out = Path(os.path.realpath(Path(config.out).expanduser()))
    for path in config.data:
        if Path(os.path.realpath(Path(path).expanduser())) in (out, *out.parents):
            raise FaceganError(f"--out {config.out} lies inside the dataset {path}; put runs beside datasets, e.g. runs/NAME")


def _train_locked(run: Run, config: RecogConfig, resume: bool, progress: ProgressCallback | None, on_log: LogCallback | None,
                  should_stop: StopCallback | None, setup_done: list[bool], stop: StopFlag) -> RecogTrainResult:
    from facegan.recognition.export import save_recogniser_export

    state, expected_hashes, resumed_from_scratch = None, None, False
    if resume:
        if not run.has_config():
            raise FaceganError(f"nothing to resume in {run.path} (no run config); start it without --resume")
        saved = load_recog_run_config(run.path)
        _check_resume_compatible(saved, config)
        if run.has_checkpoint():
            state = load_recog_state(run.state_path)
        else:
            resumed_from_scratch = True
            logger.warning("%s has no checkpoint yet: starting it from the beginning with its saved config", run.path)
        expected_hashes = (state or {}).get("dataset_hashes") or (run.read_run_info() or {}).get("dataset_hashes")
    elif run.has_checkpoint() or run.has_config():
        raise FaceganError(f"{run.path} already holds a run; pass --resume to continue it, or choose another --out")

    data = load_identity_data(config)
    config.data = [str(Path(path).expanduser().resolve()) for path in config.data]
    config.init = _resolved(config.init)
    if expected_hashes is not None and list(expected_hashes) != data.hashes:
        raise FaceganError("cannot resume: the --data datasets are not the ones this run was trained on (content hash changed); "
                           "pass the original datasets, in the original order")
    device = resolve_device(config.runtime.device)
    if config.runtime.num_threads > 0:
        torch.set_num_threads(config.runtime.num_threads)
    trainer = RecogTrainer(config, data, device)
    if state is not None:
        trainer.load_state_dict(state, run.state_path)  # with --init, the weights and its record come from the state
    elif config.init:
        trainer.init_record = trainer.initialise_from(config.init, data)
        recorded = (run.read_run_info() or {}).get("init") if resume else None
        if recorded is not None and recorded.get("version") != trainer.init_record["version"]:
            raise FaceganError(f"cannot resume: --init {config.init} holds other weights (version {trainer.init_record['version']}) "
                               f"than the run started from ({recorded.get('version')}); restore that recogniser or start a new run")
    elapsed_before = float(state.get("seconds", 0.0)) if state else 0.0

    run.write_config(to_dict(config))
    from facegan.version import __version__

    run.write_run_info({
        "kind": RECOGNISER_KIND, "facegan_version": __version__, "torch_version": torch.__version__, "device": str(device),
        "bf16_autocast": trainer.bf16, "num_threads": torch.get_num_threads(), "dataset_paths": config.data,
        "dataset_hashes": data.hashes, "num_classes": data.num_classes, "training_images": data.num_images,
        "calibration_images": len(data.calibration_images),
        **({"init": trainer.init_record} if trainer.init_record is not None else {}),
    })
    if resume:
        run.truncate_stats(trainer.num_steps * config.batch_size / 1000)
    setup_done[0] = True

    writer = None
    if config.runtime.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run.tensorboard_dir))

    num_total = total_steps(config, data)
    schedule = config.schedule
    batch = config.batch_size

    def kimg(steps: int) -> float:
        return steps * batch / 1000

    def save_all(seconds: float) -> None:
        full = trainer.state_dict()
        full.update(seconds=seconds, dataset_hashes=data.hashes)
        save_state(run.state_path, full)
        try:
            save_recogniser_export(run.export_dir, trainer, config, data)
        except OSError as error:
            remove_temp_files(run.export_dir)
            raise FaceganError(f"cannot write the export {run.export_dir} ({error.strerror or error}); "
                               "free some space or fix the folder, then continue with --resume") from None

    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}
    start_time = last_checkpoint_time = tick_time = time.perf_counter()
    tick_images = trainer.num_images_seen
    last_stats: dict[str, Any] = {}
    interrupted = False
    images_before = trainer.num_images_seen
    if progress is not None:
        progress(kimg(trainer.num_steps), kimg(num_total))
    stop.armed = True
    try:
        while trainer.num_steps < num_total:
            accumulate_stats(sums, counts, trainer.step())
            steps = trainer.num_steps
            if progress is not None:
                progress(kimg(steps), kimg(num_total))
            now = time.perf_counter()
            interrupted = stop.requested or (should_stop is not None and bool(should_stop()))
            finished = steps >= num_total
            log_due = steps % schedule.log_steps == 0 or finished or interrupted
            checkpoint_due = (steps % schedule.checkpoint_steps == 0 or finished or interrupted
                              or (schedule.checkpoint_minutes > 0 and now - last_checkpoint_time >= schedule.checkpoint_minutes * 60))
            if not (log_due or checkpoint_due):
                continue
            means = mean_stats(sums, counts)  # the one host sync, at log/checkpoint time only
            for name, value in means.items():
                if not math.isfinite(value):
                    kept = f"the last good checkpoint is kept in {run.state_path}" if run.has_checkpoint() else "no checkpoint had been written yet"
                    raise DivergenceError(f"training diverged: {name} became {value} at step {steps}; {kept}. "
                                          "Lower --set optimizer.lr=... or raise optimizer.warmup_steps, then --resume")
            if log_due:
                now = time.perf_counter()
                line = {"step": steps, "kimg": round(kimg(steps), 3), "time_s": round(elapsed_before + now - start_time, 2),
                        "img_per_s": round((trainer.num_images_seen - tick_images) / max(now - tick_time, 1e-9), 1),
                        "lr": trainer.learning_rate()}
                line.update({name: round(value, 5) for name, value in means.items()})
                sums, counts = {}, {}
                tick_time, tick_images = now, trainer.num_images_seen
                last_stats = line
                run.append_stats(line)
                if writer is not None:
                    for name, value in line.items():
                        if name not in ("step", "kimg"):
                            writer.add_scalar(f"recog/{name}", value, global_step=steps)
                if on_log is not None:
                    on_log(dict(line))
            if checkpoint_due:
                save_all(elapsed_before + time.perf_counter() - start_time)
                last_checkpoint_time = time.perf_counter()
            if interrupted:
                if not stop.requested:
                    logger.info("stopping: asked to stop at step %d; checkpoint saved", steps)
                break
    finally:
        if writer is not None:
            writer.close()

    seconds = elapsed_before + time.perf_counter() - start_time
    result = RecogTrainResult(
        run_dir=run.path, export_dir=run.export_dir, num_steps=trainer.num_steps, num_images_seen=trainer.num_images_seen,
        seconds=seconds, img_per_s=(trainer.num_images_seen - images_before) / max(time.perf_counter() - start_time, 1e-9),
        interrupted=interrupted, last_stats=last_stats, resumed_from_scratch=resumed_from_scratch,
    )
    _plot_curves(run)
    run.write_summary({"kind": RECOGNISER_KIND, "num_steps": result.num_steps, "seconds": round(seconds, 2),
                       "img_per_s": round(result.img_per_s, 1), "interrupted": interrupted, "last_stats": last_stats,
                       "export": str(result.export_dir)})
    return result


def _plot_curves(run: Run) -> None:
    """Loss against step, as the run's loss-curves PNG."""
    from facegan.files import write_bytes_atomic
    from facegan.plots import line_plot_png

    points = [(line["step"], line["loss"]) for line in run.read_stats() if isinstance(line.get("step"), int) and isinstance(line.get("loss"), float)]
    if points:
        write_bytes_atomic(run.loss_curves_path, line_plot_png(points, "step", "margin loss", "Recogniser training loss"))
