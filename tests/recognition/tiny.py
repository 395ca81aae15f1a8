"""The tiny recogniser config the training tests share, and what they read back from a run (CPU, seconds)."""
from __future__ import annotations

from facegan.config import from_dict
from facegan.recognition.config import RecogConfig
from facegan.run import EXPORT_WEIGHTS_NAME, Run

TINY = {"backbone": {"width": 4, "embedding_size": 16, "blocks": [1, 1, 1, 1]}, "batch_size": 8,
        "optimizer": {"warmup_steps": 2}, "runtime": {"tensorboard": False, "device": "cpu"}, "schedule": {"log_steps": 1},
        "calibration_images": 4}


def config_for(data, out, **updates) -> RecogConfig:
    return from_dict(RecogConfig, {**TINY, "data": [str(data)], "out": str(out), "steps": 4, **updates})


def export_weights(run_dir) -> bytes:
    return (Run(run_dir).export_dir / EXPORT_WEIGHTS_NAME).read_bytes()


def logged_losses(run_dir) -> list[float]:
    return [line["loss"] for line in Run(run_dir).read_stats()]
