"""Identity-consistent generation (`--condition identity`): many images of each new person.

Two modes, chosen by the data (`identity.mode: auto`):

* `embedding` (the dataset has identity labels): an identity-conditional generator fed a learned
  identity embedding and a projection discriminator (`facegan.models.conditional`); real labels come
  with each real batch, fake labels are drawn from the dataset's label frequencies. New people are
  new draws from a Gaussian fitted to the learned embeddings.
* `split-latent` (no labels, e.g. the built-in LFW faces): the first `identity_dim` entries of z are
  the identity, the rest the nuisance; every `identity.every` steps `IdentityLoss` makes its own
  generator update that pulls images of one identity code (different nuisance codes) within dlib's
  match threshold and pushes different identity codes beyond it, in the differentiable dlib ResNet
  port. The recogniser sees randomly shifted, scaled, flipped, re-lit, noised or blurred images, so
  the generator cannot pass the loss with pixel patterns that only fool one exact input.

Training never imports `facegan.training.loop` from here (the loop imports this module lazily).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facegan.errors import FaceganError
from facegan.training.config import TrainConfig
from facegan.training.distributed import average_gradients
from facegan.training.extensions import StatSums, TrainerExtension

if TYPE_CHECKING:
    from facegan.data.dataset import FaceDataset
    from facegan.training.loop import Trainer


def resolve_identity_mode(config: TrainConfig, dataset: FaceDataset) -> TrainConfig:
    """Set `identity.mode` from the data when it is `auto`; refuse a mode the data cannot train."""
    identity = config.identity
    if not identity.enabled:
        return config
    labelled = dataset.has_identities
    if identity.mode == "auto":
        identity.mode = "embedding" if labelled else "split-latent"
    if identity.mode == "embedding":
        if not labelled:
            raise FaceganError(f"identity.mode=embedding needs identity labels, and {config.data} has none; "
                               "use --set identity.mode=split-latent (or prepare the data with --layout identity-folders)")
        unknown = int(np.sum(np.asarray(dataset.identity) < 0))
        if unknown:
            raise FaceganError(f"{unknown} of {len(dataset)} images in {config.data} have no identity label; "
                               "identity-conditional training needs every image labelled (or --set identity.mode=split-latent)")
        count = len(np.unique(np.asarray(dataset.identity)))
        if count < 2:
            raise FaceganError(f"identity-conditional training needs at least 2 identities, {config.data} has {count}; "
                               "use --set identity.mode=split-latent")
    config.validate()  # e.g. the embedding mode under --dp-* is refused once the mode is known
    return config


def identity_labels(dataset: FaceDataset) -> torch.Tensor:
    """The dataset's identity codes renumbered 0..K-1 (in order of the codes): (N,) int64."""
    _, labels = np.unique(np.asarray(dataset.identity), return_inverse=True)
    return torch.from_numpy(labels.astype(np.int64).reshape(-1))


def build_networks(config: TrainConfig, dataset: FaceDataset, labels: torch.Tensor | None) -> tuple[nn.Module, nn.Module]:
    """G and D for an identity run (plain ones in split-latent mode, conditional ones with labels)."""
    from facegan.models import build_discriminator, build_generator
    from facegan.models.conditional import ConditionalGenerator, ProjectionDiscriminator

    G, D = build_generator(config.model), build_discriminator(config.model)
    if labels is None:
        return G, D
    num_identities = int(labels.max()) + 1
    return (ConditionalGenerator(config.model, num_identities, config.identity.identity_dim, G),
            ProjectionDiscriminator(config.model, num_identities, D))


def install_identity(trainer: Trainer) -> None:
    """Add the extension of the run's identity mode (its loss and/or its export metadata)."""
    identity = trainer.config.identity
    if identity.mode == "split-latent":
        trainer.extensions.append(IdentityLoss(trainer))
    else:
        trainer.extensions.append(IdentityEmbedding(trainer))


class IdentityEmbedding(TrainerExtension):
    """Embedding mode: records what the export needs to draw new identities."""

    def __init__(self, trainer: Trainer) -> None:
        self.num_identities = int(trainer.identity_labels.max()) + 1
        self.identity_dim = trainer.config.identity.identity_dim

    def export_metadata(self, trainer: Trainer) -> dict[str, Any]:
        return {"identity": {"mode": "embedding", "identity_dim": self.identity_dim, "num_identities": self.num_identities,
                             "new_identities": "Gaussian fitted to the learned embeddings (identity_mean, identity_covariance)"}}


# ---- the split-latent identity loss ------------------------------------------------------------------

def augment_for_recogniser(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random small shift/scale/rotation, horizontal flip, brightness/contrast, blur and noise: (N, C, H, W) in [-1, 1].

    Differentiable in the images; every random number comes from `generator` (drawn on the CPU).
    """
    n, channels = images.shape[0], images.shape[1]
    device, dtype = images.device, images.dtype

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return (low + (high - low) * torch.rand(*shape, generator=generator)).to(device, dtype)

    scale = uniform(0.9, 1.1, n)
    angle = uniform(-8.0, 8.0, n) * (math.pi / 180)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).to(device, dtype)
    shift = uniform(-0.08, 0.08, n, 2)  # in grid units: 0.08 = 4% of the side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Photometric: contrast and brightness per image.
    out = out * uniform(0.8, 1.2, n, 1, 1, 1) + uniform(-0.15, 0.15, n, 1, 1, 1)
    # Blur half of the images (3x3 binomial), by a random amount.
    kernel = torch.tensor([1.0, 2.0, 1.0], device=device, dtype=dtype)
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(channels, 1, 3, 3)
    blurred = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)
    amount = uniform(0.0, 1.0, n, 1, 1, 1) * (torch.rand(n, 1, 1, 1, generator=generator) < 0.5).to(device, dtype)
    out = out + amount * (blurred - out)
    # Pixel noise of a random strength.
    noise = torch.randn(out.shape, generator=generator).to(device, dtype)
    out = out + uniform(0.0, 0.06, n, 1, 1, 1) * noise
    return out.clamp(-1.0, 1.0)


def pair_masks(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper-triangle masks (N, N) of same-group and different-group pairs."""
    same = groups[:, None] == groups[None, :]
    upper = torch.ones_like(same).triu(diagonal=1)
    return same & upper, ~same & upper


def contrastive_hinge(descriptors: torch.Tensor, groups: torch.Tensor, threshold: float, margin: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mean same-identity distance, mean different-identity distance) on Euclidean descriptor distances.

    Absolute terms around the match threshold: same identity relu(d - (threshold - margin)), different
    relu((threshold + margin) - d); plus a relative (triplet) term over every anchor, positive and
    negative, relu(d_ap - d_an + 2 margin), which keeps a gradient while all distances sit on one side
    of the threshold (an untrained generator's faces all look alike to dlib).
    """
    squared = (descriptors[:, None, :] - descriptors[None, :, :]).pow(2).sum(-1)
    distances = (squared + 1e-8).sqrt()  # the epsilon keeps the gradient of sqrt finite at 0
    same, different = pair_masks(groups)
    same_d, different_d = distances[same], distances[different]
    absolute = F.relu(same_d - (threshold - margin)).mean() + F.relu((threshold + margin) - different_d).mean()
    positive = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool, device=groups.device)
    negative = groups[:, None] != groups[None, :]
    triplets = distances[:, :, None] - distances[:, None, :] + 2 * margin  # (anchor, positive, negative)
    valid = positive[:, :, None] & negative[:, None, :]
    relative = F.relu(triplets[valid]).mean()
    return absolute + relative, same_d.detach().mean(), different_d.detach().mean()


class IdentityLoss(TrainerExtension):
    """Split-latent mode: an extra generator update every `identity.every` steps (before the step's own).

    It touches neither the discriminator nor any real image, so it composes with DP training: the
    guarantee covers D's use of the private data, and G's updates stay post-processing.
    """

    STATE_KEY = "identity_rng"

    def __init__(self, trainer: Trainer, recogniser: Any = None) -> None:
        from facegan.faces.dlib_resnet import MATCH_THRESHOLD, DlibResNetRecogniser

        config = trainer.config
        self.identity = config.identity
        self.z_dim = config.model.z_dim
        self.threshold = MATCH_THRESHOLD
        self.recogniser = recogniser if recogniser is not None else DlibResNetRecogniser(trainer.device)
        # Its own stream, so the GAN's noise and augmentation draws are those of a plain run.
        self.rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 5 + 7919 * trainer.context.rank)
        # Its own Adam: its steps keep their size whatever the GAN gradients' statistics (shared moments would shrink them).
        optim = config.optimizer
        fused = trainer.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(trainer.G.parameters(), lr=self.identity.lr, betas=(optim.beta1, optim.beta2), fused=fused)
        self.stats = StatSums()

    def before_step(self, trainer: Trainer) -> None:
        if trainer.num_steps % self.identity.every:
            return
        identity = self.identity
        groups = torch.arange(identity.identities).repeat_interleave(identity.per_identity)  # (I*K,)
        z_id = torch.randn(identity.identities, identity.identity_dim, generator=self.rng)[groups]
        z_nuisance = torch.randn(len(groups), self.z_dim - identity.identity_dim, generator=self.rng)
        z = torch.cat([z_id, z_nuisance], dim=1).to(trainer.device)
        self.optimizer.zero_grad(set_to_none=True)
        with trainer.autocast():
            fake = trainer.G_forward(z)  # (I*K, C, H, W)
        seen = augment_for_recogniser(fake.float(), self.rng) if identity.augment else fake.float()
        descriptors = self.recogniser.embed_tensor(seen)  # (I*K, 128)
        loss, same, different = contrastive_hinge(descriptors, groups.to(descriptors.device), self.threshold, identity.margin)
        (loss * identity.weight).backward()
        average_gradients(trainer.G, trainer.context)
        self.optimizer.step()
        self.stats.add({"id_loss": loss.detach(), "id_same": same, "id_diff": different})

    def extra_stats(self, trainer: Trainer) -> dict[str, float]:
        return self.stats.means()

    def export_metadata(self, trainer: Trainer) -> dict[str, Any]:
        return {"identity": {"mode": "split-latent", "identity_dim": self.identity.identity_dim,
                             "recogniser": f"{self.recogniser.name} v{self.recogniser.version}",
                             "match_threshold": self.threshold}}

    def state_dict(self) -> dict[str, Any]:
        return {self.STATE_KEY: self.rng.get_state(), "identity_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.STATE_KEY not in state:
            raise FaceganError("cannot resume: the checkpoint was not written by an identity-loss run (no 'identity_rng'); "
                               "start a new run for --condition identity")
        self.rng.set_state(state[self.STATE_KEY])
        self.optimizer.load_state_dict(state["identity_optimizer"])
