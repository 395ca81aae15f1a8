"""Identity-conditional networks: a generator fed a learned identity embedding, a projection discriminator.

Generator: the first `identity_dim` entries of the base generator's input are an identity embedding,
the rest the nuisance part of z. In training the embedding comes from a learned table (one row per
training identity); when sampling, `forward(z)` reads z's first `identity_dim` entries as standard
normal noise mapped through a Gaussian fitted to the table (mean + covariance, kept as buffers and so
stored in the export), so every new seed is a *new* person drawn from the distribution of identities,
not one of the training people. A plain `forward(z)` keeps the export usable by every sampler.

Discriminator: Miyato & Koyama (2018), "cGANs with projection discriminator": logit(x, y) =
psi(phi(x)) + <embed(y), phi(x)>, phi being the base discriminator's penultimate features.
"""
from __future__ import annotations

import torch
from torch import nn

from facegan.errors import FaceganError
from facegan.models.config import ModelConfig

# Added to the covariance's diagonal: with fewer identities than embedding entries the sample
# covariance is singular, and a Cholesky factor still has to exist.
COVARIANCE_RIDGE = 1e-3
# An embedding table beyond this (1 GiB of float32) fits no machine this code targets: refused, not allocated.
MAX_EMBEDDING_ENTRIES = 2**28


def fit_gaussian(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of the rows of an embedding table (K, D), ridge on the diagonal."""
    table = table.detach().double()
    mean = table.mean(dim=0)
    centred = table - mean
    covariance = centred.T @ centred / max(len(table) - 1, 1)
    covariance = covariance + COVARIANCE_RIDGE * torch.eye(table.shape[1], dtype=table.dtype)
    return mean.float(), covariance.float()


class ConditionalGenerator(nn.Module):
    """z (N, z_dim) [, labels (N,)] -> images (N, C, H, W); see the module docstring."""

    def __init__(self, config: ModelConfig, num_identities: int, identity_dim: int, base: nn.Module) -> None:
        super().__init__()
        if num_identities < 2:
            raise FaceganError(f"identity-conditional training needs at least 2 identities, the dataset has {num_identities}")
        if not 1 <= identity_dim < config.z_dim:
            raise FaceganError(f"identity.identity_dim={identity_dim} must be from 1 to model.z_dim - 1 ({config.z_dim - 1})")
        if num_identities * identity_dim > MAX_EMBEDDING_ENTRIES:
            raise FaceganError(f"{num_identities} identities x {identity_dim} embedding entries is beyond {MAX_EMBEDDING_ENTRIES:,} "
                               "weights; lower identity.identity_dim")
        self.config = config
        self.identity_dim = identity_dim
        self.num_identities = num_identities
        self.base = base
        # Rows start at the scale of z's entries, so the base network sees the inputs it was designed for.
        self.embedding = nn.Embedding(num_identities, identity_dim)
        nn.init.normal_(self.embedding.weight, std=1.0)
        mean, covariance = fit_gaussian(self.embedding.weight)
        self.register_buffer("identity_mean", mean)
        self.register_buffer("identity_covariance", covariance)

    @torch.no_grad()
    def refit_identity_distribution(self) -> None:
        """Refit the stored Gaussian to the current embedding table."""
        mean, covariance = fit_gaussian(self.embedding.weight)
        self.identity_mean.copy_(mean)
        self.identity_covariance.copy_(covariance)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:  # noqa: ANN001
        # The buffers are derived from the table: refreshed whenever they are saved (checkpoint,
        # export), so an export always holds the Gaussian of its own (e.g. EMA) table.
        self.refit_identity_distribution()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def new_identities(self, noise: torch.Tensor) -> torch.Tensor:
        """Standard normal noise (N, identity_dim) -> embeddings drawn from the fitted Gaussian (N, identity_dim)."""
        mean, covariance = fit_gaussian(self.embedding.weight)
        factor = torch.linalg.cholesky(covariance.double()).to(noise.dtype).to(noise.device)
        return mean.to(noise.device, noise.dtype) + noise @ factor.T

    @property
    def truncates_latent(self) -> bool:
        """Truncation is the base generator's when it takes it (see `render`); else z is scaled as usual."""
        return bool(getattr(self.base, "truncates_latent", False))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, truncation: float = 1.0) -> torch.Tensor:
        """Training identities by `labels`, or (labels None) new identities from z's first identity_dim entries."""
        nuisance = z[:, self.identity_dim :]
        if labels is None:
            identity = self.new_identities(z[:, : self.identity_dim])
        else:
            identity = self.embedding(labels.to(z.device)).to(z.dtype)
        latent = torch.cat([identity, nuisance], dim=1)
        if truncation != 1.0:
            return self.base(latent, truncation=truncation) if self.truncates_latent else self.base(latent * truncation)
        return self.base(latent)


class ProjectionDiscriminator(nn.Module):
    """images (N, C, H, W), labels (N,) -> logits (N,): the base logit + <embed(label), features>."""

    def __init__(self, config: ModelConfig, num_identities: int, base: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.base = base
        if config.architecture == "stable":
            width = base.head[-1].layer.in_features if hasattr(base.head[-1], "layer") else base.head[-1].in_features
        elif config.architecture == "dcgan":
            width = base.logit.in_features
        else:
            raise FaceganError(f"--condition identity with labels supports the stable and dcgan architectures, not '{config.architecture}'")
        self.embedding = nn.Embedding(num_identities, width)
        # Small at first: the projection term starts near 0 and D begins as the unconditional one.
        nn.init.normal_(self.embedding.weight, std=0.02)

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, nn.Module]:
        """phi(x) (N, F) and the base network's last (linear) layer psi."""
        base = self.base
        if self.config.architecture == "stable":
            x = base.stages(base.from_image(images))
            if base.minibatch_std is not None:
                x = base.minibatch_std(x)
            return base.head[:-1](x), base.head[-1]
        return base.features(images).flatten(1), base.logit

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        features, last = self.features(images)  # (N, F)
        logits = last(features).squeeze(1)  # (N,)
        if labels is None:
            return logits
        projection = (self.embedding(labels.to(images.device)).to(features.dtype) * features).sum(dim=1)
        return logits + projection
