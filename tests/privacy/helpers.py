"""Shared helpers for the privacy tests: a trainer (made private when its config asks) built without running the loop."""
from __future__ import annotations

import copy

import torch

from facegan.data.dataset import FaceDataset
from facegan.training.distributed import DistributedContext


def build_trainer(config, context: DistributedContext | None = None):
    """The trainer `facegan.train` would build for `config` (model size resolved from the data), on the CPU."""
    from facegan.privacy import make_private
    from facegan.training.loop import _prepare_model_config, make_trainer

    config = copy.deepcopy(config)
    config.validate()
    dataset = FaceDataset.load(config.data)
    config = _prepare_model_config(config, dataset)
    setup = make_private if config.privacy.enabled else None
    return make_trainer(config, dataset, torch.device("cpu"), context or DistributedContext(), setup_trainer=setup)


def private_part(trainer):
    """The `PrivateDiscriminator` that `make_private` installed in `trainer`."""
    from facegan.privacy import PrivateDiscriminator

    (private,) = [extension for extension in trainer.extensions if isinstance(extension, PrivateDiscriminator)]
    return private


def private_config(tiny_config, data, out, kimg=0.064, noise_multiplier=1.0, accountant="rdp", **updates):
    """A tiny `dp`-preset config with DP on at a fixed noise multiplier (no epsilon search)."""
    privacy = {"noise_multiplier": noise_multiplier, "accountant": accountant, **updates.pop("privacy", {})}
    return tiny_config(data, out, preset="dp", kimg=kimg, privacy=privacy, **updates)
