"""Figures people would rather look at than read (matplotlib, headless), as PNG bytes or files.

A core module below every package that draws (training writes loss_curves.png, the privacy audit its
figures, the report card its curves), so none of them has to import another to plot. No torch.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402

from facegan.files import write_bytes_atomic  # noqa: E402
from facegan.run import iter_stats  # noqa: E402


def read_stats(path: str | Path) -> list[dict]:
    """Lines of a stats.jsonl that carry their kimg (a half-written last line from a killed run, or a foreign one, is skipped)."""
    return [row for row in iter_stats(path) if isinstance(row.get("kimg"), (int, float)) and not isinstance(row.get("kimg"), bool)]


def plot_training_curves(stats_path: str | Path, out_path: str | Path) -> Path | None:
    """Loss curves (D and G) and discriminator logits against kimg, as a PNG."""
    rows = read_stats(stats_path)
    if not rows:
        return None
    kimg = [row["kimg"] for row in rows]
    figure, (loss_axes, logit_axes) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, label in (("loss_d", "discriminator"), ("loss_g", "generator")):
        loss_axes.plot(kimg, [row.get(name, float("nan")) for row in rows], label=label)
    loss_axes.set(xlabel="kimg (thousands of real images shown)", ylabel="loss", title="Losses")
    loss_axes.legend()
    loss_axes.grid(alpha=0.3)
    for name, label in (("logit_real", "D(real)"), ("logit_fake", "D(fake)")):
        logit_axes.plot(kimg, [row.get(name, float("nan")) for row in rows], label=label)
    logit_axes.set(xlabel="kimg", ylabel="mean logit", title="Discriminator outputs (gap = how easily D tells them apart)")
    logit_axes.title.set_fontsize(9)
    logit_axes.legend()
    logit_axes.grid(alpha=0.3)
    figure.tight_layout()
    write_bytes_atomic(out_path, figure_png(figure))
    return Path(out_path)


def figure_png(figure) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def line_plot_png(points: list[tuple[float, float]], xlabel: str, ylabel: str, title: str, reference: float | None = None,
                  reference_label: str = "target") -> bytes:
    """A small single-series line plot (e.g. a metric against kimg), optionally with a horizontal reference line."""
    figure, axes = plt.subplots(figsize=(5, 3.2))
    axes.plot(*zip(*points), marker=".")
    if reference is not None:
        axes.axhline(reference, color="gray", linestyle=":", label=reference_label)
        axes.legend()
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure_png(figure)
