"""`facegan report`: one self-contained HTML report card per run (images embedded, opens offline)."""
from __future__ import annotations

import base64
import html
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from facegan.errors import FaceganError
from facegan.provenance.record import COMPOSITE
from facegan.config import load_json_optional
from facegan.files import write_bytes_atomic
from facegan.images import make_grid, png_bytes, upscale_nearest
from facegan.plots import line_plot_png, plot_training_curves, read_stats
from facegan.report.sections import Figure, ReportSection, Table, register_section, registered_sections
from facegan.run import Run, is_export_folder


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# Run kinds whose card is their own part's sections (recognition_sections, repair_sections), not a GAN's.
NON_GAN_RUN_KINDS = ("recogniser", "repair")


def is_non_gan_run(run: Path) -> bool:
    """A run of another kind than a GAN's (`facegan recog train`, `facegan repair train`): GAN-only sections skip it."""
    config = load_json_optional(Run(run).config_path)
    return isinstance(config, dict) and config.get("kind") in NON_GAN_RUN_KINDS


# ---- core sections (GAN runs) --------------------------------------------------------------------
@register_section("overview", order=10)
def overview_section(run: Path) -> ReportSection | None:
    config = load_json_optional(Run(run).config_path)
    if config is None or config.get("kind") in NON_GAN_RUN_KINDS:
        return None
    summary = Run(run).read_summary() or {}
    environment = Run(run).read_run_info() or {}
    model = config.get("model", {})
    rows = [
        ["preset", config.get("preset")],
        ["architecture", f"{model.get('architecture')} ({model.get('resolution')}px, {model.get('channels')} channel(s), z {model.get('z_dim')})"],
        ["dataset", f"{config.get('data')} (hash {str(environment.get('dataset_hash', '?'))[:12]}, {environment.get('dataset_images', '?')} images)"],
        ["trained", f"{summary.get('kimg', '?')} of {config.get('kimg')} kimg, {summary.get('seconds', '?')} s, {summary.get('img_per_s', '?')} img/s"],
        ["loss", f"{config.get('loss', {}).get('kind')} (R1 gamma {config.get('loss', {}).get('r1_gamma')})"],
        ["augmentation", config.get("augment", {}).get("policy") or "none"],
        ["EMA", "on" if config.get("ema", {}).get("enabled") else "off"],
        ["device", f"{environment.get('device', '?')}, {environment.get('num_processes', 1)} process(es), bf16 {environment.get('bf16_autocast')}"],
        ["facegan / torch", f"{environment.get('facegan_version', '?')} / {environment.get('torch_version', '?')}"],
    ]
    privacy = config.get("privacy", {})
    if privacy.get("epsilon", 0) > 0 or privacy.get("noise_multiplier", 0) > 0:
        rows.append(["differential privacy", f"target epsilon {privacy.get('epsilon')}, delta {privacy.get('delta')}"])
    readings = [f"This run trained the {config.get('preset')} recipe for {summary.get('kimg', '?')} kimg on {environment.get('dataset_images', '?')} faces."]
    if summary.get("interrupted"):
        readings.append("The run was interrupted; resume it with `facegan train --out RUN --resume`.")
    return ReportSection("Run", readings, tables=[Table("Configuration", ["setting", "value"], rows)])


@register_section("training", order=20)
def training_section(run: Path) -> ReportSection | None:
    rows = read_stats(Run(run).stats_path)
    if not rows or is_non_gan_run(run):
        return None
    figures = []
    curves = Run(run).loss_curves_path
    if not curves.is_file():
        plot_training_curves(Run(run).stats_path, curves)
    figures.append(Figure("Training curves", curves.read_bytes(),
                          "Losses and mean discriminator logits over training; steady, bounded curves are healthy, a D loss near 0 with G loss climbing means D has won (collapse risk)."))
    metric_png = _metric_curves(rows)
    if metric_png is not None:
        figures.append(Figure("Quality during training", metric_png, "Fréchet distance measured during training; lower is better, and the best checkpoint is kept."))
    last = rows[-1]
    readings = [f"Final losses: D {last.get('loss_d', float('nan')):.3f}, G {last.get('loss_g', float('nan')):.3f} at {last['kimg']:.1f} kimg; throughput {last.get('img_per_s', 0):.0f} img/s."]
    return ReportSection("Training", readings, figures=figures)


def _metric_curves(rows: list[dict]) -> bytes | None:
    points = [(row["kimg"], row["fd"]) for row in rows if "fd" in row]
    return line_plot_png(points, "kimg", "FD (lower is better)", "Fréchet distance during training") if points else None


@register_section("samples", order=30)
def samples_section(run: Path) -> ReportSection | None:
    from facegan.models.export import load_generator

    if not Run(run).has_export() or is_non_gan_run(run):
        return None  # no checkpoint written yet, or no generator to sample
    try:
        generator = load_generator(run)
    except FaceganError as error:
        # An export that exists but cannot be used (corrupt, non-finite weights) is news, not a missing section.
        return ReportSection("Samples", [f"The run's generator export could not be loaded: {error}"])
    grid = make_grid(generator.sample(range(64)), num_columns=8)
    rows = [generator.interpolate(a, b, 8) for a, b in ((3, 7), (11, 19), (23, 42))]
    strip = make_grid(np.concatenate(rows), num_columns=8)
    return ReportSection(
        "Samples",
        [f"Images from the exported generator at seeds 0-63 ({generator.resolution}x{generator.resolution}); the same seed always gives the same face."],
        figures=[
            Figure("Sample grid (seeds 0-63)", png_bytes(upscale_nearest(grid, 512), generator.provenance("report", "0-63")), "Random faces from the generator; more variety and sharper faces are better."),
            Figure("Interpolations (seeds 3→7, 11→19, 23→42)", png_bytes(upscale_nearest(strip, 512), generator.provenance("report", "3,7,11,19,23,42")),
                   "Spherical interpolation in z; smooth, face-like transitions mean a well-behaved latent space, abrupt jumps suggest memorisation."),
        ],
    )


@register_section("nearest", order=40)
def nearest_neighbour_section(run: Path, num_queries: int = 8, num_neighbours: int = 4) -> ReportSection | None:
    from facegan.data.dataset import FaceDataset
    from facegan.models.export import load_generator

    config = load_json_optional(Run(run).config_path)
    if config is None:
        return None
    try:
        generator = load_generator(run)
        dataset = FaceDataset.load(config["data"])
    except (FaceganError, KeyError):
        return None
    fakes = generator.sample(range(num_queries))  # (Q, H, W, C)
    reals = np.asarray(dataset.images)  # (N, H, W, C)
    if reals.shape[1:] != fakes.shape[1:]:
        return None
    # Pixel-space L2 distance: crude but model-free, and exactly what a copy would minimise.
    distances = ((fakes.reshape(len(fakes), 1, -1).astype(np.float32) - reals.reshape(1, len(reals), -1).astype(np.float32)) ** 2).mean(-1)
    nearest = np.argsort(distances, axis=1)[:, :num_neighbours]  # (Q, K)
    tiles = []
    for query in range(num_queries):
        tiles.append(fakes[query])
        tiles.extend(reals[index] for index in nearest[query])
    panel = make_grid(np.stack(tiles), num_columns=num_neighbours + 1)
    rms = np.sqrt(distances[np.arange(num_queries), nearest[:, 0]]).mean()
    return ReportSection(
        "Nearest training faces",
        [f"For each generated face (left column) the {num_neighbours} closest training faces in pixel space; mean RMS distance to the closest is {rms:.1f} grey levels."],
        figures=[Figure("Generated vs nearest real", png_bytes(upscale_nearest(panel, 400),
                                                                     generator.provenance("report", f"0-{num_queries - 1}").with_source(COMPOSITE)),
                        "Left: generated; right: its closest training faces. Near-identical pairs would mean memorisation; similar-but-different faces are the goal.")],
    )


@register_section("metrics", order=50)
def metrics_section(run: Path) -> ReportSection | None:
    metrics = Run(run).read_metrics()
    if metrics is None:
        if os.path.lexists(Run(run).metrics_path):  # there but unreadable: say so rather than drop the section silently
            return ReportSection("Quality metrics", [
                f"{Run(run).metrics_path} is not a readable metrics file (not a JSON object); run `facegan eval` again to rewrite it."])
        return None
    values = metrics.get("metrics", {})
    protocol = metrics.get("protocol", {})
    better = {"fd": "lower", "kid_mean": "lower", "kid_std": "-", "precision": "higher", "recall": "higher", "density": "higher", "coverage": "higher",
              "face_rate": "higher (match real)", "face_rate_real": "reference"}
    rows = [[name, _format(value), better.get(name, "")] for name, value in values.items()]
    readings = []
    if "fd" in values:
        readings.append(f"Fréchet distance {values['fd']:.4g} in {protocol.get('extractor', protocol.get('features', '?'))} space (lower is better; 0 = identical statistics).")
    if "face_rate" in values and "face_rate_real" in values:
        readings.append(f"dlib finds a face in {values['face_rate']:.0%} of generated images vs {values['face_rate_real']:.0%} of real ones.")
    return ReportSection(
        "Quality metrics",
        readings,
        tables=[
            Table("Metrics", ["metric", "value", "better"], rows, "Computed by `facegan eval`; see the protocol for what was compared."),
            Table("Protocol", ["item", "value"], [[key, _format(value)] for key, value in protocol.items()]),
        ],
    )


# ---- rendering -----------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d1d1f;background:#fafafa}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
section{background:#fff;border:1px solid #e5e5e5;border-radius:8px;padding:0.5em 1.5em 1.2em;margin:1.2em 0}
.reading{font-size:1.05em} figure{margin:1em 0} figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
figcaption{color:#555;font-size:.92em;margin-top:.3em} table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .7em;text-align:left;font-size:.92em} th{background:#f3f3f3}
.meta{color:#777;font-size:.9em}
"""


def render_html(title: str, sections: list[ReportSection]) -> str:
    """Sections -> one HTML page with every image inlined as base64 (no external files)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>{REPORT_MARK}, generated {time.strftime('%Y-%m-%d %H:%M')}</p>"]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        parts += [f"<p class='reading'>{html.escape(reading)}</p>" for reading in section.readings]
        for table in section.tables:
            parts.append(f"<h3>{html.escape(table.title)}</h3><table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(_format(v))}</td>" for v in row) + "</tr>" for row in table.rows]
            parts.append("</table>")
            if table.caption:
                parts.append(f"<p class='meta'>{html.escape(table.caption)}</p>")
        for figure in section.figures:
            encoded = base64.b64encode(figure.png).decode()
            parts.append(f"<figure><h3>{html.escape(figure.title)}</h3><img alt='{html.escape(figure.title)}' src='data:image/png;base64,{encoded}'>"
                         f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _holds_verification(folder: Path) -> bool:
    """Whether the folder or one of its direct sub-folders holds a `facegan recog eval` verification.json or a `facegan attack` attack.json."""
    def holds(entry: Path) -> bool:
        return Run(entry).verification_path.is_file() or Run(entry).attack_path.is_file()

    try:
        return holds(folder) or any(holds(entry) for entry in folder.iterdir() if entry.is_dir())
    except OSError:
        return False


def resolve_report_run(path: str | Path) -> Run:
    """The run a report is about: a run folder, or the run an export folder (or its weights file) belongs to.

    A stand-alone export or any other folder is refused in one line: the report card reads a run's
    config, stats and results, which an export alone does not have.
    """
    given = Path(path)
    if not given.exists():
        raise FaceganError(f"no such run folder: {given}; pass the folder given to `facegan train --out`")
    run = Run(given)
    if run.is_run():
        return run
    if given.is_dir() and _holds_verification(given):
        return run  # a `facegan recog eval` / `facegan attack` results folder (or their parent): its card is their sections
    export_dir = given.parent if given.is_file() else given
    if is_export_folder(export_dir):
        containing = Run.containing(export_dir)
        if containing is not None:
            return containing
        raise FaceganError(f"{given} is a stand-alone export (not inside a run folder); the report card needs the run it was trained in")
    raise FaceganError(f"{given} is not a facegan run folder (no config.json); pass the folder given to `facegan train --out`")


REPORT_MARK = "<p class='meta'>facegan report card"
"""What every page `render_html` writes carries: an existing file without it is someone else's, never replaced."""


def check_report_target(out: str | Path) -> Path:
    """Refuse, before any work, a report path that is a folder, not .html, or an existing file facegan did not write."""
    out = Path(out)
    if out.is_dir():
        raise FaceganError(f"--out {out} is a folder; give the HTML file to write, e.g. {out / 'report.html'}")
    if out.suffix.lower() not in (".html", ".htm"):
        raise FaceganError(f"--out {out} does not end in .html; the report card is one HTML file")
    if out.is_file():
        try:
            with open(out, "rb") as handle:
                head = handle.read(4096).decode("utf-8", errors="replace")
        except OSError as error:
            raise FaceganError(f"cannot read --out {out} ({error.strerror}); choose another path") from None
        if REPORT_MARK not in head:
            raise FaceganError(f"--out {out} exists and is not a facegan report; choose another path (it is never overwritten)")
    return out


def build_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Build every section that has data for this run and write one self-contained HTML file.

    `run` may be a run folder or an export inside one (the report is then of that run); the page
    goes to `out`, else the run's report.html.
    """
    target = resolve_report_run(run)
    out_path = check_report_target(out) if out else target.report_path
    sections = []
    for _order, name, builder in registered_sections():
        try:
            section = builder(target.path)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as error:
            # A results file of another facegan version (or edited by hand) costs its section, not the whole report.
            section = ReportSection(name.replace("-", " ").capitalize(), [
                f"This section could not be built from the files in {target.path} ({type(error).__name__}: {error}); "
                "they may come from another facegan version: run the command that writes them again."])
        if section is not None:
            sections.append(section)
    name = Path(os.path.abspath(target.path)).name  # `facegan report .` is named after the folder, not ""
    write_bytes_atomic(out_path, render_html(f"facegan report: {name}", sections).encode())
    return out_path


# The privacy and verification sections register on import; imported last so the core sections above are registered first.
from facegan.report import federated_sections  # noqa: E402,F401
from facegan.report import privacy_sections  # noqa: E402,F401
from facegan.report import recognition_sections  # noqa: E402,F401
from facegan.report import repair_sections  # noqa: E402,F401
from facegan.report import robustness_sections  # noqa: E402,F401
