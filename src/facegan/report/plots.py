"""Figures people would rather look at than read (matplotlib, headless)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402

from facegan.images import write_bytes_atomic  # noqa: E402


def read_stats(path: str | Path) -> list[dict]:
    """Lines of a stats.jsonl (a half-written last line from a killed run is skipped)."""
    rows = []
    path = Path(path)
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_training_curves(stats_path: str | Path, out_path: str | Path) -> Path | None:
    """Loss curves (D and G) and discriminator logits against kimg, as a PNG."""
    import io

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
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_bytes_atomic(out_path, buffer.getvalue())
    return Path(out_path)
