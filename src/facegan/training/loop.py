"""The GAN training loop: one readable pass from a prepared dataset to a run folder and an export.

Run folder (unit a user passes around):
    config.json            resolved TrainConfig (defaults < preset < flags)
    run.json               environment: facegan/torch versions, device, processes, dataset hash
    stats.jsonl            one line per `schedule.log_kimg`: losses, kimg, img/s, time
    tensorboard/           the same scalars for TensorBoard
    samples/               reals.png, fakes000010.png ... grids at fixed seeds
    checkpoints/state.pt   full resume state (atomic; loaded weights-only)
    export/                config.json + model.safetensors (the generator to share)
    loss_curves.png, summary.json   written when the run ends
"""
from __future__ import annotations

import copy
import json
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facegan.config import from_dict, load_json, save_json, to_dict
from facegan.data.dataset import FaceDataset
from facegan.errors import DivergenceError, FaceganError
from facegan.images import make_grid, save_png, to_model
from facegan.models import build_discriminator, build_generator
from facegan.models.export import latents_for_seeds, render, save_export
from facegan.training.augment import DiffAugment
from facegan.training.checkpoint import STATE_NAME, load_state, save_state
from facegan.training.config import TrainConfig
from facegan.training.distributed import (
    DistributedContext,
    all_reduce_mean,
    average_gradients,
    broadcast_module,
    init_distributed,
    shutdown_distributed,
)
from facegan.training.ema import ema_beta, update_ema
from facegan.training.losses import discriminator_loss, generator_loss, r1_penalty

# Fields that define what is being learned: a resumed run must agree with the saved run on all of them.
RESUME_LOCKED_FIELDS = ("data", "preset", "batch_size", "seed", "model", "loss", "optimizer", "augment", "ema", "privacy")


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


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise FaceganError("--set runtime.device=cuda was asked for, but no CUDA device is available; use cpu or auto")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def use_bf16(config: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast where the hardware does it natively (measured ~1.6-2x faster on avx512_bf16 CPUs)."""
    if not config.runtime.amp:
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


class Trainer:
    """Holds the networks, optimizers, data stream and RNGs of one run; `step()` is one G+D update."""

    def __init__(self, config: TrainConfig, dataset: FaceDataset, device: torch.device, context: DistributedContext) -> None:
        self.config = config
        self.device = device
        self.context = context
        self.bf16 = use_bf16(config, device)
        self.memory_format = torch.channels_last if config.runtime.channels_last else torch.contiguous_format

        # Same seed on every process -> identical initial weights (broadcast anyway, for safety).
        torch.manual_seed(config.seed)
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

    # ---- data ------------------------------------------------------------------------------------
    def next_real_batch(self) -> torch.Tensor:
        """This process's share of the next global batch, as float NCHW in [-1, 1]."""
        batch_size = self.config.batch_size
        picked = []
        needed = batch_size
        while needed > 0:
            if self.data_position >= len(self.data_order):
                self.data_order = torch.randperm(len(self.images), generator=self.data_rng)
                self.data_position = 0
            take = self.data_order[self.data_position : self.data_position + needed]
            picked.append(take)
            self.data_position += len(take)
            needed -= len(take)
        indices = torch.cat(picked)[self.context.rank * self.local_batch : (self.context.rank + 1) * self.local_batch]
        real = to_model(self.images[indices.to(self.images.device)], self.device)  # (B, C, H, W)
        return real.contiguous(memory_format=self.memory_format)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    # ---- one step ----------------------------------------------------------------------------------
    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """Update D on a real and a (detached) fake batch, with lazy R1 on the reals."""
        loss_cfg = self.config.loss
        self.opt_D.zero_grad(set_to_none=True)
        with self.autocast():
            real_logits = self.D_forward(self.augment(real)).float()
            fake_logits = self.D_forward(self.augment(fake)).float()
            loss = discriminator_loss(loss_cfg.kind, real_logits, fake_logits)
        loss.backward()
        stats = {"loss_d": loss.item(), "logit_real": real_logits.mean().item(), "logit_fake": fake_logits.mean().item()}
        if loss_cfg.r1_gamma > 0 and self.num_steps % loss_cfg.r1_interval == 0:
            # R1 in fp32: second-order gradients are where bf16 rounding hurts most.
            real_r1 = real.detach().requires_grad_(True)
            penalty = r1_penalty(self.D_forward(self.augment(real_r1)), real_r1)
            (penalty * (loss_cfg.r1_gamma / 2) * loss_cfg.r1_interval).backward()
            stats["r1"] = penalty.item()
        average_gradients(self.D, self.context)
        self.opt_D.step()
        return stats

    def generator_step(self, fake: torch.Tensor) -> dict[str, float]:
        """Update G through the (frozen) discriminator's view of its fakes."""
        self.opt_G.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)  # no D weight gradients: saves a third of the backward pass
        try:
            with self.autocast():
                loss = generator_loss(self.config.loss.kind, self.D_forward(self.augment(fake)).float())
            loss.backward()
        finally:
            self.D.requires_grad_(True)
        average_gradients(self.G, self.context)
        self.opt_G.step()
        return {"loss_g": loss.item()}

    def step(self) -> dict[str, float]:
        real = self.next_real_batch()
        z = torch.randn(self.local_batch, self.config.model.z_dim, generator=self.noise_rng).to(self.device)
        with self.autocast():
            fake = self.G_forward(z)  # (B, C, H, W); graph kept for the generator step
        stats = self.discriminator_step(real, fake.detach())
        stats.update(self.generator_step(fake))
        for name, value in stats.items():
            if not math.isfinite(value):
                raise DivergenceError(f"{name} became {value} at kimg {self.num_images_seen / 1000:.2f}")
        self.num_images_seen += self.config.batch_size
        self.num_steps += 1
        if self.G_ema is not None:
            update_ema(self.G_ema, self.G, ema_beta(self.config.ema, self.config.batch_size, self.num_images_seen))
        return stats

    # ---- extension points (the DP trainer overrides these) -----------------------------------------
    def extra_stats(self) -> dict[str, float]:
        """Values added to every stats.jsonl line (e.g. the privacy budget spent so far)."""
        return {}

    def export_metadata(self) -> dict[str, Any]:
        """Entries added to the export's config.json (e.g. the DP guarantee)."""
        return {}

    def should_stop(self) -> str | None:
        """A reason to end training before the kimg target (e.g. the privacy budget is spent), or None."""
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
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
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


def make_trainer(config: TrainConfig, dataset: FaceDataset, device: torch.device, context: DistributedContext) -> Trainer:
    """The plain trainer, or the differentially private one when `config.privacy` asks for DP."""
    if config.privacy.enabled:
        from facegan.privacy.dp import PrivateTrainer

        return PrivateTrainer(config, dataset, device, context)
    return Trainer(config, dataset, device, context)


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config a run was started with."""
    return from_dict(TrainConfig, load_json(Path(run_dir) / "config.json", what="run config"))


def _check_resume_compatible(saved: TrainConfig, requested: TrainConfig) -> None:
    saved_dict, requested_dict = to_dict(saved), to_dict(requested)
    for key in RESUME_LOCKED_FIELDS:
        if saved_dict[key] != requested_dict[key]:
            detail = key
            if isinstance(saved_dict[key], dict):
                detail = next(f"{key}.{k}" for k in saved_dict[key] if saved_dict[key][k] != requested_dict[key].get(k))
            raise FaceganError(
                f"cannot resume: '{detail}' differs from the saved run; only kimg, schedule and runtime may change on resume"
            )


def _truncate_stats(path: Path, max_kimg: float) -> None:
    """Drop stats lines written after the checkpoint we resume from (a killed run may have some)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["kimg"] <= max_kimg + 1e-9:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):
            continue  # a half-written last line from a killed run
    path.write_text("".join(f"{line}\n" for line in kept))


class _StopFlag:
    """Ctrl-C asks for a clean stop (checkpoint, then exit); a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping: finishing this step and saving a checkpoint (Ctrl-C again to abort)", flush=True)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


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


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) a GAN as `config` says; returns where everything was written."""
    config = copy.deepcopy(config)
    config.validate()
    run_dir = Path(config.out)
    state_path = run_dir / "checkpoints" / STATE_NAME
    state = None
    if resume:
        if not (run_dir / "config.json").is_file():
            raise FaceganError(f"nothing to resume in {run_dir} (no config.json); start it without --resume")
        saved = load_run_config(run_dir)
        _check_resume_compatible(saved, _fill_model_from(saved, config))
        config.model = saved.model
        state = load_state(state_path)
    elif state_path.exists() or (run_dir / "config.json").exists():
        raise FaceganError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")

    dataset = FaceDataset.load(config.data)
    config = _prepare_model_config(config, dataset)
    if state is not None and state.get("dataset_hash") not in (None, dataset.content_hash):
        raise FaceganError(f"cannot resume: the dataset {config.data} changed since the run started (content hash differs)")

    device = resolve_device(config.runtime.device)
    if config.runtime.num_threads > 0:
        torch.set_num_threads(config.runtime.num_threads)
    context = init_distributed(device.type)
    if context.enabled and config.batch_size % context.world_size:
        raise FaceganError(f"batch_size {config.batch_size} must divide evenly over {context.world_size} processes")
    if device.type == "cuda" and context.enabled:
        device = torch.device("cuda", context.local_rank)

    trainer = make_trainer(config, dataset, device, context)
    if state is not None:
        trainer.load_state_dict(state)
    main = context.is_main
    elapsed_before = float(state.get("seconds", 0.0)) if state else 0.0

    stats_path = run_dir / "stats.jsonl"
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_json(to_dict(config), run_dir / "config.json")
        from facegan import __version__

        save_json(
            {
                "facegan_version": __version__,
                "torch_version": torch.__version__,
                "device": str(device),
                "bf16_autocast": trainer.bf16,
                "num_processes": context.world_size,
                "num_threads": torch.get_num_threads(),
                "dataset_hash": dataset.content_hash,
                "dataset_images": len(dataset),
            },
            run_dir / "run.json",
        )
        if state is not None:
            _truncate_stats(stats_path, trainer.num_images_seen / 1000)
        save_png(make_grid(np.asarray(dataset.images[: config.schedule.num_snapshot_images])), run_dir / "samples" / "reals.png")

    writer = None
    if main and config.runtime.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"))

    snapshot_z = latents_for_seeds(range(config.schedule.num_snapshot_images), config.model.z_dim)
    monitor = _QualityMonitor(config, dataset, trainer, run_dir, state) if main and config.schedule.metric_kimg > 0 else None
    total_images = int(config.kimg * 1000)
    schedule = config.schedule
    next_tick = {name: _next_multiple(trainer.num_images_seen, getattr(schedule, f"{name}_kimg")) for name in ("log", "snapshot", "checkpoint")}
    next_tick["metric"] = _next_multiple(trainer.num_images_seen, schedule.metric_kimg) if schedule.metric_kimg > 0 else float("inf")

    def save_all(seconds: float) -> None:
        if not main:
            return
        full = trainer.state_dict()
        full.update(seconds=seconds, dataset_hash=dataset.content_hash)
        if monitor is not None:
            full.update(best_fd=monitor.best_fd)
        save_state(state_path, full)
        save_export(run_dir / "export", trainer.export_module, config.model, {
            "dataset_hash": dataset.content_hash,
            "dataset": str(config.data),
            "preset": config.preset,
            "kimg": trainer.num_images_seen / 1000,
            "ema": config.ema.enabled,
            **trainer.export_metadata(),
        })

    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    tick_start_time, tick_start_images = time.perf_counter(), trainer.num_images_seen
    start_time = time.perf_counter()
    last_stats: dict[str, Any] = {}
    interrupted = False
    stop_reason: str | None = None
    bar = None
    if main and progress:
        from tqdm import tqdm

        bar = tqdm(total=round(config.kimg, 3), initial=round(trainer.num_images_seen / 1000, 3), unit="kimg", desc="train", dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} kimg [{elapsed}<{remaining}{postfix}]")

    try:
        with _StopFlag() as stop:
            while trainer.num_images_seen < total_images:
                try:
                    step_stats = trainer.step()
                except DivergenceError as error:
                    raise DivergenceError(
                        f"training diverged: {error}; the last good checkpoint is kept in {state_path}. "
                        "Lower the learning rates (--set optimizer.lr_d=...) or raise loss.r1_gamma, then --resume"
                    ) from None
                for name, value in step_stats.items():
                    sums[name] = sums.get(name, 0.0) + value
                    counts[name] = counts.get(name, 0) + 1
                seen = trainer.num_images_seen
                if bar is not None:
                    bar.update(max(0.0, round(min(seen / 1000, bar.total) - bar.n, 3)))  # the last batch may overshoot
                stop_reason = trainer.should_stop()
                if schedule.max_minutes > 0 and elapsed_before + time.perf_counter() - start_time >= schedule.max_minutes * 60:
                    stop_reason = f"time budget of {schedule.max_minutes:g} min reached at {seen / 1000:.1f} kimg"
                finished = seen >= total_images or stop_reason is not None
                metric_due = seen >= next_tick["metric"] or (finished and schedule.metric_kimg > 0)
                if seen >= next_tick["log"] or finished or stop.requested or metric_due:
                    now = time.perf_counter()
                    seconds = elapsed_before + now - start_time
                    line = {"kimg": round(seen / 1000, 3), "step": trainer.num_steps, "time_s": round(seconds, 2),
                            "img_per_s": round((seen - tick_start_images) / max(now - tick_start_time, 1e-9), 1)}
                    line.update({name: round(all_reduce_mean(sums[name] / counts[name], context), 5) for name in sums})
                    line.update(trainer.extra_stats())
                    if metric_due:
                        if monitor is not None:
                            line.update(monitor.measure(seen))
                        next_tick["metric"] = _next_multiple(seen, schedule.metric_kimg)
                    sums, counts = {}, {}
                    tick_start_time, tick_start_images = now, seen
                    last_stats = line
                    if main:
                        with open(stats_path, "a") as handle:
                            handle.write(json.dumps(line) + "\n")
                        if writer is not None:
                            for name, value in line.items():
                                if name not in ("kimg", "step"):
                                    writer.add_scalar(f"train/{name}", value, global_step=seen)
                        if bar is not None:
                            bar.set_postfix_str(f"D {line.get('loss_d', 0):.3f} G {line.get('loss_g', 0):.3f} {line['img_per_s']:.0f} img/s")
                    next_tick["log"] = _next_multiple(seen, schedule.log_kimg)
                if main and (seen >= next_tick["snapshot"] or finished):
                    grid = make_grid(render(trainer.export_module, snapshot_z))
                    save_png(grid, run_dir / "samples" / f"fakes{int(round(seen / 1000)):06d}.png")
                    next_tick["snapshot"] = _next_multiple(seen, schedule.snapshot_kimg)
                if seen >= next_tick["checkpoint"] or finished or stop.requested:
                    save_all(elapsed_before + time.perf_counter() - start_time)
                    next_tick["checkpoint"] = _next_multiple(seen, schedule.checkpoint_kimg)
                if stop.requested:
                    interrupted = True
                    break
                if stop_reason is not None:
                    print(f"stopping early: {stop_reason}", flush=True)
                    break
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()

    seconds = elapsed_before + time.perf_counter() - start_time
    result = TrainResult(
        run_dir=run_dir,
        export_dir=run_dir / "export",
        kimg=trainer.num_images_seen / 1000,
        num_steps=trainer.num_steps,
        seconds=seconds,
        img_per_s=(trainer.num_images_seen - (state or {}).get("num_images_seen", 0)) / max(time.perf_counter() - start_time, 1e-9),
        interrupted=interrupted,
        last_stats=last_stats,
    )
    if main:
        from facegan.plots import plot_training_curves

        plot_training_curves(stats_path, run_dir / "loss_curves.png")
        save_json(
            {"kimg": result.kimg, "num_steps": result.num_steps, "seconds": round(seconds, 2), "img_per_s": round(result.img_per_s, 1),
             "interrupted": interrupted, "stopped_early": stop_reason, "last_stats": last_stats, "export": str(result.export_dir)},
            run_dir / "summary.json",
        )
    shutdown_distributed(context)
    return result


class _QualityMonitor:
    """FD/KID of the exported generator during training, and the best export kept in export-best/.

    Under differential privacy the metrics are still logged (they stay in the run folder), but no
    checkpoint is *selected* with them: choosing by a statistic of the private data would spend
    privacy that the accountant never charged.
    """

    def __init__(self, config: TrainConfig, dataset: FaceDataset, trainer: Trainer, run_dir: Path, state: dict[str, Any] | None) -> None:
        from facegan.metrics import compute_real_features, get_extractor

        self.config, self.trainer, self.run_dir = config, trainer, run_dir
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
            save_export(self.run_dir / "export-best", module, self.config.model, {
                "dataset_hash": self.dataset.content_hash, "dataset": str(self.config.data), "preset": self.config.preset,
                "kimg": num_images_seen / 1000, "ema": self.config.ema.enabled,
                "selected_by": {"fd": values["fd"], "features": self.extractor.name, "num": self.config.schedule.metric_num},
                **self.trainer.export_metadata(),
            })
        return values


def _fill_model_from(saved: TrainConfig, requested: TrainConfig) -> TrainConfig:
    """The requested config with model resolution/channels taken from the saved (resolved) run."""
    filled = copy.deepcopy(requested)
    for name in ("resolution", "channels"):
        if not getattr(filled.model, name):
            setattr(filled.model, name, getattr(saved.model, name))
    return filled


def _next_multiple(num_images: int, every_kimg: float) -> int:
    """The first multiple of `every_kimg` (in images) strictly after `num_images`."""
    every = max(1, int(round(every_kimg * 1000)))
    return (num_images // every + 1) * every
