"""Pictures of the privacy audit: ROC curves, distance histograms, closest generated/training pairs.

Each builder returns PNG bytes plus a title and a one-sentence caption saying what the picture shows
and which way is better; `AuditResult.save` writes them beside audit.json and the report shows them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegan.images import make_grid, png_bytes, upscale_nearest
from facegan.provenance.record import COMPOSITE, Provenance
from facegan.plots import figure_png


@dataclass
class AuditFigure:
    """A picture of the audit with a one-sentence caption (what it shows and which way is better).

    Its own type, not the report's Figure: privacy sits below the report and must not import it;
    the report reads these back from audit_*.png.
    """

    title: str
    png: bytes
    caption: str


SPACE_NAMES = {"pixel": "pixel space", "face": "face space (dlib)"}


def _figure_bytes(figure) -> bytes:
    figure.tight_layout()
    return figure_png(figure)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or in CI
    import matplotlib.pyplot as plt

    return plt


def roc_figure(curves: list[tuple[str, list[float], list[float], float]]) -> AuditFigure:
    """curves: (label, fpr, tpr, auc) per attack -> linear and log-log ROC panels."""
    plt = _pyplot()
    figure, (linear, logarithmic) = plt.subplots(1, 2, figsize=(10, 4))
    for label, fpr, tpr, auc in curves:
        (line,) = linear.plot(fpr, tpr, linewidth=2, label=f"{label} (AUC {auc:.2f})")
        # Log axes cannot show FPR 0: start each curve at its first non-zero FPR.
        fpr_array, tpr_array = np.asarray(fpr), np.asarray(tpr)
        shown = fpr_array > 0
        if shown.any():
            logarithmic.plot(fpr_array[shown], np.maximum(tpr_array[shown], 1e-4), linewidth=2, color=line.get_color())
    for axes in (linear, logarithmic):
        axes.plot([1e-4, 1], [1e-4, 1], "k:", label="guessing")
        axes.set(xlabel="false positive rate (holdout faces called members)", ylabel="true positive rate (training faces caught)")
        axes.grid(alpha=0.3)
    linear.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), title="Membership inference ROC")
    linear.legend(fontsize=8, loc="lower right")
    logarithmic.set(xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1.05), title="Same, log scale (low false positives)")
    return AuditFigure(
        "Membership inference attacks",
        _figure_bytes(figure),
        "Each curve is an attacker deciding from the model whether a face was in the training set; the dotted diagonal is "
        "guessing, so curves hugging it are better (more private), and the log panel shows how many training faces are "
        "caught with almost no false accusations.",
    )


def distance_figure(spaces: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> AuditFigure:
    """spaces: name -> (generated DCR, holdout DCR, near-copy threshold) -> one histogram panel per space."""
    plt = _pyplot()
    figure, panels = plt.subplots(1, len(spaces), figsize=(5 * len(spaces), 3.6), squeeze=False)
    for axes, (space, (generated, holdout, threshold)) in zip(panels[0], spaces.items()):
        bins = np.linspace(0.0, max(generated.max(), holdout.max()) * 1.05 + 1e-9, 40)
        axes.hist(holdout, bins=bins, density=True, alpha=0.55, label=f"real holdout faces ({len(holdout)})")
        axes.hist(generated, bins=bins, density=True, alpha=0.55, label=f"generated faces ({len(generated)})")
        axes.axvline(threshold, color="k", linestyle="--", label="near-copy line (5% of holdout)")
        axes.set(xlabel=f"distance to the closest training face, {SPACE_NAMES[space]}", ylabel="density")
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    return AuditFigure(
        "Distance to the closest training face",
        _figure_bytes(figure),
        "How close each face comes to its nearest training face: generated faces (orange) bunched left of the real holdout "
        "faces (blue), especially left of the dashed line, mean copied training faces; overlapping distributions are better.",
    )


def closest_pairs_figure(space: str, generated: np.ndarray, train: np.ndarray, pairs: list[tuple[int, int, float]]) -> AuditFigure:
    """Top row: the generated faces closest to a training face; bottom row: that training face."""
    top = np.stack([generated[gen_index] for gen_index, _, _ in pairs])  # (K, H, W, C)
    bottom = np.stack([train[train_index] for _, train_index, _ in pairs])
    panel = make_grid(np.concatenate([top, bottom]), num_columns=len(pairs))
    distances = ", ".join(f"{distance:.3g}" for _, _, distance in pairs)
    return AuditFigure(
        f"Closest generated / training pairs, {SPACE_NAMES[space]}",
        png_bytes(upscale_nearest(panel, 220), Provenance(source_type=COMPOSITE, action="audit")),
        f"Top: the generated faces closest to a training face in {SPACE_NAMES[space]}, bottom: that training face "
        f"(distances {distances}); the same face twice means memorisation, visibly different people are the goal.",
    )
