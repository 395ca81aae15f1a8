"""One client's share of a round: facegan's own trainer, K kimg on the client's images, state kept between rounds.

A ClientApp may run in a fresh process for every message (Flower's deployment engine does), so the
trainer is rebuilt each round and everything that must outlive the round — both optimizers' Adam
moments, the data order and RNG streams, and under sample-level DP the privacy ledger and the
Poisson sampler — travels in the node's `context.state` as one serialized trainer state. The
global weights from the server then replace G, D and G_ema.

Under `dp_level == "sample"` each client's discriminator is facegan's DP-SGD one
(`facegan.privacy.make_private`), its noise derived for the whole federated run (rounds x K kimg on
this client's images) so that the client's (epsilon, delta) — reported after every round — never
passes the target. The server also keeps each client's DP step count and sends it back: a client
whose node restarted (its state lost) is charged for the steps it had already taken.
"""
from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from facegan.config import from_dict, to_dict
from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.federated.weights import load_arrays, to_arrays
from facegan.training.config import TrainConfig
from facegan.training.control import accumulate_stats, mean_stats
from facegan.training.distributed import DistributedContext
from facegan.training.loop import Trainer, make_trainer

logger = logging.getLogger("facegan.federated")

CLIENT_SEED_STRIDE = 1009
LOST_STATE_SEED_STRIDE = 104_729
# Per-step statistics a client reports, by DP level. Sample-level: G's loss and D's logit on fakes are
# post-processing of the DP discriminator; D's loss and logit on real faces read private images directly.
SHARED_STATS = {
    "none": ("loss_d", "loss_g", "logit_real", "logit_fake"),
    "sample": ("loss_g", "logit_fake"),
    "client": (),
}


@dataclass
class LocalResult:
    """What one client sends back after a round."""

    arrays: dict[str, np.ndarray]
    metrics: dict[str, float]
    state: bytes


def client_config(train: Mapping[str, Any], data: str | Path, partition_id: int, total_kimg: float) -> TrainConfig:
    """The client's TrainConfig: the federation's recipe on its own images, a seed of its own, the run's total length.

    `kimg` is the whole run's share of this client (rounds x local kimg): DP-SGD derives its noise from it.
    """
    values = dict(train)
    values.update(data=str(data), out="", kimg=float(total_kimg), init_from="")
    config = from_dict(TrainConfig, values)
    config.seed = int(config.seed) + CLIENT_SEED_STRIDE * (int(partition_id) + 1)
    return config


def build_client_trainer(config: TrainConfig, dataset: FaceDataset, dp_level: str) -> Trainer:
    """facegan's trainer for this client, with DP-SGD on D when the federation asks for sample-level DP."""
    setup = None
    if dp_level == "sample":
        from facegan.privacy import make_private
        from facegan.privacy.training import check_private_launch

        check_private_launch(config)
        setup = make_private
    elif config.privacy.enabled:
        raise FaceganError("the client recipe asks for DP-SGD but the federation's --dp-level is not 'sample'")
    torch.set_num_threads(max(1, config.runtime.num_threads or 1))
    return make_trainer(config, dataset, torch.device("cpu"), DistributedContext(), setup_trainer=setup)


def _private(trainer: Trainer):
    from facegan.privacy.training import PrivateDiscriminator

    return next((extension for extension in trainer.extensions if isinstance(extension, PrivateDiscriminator)), None)


def dump_state(trainer: Trainer) -> bytes:
    buffer = io.BytesIO()
    torch.save(trainer.state_dict(), buffer)
    return buffer.getvalue()


def load_state_bytes(trainer: Trainer, data: bytes) -> None:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged state from an older node: start its optimizers afresh
        logger.warning("client state unreadable (%s); this client's optimizers start afresh", error)
        return
    trainer.load_state_dict(state)


def train_round(train: Mapping[str, Any], data: str | Path, partition_id: int, global_arrays: Mapping[str, np.ndarray],
                local_kimg: float, total_kimg: float, dp_level: str = "none", state: bytes | None = None,
                dp_steps_done: int = 0) -> LocalResult:
    """Train this client `local_kimg` from the global weights; the update, its metrics and the state to keep."""
    started = time.perf_counter()
    dataset = FaceDataset.load(data)
    batch = int(train["batch_size"])
    steps_per_round = max(1, math.ceil(round(local_kimg * 1000) / batch))
    rounds = max(1, round(total_kimg / local_kimg)) if local_kimg > 0 else 1
    # The whole run's share of this client in whole steps (each round ends on a whole step): DP-SGD's noise is derived for it.
    config = client_config(train, data, partition_id, rounds * steps_per_round * batch / 1000)
    if dp_level == "sample" and not state and dp_steps_done > 0:
        # A node that lost its state must not replay the Poisson sampling and noise of the steps it already took.
        config.seed += LOST_STATE_SEED_STRIDE * int(dp_steps_done)
    trainer = build_client_trainer(config, dataset, dp_level)
    if state:
        load_state_bytes(trainer, state)
    private = _private(trainer)
    if private is not None and dp_steps_done > private.ledger.num_steps:
        # The node lost its state (restarted): charge the steps this client already took, as the server counted them.
        ledger = private.ledger
        ledger.load_state_dict({**ledger.state_dict(), "history": [[ledger.noise_multiplier, ledger.sample_rate, int(dp_steps_done)]]})
    load_arrays(trainer, global_arrays)

    seen_before = trainer.num_images_seen
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}
    stopped = None
    for _ in range(steps_per_round):
        if private is not None and not private.ledger.can_step():
            stopped = "privacy budget reached"
            break
        accumulate_stats(sums, counts, trainer.step())
    means = mean_stats(sums, counts) if counts else {}
    for name, value in means.items():
        if not np.isfinite(value):
            raise FaceganError(f"client {partition_id}: training diverged ({name} became {value}); lower the learning rates")
    images = trainer.num_images_seen - seen_before
    metrics: dict[str, float] = {
        "partition-id": float(partition_id),
        "num-examples": float(max(images, 0)),
        "steps": float(trainer.num_steps),
        "seconds": round(time.perf_counter() - started, 3),
        "stopped-early": 1.0 if stopped else 0.0,
    }
    # A fixed set of keys on every client and round (Flower's FedAvg refuses replies whose metric keys differ).
    # Under DP only values no epsilon would have to cover leave the node: the losses on real images, and under
    # client-level DP every loss (the local D saw private faces without noise), stay home; so does the data size.
    for name in SHARED_STATS[dp_level]:
        metrics[name] = round(float(means.get(name, float("nan"))), 6)
    if dp_level == "none":
        metrics["dataset-images"] = float(len(dataset))
    if private is not None:
        metrics.update({
            "epsilon": float(private.ledger.epsilon()),
            "delta": float(private.ledger.delta),
            "noise-multiplier": float(private.ledger.noise_multiplier),
            "sample-rate": float(private.ledger.sample_rate),
            "dp-steps": float(private.ledger.num_steps),
        })
    return LocalResult(to_arrays(trainer), metrics, dump_state(trainer))


def resolved_client_train(train: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as plain data, checked once (the server resolves it, clients rebuild it)."""
    return to_dict(from_dict(TrainConfig, dict(train)))
