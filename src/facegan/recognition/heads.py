"""Angular-margin classification heads for training face recognisers: ArcFace and CosFace.

Both follow InsightFace (deepinsight/insightface, recognition/arcface_torch/losses.py): the logits are
s * cos(theta_j) between the L2-normalised embedding and the L2-normalised class centre j, and only
the target class's logit carries a margin:

    ArcFace (additive angular margin, s=64, m=0.5):  s * cos(theta_y + m)
    CosFace (additive cosine margin,  s=64, m=0.4):  s * (cos(theta_y) - m)

ArcFace's cos(theta + m) stops decreasing once theta + m passes pi; InsightFace then uses
cos(theta) - m * sin(pi - m) (theta > pi - m, the "threshold" branch), or with `easy_margin` applies
the margin only where cos(theta) > 0. Labels of -1 get no margin (InsightFace's ignore label).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from facegan.errors import FaceganError

HEADS = ("arcface", "cosface")
DEFAULT_SCALE = 64.0
DEFAULT_MARGINS = {"arcface": 0.5, "cosface": 0.4}


def _target_cosines(cosine: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's target cosine (B,) and a (B, C) mask of the target entries (none for label -1).

    Gathers and masks rather than `nonzero` indexing, which would wait for the device every step.
    """
    safe = labels.clamp_min(0)
    target = cosine.gather(1, safe[:, None]).squeeze(1)
    columns = torch.arange(cosine.shape[1], device=cosine.device)
    is_target = (columns[None, :] == safe[:, None]) & (labels >= 0)[:, None]
    return target, is_target


def arcface_logits(cosine: torch.Tensor, labels: torch.Tensor, scale: float = DEFAULT_SCALE, margin: float = 0.5,
                   easy_margin: bool = False) -> torch.Tensor:
    """Cosines (B, C) in [-1, 1] and labels (B,) -> ArcFace logits (B, C); rows labelled -1 get no margin."""
    cosine = cosine.float()
    target, is_target = _target_cosines(cosine, labels)
    # Clamped away from +-1: d sqrt(1 - c^2)/dc is infinite there.
    sine = torch.sqrt((1.0 - target * target).clamp_min(1e-12))
    with_margin = target * math.cos(margin) - sine * math.sin(margin)  # cos(theta + m)
    if easy_margin:
        final = torch.where(target > 0, with_margin, target)
    else:
        # theta + m > pi: cos(theta + m) would increase again, so InsightFace falls back to a linear penalty.
        final = torch.where(target > math.cos(math.pi - margin), with_margin, target - math.sin(math.pi - margin) * margin)
    return torch.where(is_target, final[:, None], cosine) * scale


def cosface_logits(cosine: torch.Tensor, labels: torch.Tensor, scale: float = DEFAULT_SCALE, margin: float = 0.4) -> torch.Tensor:
    """Cosines (B, C) and labels (B,) -> CosFace logits (B, C): s * (cos - m) at the target, s * cos elsewhere."""
    cosine = cosine.float()
    target, is_target = _target_cosines(cosine, labels)
    return torch.where(is_target, (target - margin)[:, None], cosine) * scale


class MarginHead(nn.Module):
    """Class centres (C, D) and a margin: embeddings (B, D) and labels (B,) -> margin logits (B, C) for cross-entropy."""

    def __init__(self, embedding_size: int, num_classes: int, kind: Literal["arcface", "cosface"] = "arcface",
                 scale: float = DEFAULT_SCALE, margin: float | None = None, easy_margin: bool = False) -> None:
        super().__init__()
        if kind not in HEADS:
            raise FaceganError(f"unknown recogniser head {kind!r}; choose one of: {', '.join(HEADS)}")
        self.kind = kind
        self.scale = float(scale)
        self.margin = float(DEFAULT_MARGINS[kind] if margin is None else margin)
        self.easy_margin = easy_margin
        # InsightFace's partial-FC initialisation: normal(0, 0.01); only the direction matters.
        self.weight = nn.Parameter(torch.normal(0.0, 0.01, (num_classes, embedding_size)))

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine of each embedding to each class centre: (B, C), in fp32 (margins are fine differences of cosines)."""
        return F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float())).clamp(-1.0, 1.0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = self.cosine(embeddings)
        if self.kind == "arcface":
            return arcface_logits(cosine, labels, self.scale, self.margin, self.easy_margin)
        return cosface_logits(cosine, labels, self.scale, self.margin)
