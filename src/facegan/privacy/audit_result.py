"""What a privacy audit found: typed results, audit.json (`AuditResult.to_dict`/`save`) and `load_audit`."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from facegan.privacy.audit_figures import AuditFigure
from facegan.run import AUDIT_NAME  # the file name is the run layout's; results folders outside a run reuse it

__all__ = ["AUDIT_NAME", "AUDIT_FORMAT", "AttackResult", "MemorisationResult", "IdentityResult", "AuditResult", "load_audit"]

AUDIT_FORMAT = "facegan-privacy-audit"


@dataclass
class AttackResult:
    """One membership-inference attack: members = training faces, non-members = holdout faces."""

    attack: str
    """"discriminator" (LOGAN, white box) or "gan_leaks" (full black box)."""
    space: str
    """"logit" for the discriminator, else the feature space the distances were taken in."""
    auc: float
    """ROC AUC: 0.5 = the attacker guesses, 1 = perfect membership inference."""
    tpr_at_fpr: dict[str, float]
    """Share of training faces caught at each false-positive rate ("0.01", "0.001"), exact, not interpolated."""
    num_members: int
    num_nonmembers: int
    chance_sd: float
    """Standard deviation of the AUC of a blind attacker on sets of these sizes."""
    p_value: float
    """Chance that a blind attacker lands at least this far from 0.5 (two-sided)."""
    min_fpr: float
    """Smallest non-zero FPR these sets can show (1 / non-members); lower FPR levels read as FPR 0."""
    flagged: bool
    roc_fpr: list[float] = field(repr=False)
    roc_tpr: list[float] = field(repr=False)

    @property
    def label(self) -> str:
        return "LOGAN (discriminator)" if self.attack == "discriminator" else f"GAN-Leaks ({self.space})"


@dataclass
class MemorisationResult:
    """Distances from generated faces to the training set, read against holdout faces' distances."""

    space: str
    dcr_generated: dict[str, float]
    """Distance to the closest training face: min, p5, median, mean over generated faces."""
    dcr_holdout: dict[str, float]
    """The same for real holdout faces: what a face the model never saw scores."""
    nndr_generated_median: float
    """Median closest / second-closest distance ratio; near 0 = tied to one training face."""
    nndr_holdout_median: float
    near_copy_threshold: float
    """The 5th percentile of holdout DCRs."""
    near_copy_share: float
    """Share of generated faces closer to a training face than the threshold (about 0.05 expected)."""
    near_copy_share_holdout: float
    near_copy_expected: float
    near_copy_chance_limit: float
    """The share a generator that leaks nothing stays below 99% of the time, for these set sizes."""
    near_copy_p_value: float
    """Chance that a generator that leaks nothing shows at least this share (threshold noise included)."""
    flagged: bool
    closest_pairs: list[list[float]]
    """[generated index, training index, distance] for the closest pairs with distinct training faces."""


@dataclass
class IdentityResult:
    """Share of faces that dlib's recogniser calls the same person as some training face."""

    threshold: float
    generated_match_rate: float
    holdout_match_rate: float
    """The natural rate: real faces never trained on that still match a training face (lookalikes)."""
    excess: float
    """Generated rate minus holdout rate."""
    p_value: float
    """One-sided chance of at least this excess when generated faces are no closer to training people than real ones (Fisher's exact test)."""
    num_generated: int
    num_holdout: int
    flagged: bool
    labelled: bool
    """Whether the training set has identity labels (then the matched people are counted)."""
    num_train_identities: int = 0
    identities_matched_by_generated: int = 0
    identities_matched_by_holdout: int = 0
    top_identities: list[list[Any]] = field(default_factory=list)
    """[identity name or id, generated faces matching it] for the most matched training people."""


@dataclass
class AuditResult:
    """Everything one audit found; `to_dict` is audit.json, `save` writes it with its figures."""

    target: dict[str, Any]
    data: dict[str, Any]
    spaces: list[str]
    memorisation: dict[str, MemorisationResult]
    membership: list[AttackResult]
    identity: IdentityResult | None
    skipped: dict[str, str]
    """Parts that did not run, with the reason (e.g. no discriminator in an export)."""
    warnings: list[str]
    """One line per flagged check; empty = nothing flagged."""
    notes: list[str]
    """Caveats about the inputs (wrong training set, overlapping sets, small sets)."""
    readings: list[str]
    """One-sentence summaries, the verdict first."""
    protocol: dict[str, Any]
    figures: dict[str, AuditFigure] = field(default_factory=dict, repr=False)

    @property
    def flagged(self) -> bool:
        return bool(self.warnings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the figures are named by file, their pixels live in audit_*.png."""
        data = {name: value for name, value in asdict(self).items() if name != "figures"}
        data["format"] = AUDIT_FORMAT
        data["flagged"] = self.flagged
        data["figures"] = {name: {"file": f"audit_{name}.png", "title": figure.title, "caption": figure.caption} for name, figure in self.figures.items()}
        return data

    def save(self, folder: str | os.PathLike) -> Path:
        """Write audit_*.png, then audit.json (atomic files; the JSON last, so it never names a missing figure)."""
        from facegan.config import save_json
        from facegan.files import write_bytes_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, figure in self.figures.items():
            write_bytes_atomic(folder / f"audit_{name}.png", figure.png)
        save_json(self.to_dict(), folder / AUDIT_NAME)
        return folder / AUDIT_NAME


def load_audit(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The audit.json in `folder` as a mapping, or None when there is none (or it is not an audit)."""
    path = Path(folder) / AUDIT_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        return None
    return data if isinstance(data, dict) and data.get("format") == AUDIT_FORMAT else None


