"""Repair-network training: clean face chips -> a run folder and a repairer export.

The same run contract as the GAN and recogniser loops: a `Run` folder with its lock, the resolved config,
stats.jsonl, TensorBoard, an atomic resume state, Ctrl-C = checkpoint and return `interrupted`,
`progress`/`on_log`/`should_stop` callbacks, and no host sync between log ticks. The clean images are
preloaded once as uint8; each step gathers a batch, damages it on the host (holes of every kind from
`repair.masks`, or a degradation from `repair.degrade` with no hole, so the one model learns to inpaint
and to restore) and trains the gated-convolution completion network against an SN-PatchGAN critic with
L1, hinge-adversarial and identity losses (in dlib's face space, or a `facegan recog train` recogniser's:
`loss.identity_recogniser`).

Every random choice of step s (data order, flips, masks, degradations) is drawn from
`numpy.random.default_rng([seed, purpose, s])`, so a resumed run replays exactly what an uninterrupted
one would have done, with no RNG state to carry but torch's (used for the initial weights only).
"""
from __future__ import annotations

import copy
import errno
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facegan.config import from_dict, to_dict
from facegan.data.dataset import FaceDataset
from facegan.errors import DivergenceError, FaceganError
from facegan.images import to_model
from facegan.repair.config import REPAIR_KIND, RESUME_LOCKED_FIELDS, RepairConfig, check_data_shape
from facegan.repair.model import PatchDiscriminator, RepairNet, composite
from facegan.run import Run, is_export_folder
from facegan.training.checkpoint import save_state
from facegan.training.control import StopFlag, accumulate_stats, mean_stats, remove_empty_run, remove_stale_temp_files, remove_temp_files
from facegan.training.loop import LogCallback, ProgressCallback, StopCallback, resolve_device

logger = logging.getLogger("facegan.training")

STATE_FORMAT = "facegan-repair-state"
# Purposes of the per-step RNG streams (the second word of every default_rng seed).
_ORDER, _FLIP, _DAMAGE = 1, 2, 3


@dataclass
class RepairTrainResult:
    """What a finished (or interrupted) repair run produced."""

    run_dir: Path
    export_dir: Path
    num_steps: int
    num_images_seen: int
    seconds: float
    img_per_s: float
    interrupted: bool = False
    last_stats: dict[str, Any] = field(default_factory=dict)
    resumed_from_scratch: bool = False


def damage_batch(clean: np.ndarray, config: RepairConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(damaged uint8 (B, H, W, C), masks bool (B, H, W)) for a batch of clean chips.

    Each image is degraded (noise/blur/JPEG at a severity from its training range, no hole) with probability
    damage.degradation_probability, otherwise it gets a hole of a kind drawn from damage.mask_kinds, its ratio
    drawn from [min_hole_ratio, max_hole_ratio].
    """
    from facegan.repair.degrade import random_degradation
    from facegan.repair.masks import ALIGNED_ANCHORS, RENDERED_ANCHORS, training_masks

    damage = config.damage
    count, size = len(clean), clean.shape[1]
    degraded = rng.random(count) < damage.degradation_probability
    masks = np.zeros((count, size, size), dtype=bool)
    damaged = clean.copy()
    rows = np.flatnonzero(~degraded)
    if len(rows):
        anchors = RENDERED_ANCHORS if damage.anchors == "rendered" else ALIGNED_ANCHORS
        masks[rows] = training_masks(len(rows), size, rng, damage.mask_kinds, (damage.min_hole_ratio, damage.max_hole_ratio), anchors)
    rows = np.flatnonzero(degraded)
    if len(rows):
        ranges = {"noise": damage.noise_sigma, "blur": damage.blur_factor, "jpeg": damage.jpeg_quality}
        damaged[rows] = random_degradation(clean[rows], rng, tuple(damage.degradations), ranges, damage.degradation_weights or None)
    # The hole's content is never seen by the network (it reads image * (1 - mask)); zero it anyway for clarity.
    damaged[masks] = 0
    return damaged, masks


class RepairTrainer:
    """The completion network, its critic, their optimizers, the face-space model and the data of one run."""

    def __init__(self, config: RepairConfig, images: np.ndarray, device: torch.device) -> None:
        self.config, self.device = config, device
        torch.manual_seed(config.seed)
        _, size, _, channels = images.shape
        self.resolution, self.channels = size, channels
        self.net = RepairNet(size, channels, config.model.width).to(device)
        self.critic = PatchDiscriminator(size, channels, config.model.discriminator_width).to(device)
        optim = config.optimizer
        fused = device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=optim.lr, betas=(optim.beta1, optim.beta2), fused=fused)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=optim.discriminator_lr, betas=(optim.beta1, optim.beta2),
                                                 fused=fused)
        self.images = images  # uint8 (N, H, W, C), preloaded: a batch is one gather, never a decode
        self.face_space = load_face_space(config.loss.identity_recogniser, device) if config.loss.identity > 0 else None
        self.num_steps = 0
        self.num_images_seen = 0

    def _rng(self, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, purpose, self.num_steps])

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(clean, damaged uint8 (B, H, W, C), masks bool (B, H, W)) for the current step."""
        count, batch = len(self.images), self.config.batch_size
        positions = np.arange(self.num_steps * batch, (self.num_steps + 1) * batch, dtype=np.int64)
        epochs, offsets = positions // count, positions % count
        indices = np.empty(batch, dtype=np.int64)
        for epoch in np.unique(epochs):  # one shuffle per pass over the data, the same on resume
            order = np.random.default_rng([self.config.seed, _ORDER, int(epoch)]).permutation(count)
            indices[epochs == epoch] = order[offsets[epochs == epoch]]
        clean = self.images[indices]  # (B, H, W, C), a copy
        if self.config.damage.flip:
            flip = self._rng(_FLIP).random(batch) < 0.5
            clean[flip] = clean[flip, :, ::-1]
        damaged, masks = damage_batch(clean, self.config, self._rng(_DAMAGE))
        return clean, damaged, masks

    def step(self) -> dict[str, torch.Tensor]:
        """One critic step and one network step; returns detached 0-d tensors (read at log time: no host sync here)."""
        clean, damaged, masks = self.next_batch()
        target = to_model(clean, self.device)  # (B, C, H, W)
        damaged_x = to_model(damaged, self.device)
        mask = torch.from_numpy(masks).to(self.device)[:, None].float()  # (B, 1, H, W), 1 = missing
        loss_config = self.config.loss
        stats: dict[str, torch.Tensor] = {}
        self.net.train()

        if loss_config.adversarial > 0:
            with torch.no_grad():
                fake = self.net(damaged_x, mask)
            # SN-PatchGAN hinge loss, every patch a vote.
            critic_loss = F.relu(1.0 - self.critic(target, mask)).mean() + F.relu(1.0 + self.critic(fake, mask)).mean()
            self.critic_optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.critic_optimizer.step()
            stats["loss_d"] = critic_loss.detach()

        raw = self.net.raw(damaged_x, mask)
        repaired = composite(damaged_x, mask, raw)
        error = (raw - target).abs()  # (B, C, H, W)
        has_hole = mask.flatten(1).amax(1).view(-1, 1, 1, 1) > 0.5
        damaged_pixels = torch.where(has_hole, mask, torch.ones_like(mask))  # holes, or the whole of a degraded image
        l1 = error.mean()
        damaged_l1 = (error * damaged_pixels).sum() / (damaged_pixels.sum() * self.channels).clamp(min=1.0)
        loss = loss_config.l1 * l1 + loss_config.damaged_l1 * damaged_l1
        stats.update(l1=l1.detach(), damaged_l1=damaged_l1.detach())
        if loss_config.adversarial > 0:
            adversarial = -self.critic(repaired, mask).mean()
            loss = loss + loss_config.adversarial * adversarial
            stats["adversarial_g"] = adversarial.detach()
        if self.face_space is not None and self.num_steps % loss_config.identity_every == 0:
            # Lazy, as StyleGAN2's R1: every k-th step, weighted by k, so the expected gradient is the same.
            with torch.no_grad():
                reference = self.face_space.embed_tensor(target)
            identity = (self.face_space.embed_tensor(repaired) - reference).norm(dim=1).mean()
            loss = loss + loss_config.identity * loss_config.identity_every * identity
            stats["identity_distance"] = identity.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        stats["loss_g"] = loss.detach()
        self.num_steps += 1
        self.num_images_seen += len(clean)
        return stats

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "format": STATE_FORMAT,
            "num_steps": self.num_steps,
            "num_images_seen": self.num_images_seen,
            "net": self.net.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "rng_torch": torch.get_rng_state(),
        }
        return state

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.net.load_state_dict(state["net"])
            self.critic.load_state_dict(state["critic"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
            rng = state["rng_torch"]
            num_steps, num_images_seen = int(state["num_steps"]), int(state["num_images_seen"])
            if num_steps < 0 or num_images_seen != num_steps * self.config.batch_size:
                raise ValueError("the step count does not fit the batch size")
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise FaceganError(f"checkpoint {path} does not fit this run ({str(error).splitlines()[0][:160]}); "
                               "delete it to start over") from None
        torch.set_rng_state(rng)
        self.num_steps, self.num_images_seen = num_steps, num_images_seen


DLIB_NAMES = ("dlib", "dlib-resnet")


def load_face_space(spec: str, device: torch.device):
    """The identity loss's face space: dlib's differentiable port, or a `facegan recog train` export (frozen).

    Either has `embed_tensor(float (B, C, H, W) in [-1, 1]) -> (B, D)`, differentiable in the images.
    """
    if spec in DLIB_NAMES:
        from facegan.faces.dlib_resnet import DlibResNetRecogniser

        return DlibResNetRecogniser(device=device)
    from facegan.recognition.export import load_recogniser_export

    if not Path(spec).expanduser().exists():
        raise FaceganError(f"loss.identity_recogniser {spec!r} is neither dlib nor an existing `facegan recog train` run/export; "
                           "train one first (on the repair data's people) or set loss.identity_recogniser=dlib")
    return load_recogniser_export(Path(spec).expanduser(), device=device)


def load_repair_state(path: Path) -> dict[str, Any]:
    """The resume state, read weights-only (no code is unpickled); a foreign or damaged file is one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated/corrupt/foreign files
        raise FaceganError(f"checkpoint {path} is corrupt or not a facegan checkpoint ({type(error).__name__}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise FaceganError(f"{path} is not a repair training checkpoint; pass a run folder of `facegan repair train`")
    return state


def load_repair_run_config(run_dir: str | os.PathLike) -> RepairConfig:
    """The resolved config a repair run was started with; a GAN or recogniser run is refused in one line."""
    run = Run(run_dir)
    if is_export_folder(run.path):
        owner = Run.containing(run.path)
        hint = f"resume its run: `facegan repair train --out {owner.path} --resume`" if owner is not None else "give the run folder"
        raise FaceganError(f"{run.path} is an export folder (weights only, no training state); {hint}")
    saved = run.read_config()
    kind = saved.get("kind")
    if kind != REPAIR_KIND:
        what = "a recogniser run (facegan recog train)" if kind == "recogniser" else "a GAN run (facegan train)"
        raise FaceganError(f"{run.path} is {what}, not a repair run; give a run folder of `facegan repair train`")
    return from_dict(RepairConfig, saved)


def _check_resume_compatible(saved: RepairConfig, requested: RepairConfig) -> None:
    saved_dict, requested_dict = to_dict(saved), to_dict(requested)
    for key in RESUME_LOCKED_FIELDS:
        if saved_dict[key] != requested_dict[key]:
            detail = key
            if isinstance(saved_dict[key], dict):
                detail = next(f"{key}.{k}" for k in saved_dict[key] if saved_dict[key][k] != requested_dict[key].get(k))
            raise FaceganError(f"cannot resume: '{detail}' differs from the saved run; only steps, schedule and runtime may change on resume")


def load_training_images(config: RepairConfig) -> tuple[np.ndarray, str]:
    """The dataset's images (uint8 NHWC, preloaded) and its content hash; sizes the network cannot take are refused."""
    dataset = FaceDataset.load(Path(config.data).expanduser())
    check_data_shape(dataset.resolution, dataset.channels, config.data)
    if len(dataset) == 0:
        raise FaceganError(f"{config.data} holds no images")
    return np.ascontiguousarray(dataset.images), dataset.content_hash


def _check_out_outside_data(config: RepairConfig) -> None:
    """Before the run folder is made: a run inside the --data folder would make it a dataset that also holds user files."""
    out = Path(os.path.realpath(Path(config.out).expanduser()))
    data = Path(os.path.realpath(Path(config.data).expanduser()))
    if data in (out, *out.parents):
        raise FaceganError(f"--out {config.out} lies inside the dataset {config.data}; put runs beside datasets, e.g. runs/NAME")
    if out in data.parents:
        raise FaceganError(f"--out {config.out} holds the dataset {config.data}; put the run in a folder of its own, e.g. runs/NAME")


# ---- the entry point --------------------------------------------------------------------------------
def train_repair(config: RepairConfig, *, resume: bool = False, progress: ProgressCallback | None = None,
                 on_log: LogCallback | None = None, should_stop: StopCallback | None = None) -> RepairTrainResult:
    """Train (or resume) a repair network as `config` says; returns where everything was written.

    progress(kimg_done, kimg_total) and on_log(stats) report to the caller; should_stop() is polled every
    step (from any thread): the run then checkpoints and returns with `interrupted=True`, as Ctrl-C does.
    """
    if not isinstance(config, RepairConfig):
        raise FaceganError(f"train_repair needs a RepairConfig (facegan.repair.config), got {type(config).__name__}")
    config = copy.deepcopy(config)
    if resume and config.out and not Run(config.out).has_config():
        # Before validate(): it would ask for --data, which a resume does not need.
        raise FaceganError(f"nothing to resume in {config.out} (no repair run there); start it without --resume, with --data")
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


def _train_locked(run: Run, config: RepairConfig, resume: bool, progress: ProgressCallback | None, on_log: LogCallback | None,
                  should_stop: StopCallback | None, setup_done: list[bool], stop: StopFlag) -> RepairTrainResult:
    from facegan.repair.export import save_repair_export

    state, expected_hash, resumed_from_scratch, expected_recogniser = None, None, False, None
    if config.loss.identity > 0 and config.loss.identity_recogniser not in DLIB_NAMES:
        # Saved resolved, so a resume from another folder names the same recogniser.
        config.loss.identity_recogniser = str(Path(config.loss.identity_recogniser).expanduser().resolve())
    if resume:
        saved = load_repair_run_config(run.path)
        _check_resume_compatible(saved, config)
        if run.has_checkpoint():
            state = load_repair_state(run.state_path)
        else:
            resumed_from_scratch = True
            logger.warning("%s has no checkpoint yet: starting it from the beginning with its saved config", run.path)
        expected_hash = (state or {}).get("dataset_hash") or (run.read_run_info() or {}).get("dataset_hash")
        expected_recogniser = ((run.read_run_info() or {}).get("identity_recogniser") or {}).get("version")
    elif run.has_checkpoint() or run.has_config():
        raise FaceganError(f"{run.path} already holds a run; pass --resume to continue it, or choose another --out")

    images, dataset_hash = load_training_images(config)
    config.data = str(Path(config.data).expanduser().resolve())
    if expected_hash is not None and expected_hash != dataset_hash:
        raise FaceganError("cannot resume: --data is not the dataset this run was trained on (content hash changed); pass the original dataset")
    device = resolve_device(config.runtime.device)
    if config.runtime.num_threads > 0:
        torch.set_num_threads(config.runtime.num_threads)
    trainer = RepairTrainer(config, images, device)
    if (expected_recogniser is not None and trainer.face_space is not None
            and config.loss.identity_recogniser not in DLIB_NAMES and trainer.face_space.version != expected_recogniser):
        raise FaceganError(f"cannot resume: the identity recogniser {config.loss.identity_recogniser} is not the one this run trained with "
                           f"(version {trainer.face_space.version}, the run's {str(expected_recogniser)[:16]}); put the original back")
    if state is not None:
        trainer.load_state_dict(state, run.state_path)
    elapsed_before = float(state.get("seconds", 0.0)) if state else 0.0

    run.write_config(to_dict(config))
    from facegan.version import __version__

    run.write_run_info({
        "kind": REPAIR_KIND, "facegan_version": __version__, "torch_version": torch.__version__, "device": str(device),
        "num_threads": torch.get_num_threads(), "dataset_path": config.data, "dataset_hash": dataset_hash,
        "dataset_images": len(images), "resolution": trainer.resolution, "channels": trainer.channels,
        **({"identity_recogniser": {"name": trainer.face_space.name, "version": trainer.face_space.version}}
           if trainer.face_space is not None and config.loss.identity_recogniser not in DLIB_NAMES else {}),
    })
    if resume:
        run.truncate_stats(trainer.num_steps * config.batch_size / 1000)
    setup_done[0] = True

    writer = None
    if config.runtime.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run.tensorboard_dir))

    num_total = config.steps
    schedule = config.schedule
    batch = config.batch_size

    def kimg(steps: int) -> float:
        return steps * batch / 1000

    def save_all(seconds: float) -> None:
        full = trainer.state_dict()
        full.update(seconds=seconds, dataset_hash=dataset_hash)
        save_state(run.state_path, full)
        try:
            save_repair_export(run.export_dir, trainer.net, config, dataset_hash, trainer.num_steps)
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
                                          "Lower --set optimizer.lr=... or loss.adversarial=..., then --resume")
            if log_due:
                now = time.perf_counter()
                line = {"step": steps, "kimg": round(kimg(steps), 3), "time_s": round(elapsed_before + now - start_time, 2),
                        "img_per_s": round((trainer.num_images_seen - tick_images) / max(now - tick_time, 1e-9), 1)}
                line.update({name: round(value, 5) for name, value in means.items()})
                sums, counts = {}, {}
                tick_time, tick_images = now, trainer.num_images_seen
                last_stats = line
                run.append_stats(line)
                if writer is not None:
                    for name, value in line.items():
                        if name not in ("step", "kimg"):
                            writer.add_scalar(f"repair/{name}", value, global_step=steps)
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
    result = RepairTrainResult(
        run_dir=run.path, export_dir=run.export_dir, num_steps=trainer.num_steps, num_images_seen=trainer.num_images_seen,
        seconds=seconds, img_per_s=(trainer.num_images_seen - images_before) / max(time.perf_counter() - start_time, 1e-9),
        interrupted=interrupted, last_stats=last_stats, resumed_from_scratch=resumed_from_scratch,
    )
    plot_repair_curves(run)
    run.write_summary({"kind": REPAIR_KIND, "num_steps": result.num_steps, "seconds": round(seconds, 2),
                       "img_per_s": round(result.img_per_s, 1), "interrupted": interrupted, "last_stats": last_stats,
                       "export": str(result.export_dir)})
    return result


def plot_repair_curves(run: Run) -> None:
    """Reconstruction L1 on the damaged pixels against step, as the run's loss-curves PNG."""
    from facegan.files import write_bytes_atomic
    from facegan.plots import line_plot_png

    points = [(line["step"], line["damaged_l1"]) for line in run.read_stats()
              if isinstance(line.get("step"), int) and isinstance(line.get("damaged_l1"), float)]
    if points:
        write_bytes_atomic(run.loss_curves_path, line_plot_png(points, "step", "L1 on damaged pixels ([-1, 1] scale)",
                                                               "Repair training: reconstruction error"))
