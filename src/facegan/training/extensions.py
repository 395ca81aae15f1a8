"""What can be plugged into a `Trainer` without subclassing it (as Opacus wraps an optimizer).

A trainer has three slots, all empty for ordinary training:

    trainer.real_batch_sampler       () -> indices of the training images this step reads
    trainer.discriminator_gradients  (trainer, real, fake) -> stats; sets D's .grad (no optimizer step)
    trainer.extensions               TrainerExtension objects: hooks around each step, a term of G's loss,
                                     extra stats, export metadata, an early-stop reason, resume state, and a
                                     replacement for the finished export

`facegan.privacy.make_private` fills them (Poisson sampling, clipped and noised real-image gradients,
a privacy ledger charged on each discriminator optimizer step); training itself never imports privacy.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from facegan.training.loop import Trainer


class RealBatchSampler(Protocol):
    def __call__(self) -> torch.Tensor:
        """Indices (B,) into the training images for this step's real batch (B may vary, even be 0)."""
        ...


class DiscriminatorGradients(Protocol):
    def __call__(self, trainer: Trainer, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Set the discriminator's .grad from a real and a detached fake batch; return detached 0-d stats."""
        ...


class TrainerExtension:
    """Takes part in a run next to the trainer; every method is optional (the defaults do nothing)."""

    def before_step(self, trainer: Trainer) -> None:
        """Called before each step draws anything; raise a FaceganError to refuse the step."""

    def generator_loss(self, trainer: Trainer, fake: torch.Tensor) -> torch.Tensor | None:
        """A term added to G's adversarial loss this step (fake: the batch D judges, with its graph), or None."""
        return None

    def extra_stats(self, trainer: Trainer) -> dict[str, float]:
        """Values added to every stats.jsonl line (computed at log time only)."""
        return {}

    def export_metadata(self, trainer: Trainer) -> dict[str, Any]:
        """Entries added to the export's config.json."""
        return {}

    def final_export(self, trainer: Trainer, module: nn.Module, written: dict[str, Any],
                     should_stop: Callable[[], bool]) -> tuple[nn.Module | None, dict[str, Any]] | None:
        """When training has ended (not interrupted): a module to export instead of `module` (the trained one, left as it
        is) and entries for the export's config.json; (None, {"doing": what}) when stopped on the way; None keeps the
        export. `written`: the export's config.json as last written."""
        return None

    def should_stop(self, trainer: Trainer) -> str | None:
        """A reason to end training before the kimg target, or None."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Top-level entries added to the resume checkpoint (names must not collide with the trainer's)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from the whole resume checkpoint (called before the trainer restores its own entries)."""


class StatSums:
    """Detached 0-d tensors summed per name between log ticks; `means()` is the only host sync (then resets)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.count += 1

    def means(self) -> dict[str, float]:
        if not self.count:
            return {}
        names = list(self.sums)
        values = torch.stack([self.sums[name] for name in names]).tolist()
        stats = {name: round(value / self.count, 5) for name, value in zip(names, values)}
        self.sums, self.count = {}, 0
        return stats
