"""The privacy sections of the report card: the DP guarantee (from the export) and the audit (RUN/audit.json).

Registered on import by `facegan.report.card`. They live in the report package, which sits above
privacy: the report reads privacy's results (`privacy.audit_result`), privacy never imports the report.
The audit section appears once `facegan audit RUN` has run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from facegan.config import load_json_optional
from facegan.privacy.audit_result import load_audit
from facegan.report.sections import Figure, ReportSection, Table, register_section
from facegan.run import EXPORT_CONFIG_NAME, Run

FIGURE_ORDER = ("roc", "distances", "closest_pixel", "closest_face")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _verdict(flagged: bool) -> str:
    return "WARNING" if flagged else "ok"


def _membership_table(audit: dict[str, Any]) -> Table:
    rows = []
    for attack in audit["membership"]:
        label = "LOGAN (discriminator)" if attack["attack"] == "discriminator" else f"GAN-Leaks ({attack['space']})"
        rows.append([
            label, f"{attack['auc']:.3f}", f"±{attack['chance_sd']:.3f}", _percent(attack["tpr_at_fpr"].get("0.01")),
            _percent(attack["tpr_at_fpr"].get("0.001")), f"{attack['num_members']} / {attack['num_nonmembers']}", f"{attack['p_value']:.2g}",
            _verdict(attack["flagged"]),
        ])
    for part, reason in audit.get("skipped", {}).items():
        if part == "discriminator":
            rows.append(["LOGAN (discriminator)", "-", "-", "-", "-", "-", "-", f"not run: {reason}"])
    return Table(
        "Membership inference (members = training faces, non-members = holdout faces)",
        ["attack", "AUC", "chance spread", "TPR @ 1% FPR", "TPR @ 0.1% FPR", "members / non-members", "p", "verdict"],
        rows,
        "AUC 0.5 means the attacker guesses (better), 1.0 that it always knows; TPR at low FPR is the share of training faces "
        "caught with almost no false accusations (lower is better). With fewer than 1/FPR holdout faces, it is read at FPR 0.",
    )


def _memorisation_table(audit: dict[str, Any]) -> Table:
    rows = []
    memorisation = audit["memorisation"]
    for space in [name for name in audit.get("spaces", []) if name in memorisation] or sorted(memorisation):  # audit order, not JSON's
        memo = memorisation[space]
        rows.append([
            space, f"{memo['dcr_generated']['median']:.4g}", f"{memo['dcr_holdout']['median']:.4g}",
            f"{memo['nndr_generated_median']:.3f}", f"{memo['nndr_holdout_median']:.3f}",
            _percent(memo["near_copy_share"]), f"5% (≤{memo['near_copy_chance_limit']:.0%} by chance)", _verdict(memo["flagged"]),
        ])
    return Table(
        "Memorisation (distance to the closest training face)",
        ["space", "median DCR generated", "median DCR holdout", "median NNDR generated", "median NNDR holdout", "near copies", "expected", "verdict"],
        rows,
        "DCR: distance to the closest training face; NNDR: closest / second-closest distance. Generated values at or above the "
        "holdout's are better; much lower means faces copied from training. Near copies: generated faces closer than 95% of holdout faces.",
    )


def _identity_table(identity: dict[str, Any]) -> Table:
    rows = [
        ["generated faces matching a training face", _percent(identity["generated_match_rate"])],
        ["real holdout faces matching a training face (natural lookalike rate)", _percent(identity["holdout_match_rate"])],
        ["excess over the natural rate", f"{identity['excess']:+.1%} (p = {identity['p_value']:.2g})"],
    ]
    if identity.get("labelled"):
        rows.append(["training people matched by generated / holdout faces",
                     f"{identity['identities_matched_by_generated']} / {identity['identities_matched_by_holdout']} of {identity['num_train_identities']}"])
        rows += [[f"most matched person: {name}", f"{count} generated faces"] for name, count in identity.get("top_identities", [])]
    rows.append(["verdict", _verdict(identity["flagged"])])
    return Table(
        f"Identity leakage (dlib face recogniser, match = distance < {identity['threshold']})",
        ["measure", "value"],
        rows,
        "A generated rate at or below the holdout rate is better; well above it means the model reproduces the people it was trained on.",
    )


def _stale_note(run: Path, audit: dict[str, Any]) -> str | None:
    """A reading when the run's export has trained on since the audit was taken."""
    audited_kimg = audit.get("target", {}).get("kimg")
    current_kimg = (load_json_optional(Run(run).export_dir / EXPORT_CONFIG_NAME) or {}).get("kimg")
    if not isinstance(current_kimg, (int, float)):
        return None
    if audited_kimg is not None and current_kimg is not None and abs(float(current_kimg) - float(audited_kimg)) > 1e-9:
        return f"This audit is of the model at {audited_kimg:g} kimg, but the run's export is now at {current_kimg:g} kimg; run `facegan audit` again."
    return None


@register_section("privacy", order=60)
def privacy_audit_section(run: Path) -> ReportSection | None:
    """The privacy audit, when RUN/audit.json exists (written by `facegan audit RUN`)."""
    audit = load_audit(run)
    if audit is None:
        return None
    try:
        return _section(run, audit)
    except (KeyError, TypeError, ValueError, AttributeError):
        # An audit.json from another facegan version: say so rather than break the whole report.
        return ReportSection("Privacy audit", [f"{Run(run).audit_path} could not be read by this facegan version; run `facegan audit` again."])


def _section(run: Path, audit: dict[str, Any]) -> ReportSection:
    readings = list(audit.get("readings", []))
    stale = _stale_note(run, audit)
    if stale:
        readings.append(stale)
    readings += [f"Note: {note}" for note in audit.get("notes", [])]
    tables = [_membership_table(audit), _memorisation_table(audit)]
    if audit.get("identity"):
        tables.append(_identity_table(audit["identity"]))
    figures = []
    described = audit.get("figures", {})
    for name in sorted(described, key=lambda key: FIGURE_ORDER.index(key) if key in FIGURE_ORDER else len(FIGURE_ORDER)):
        entry = described[name]
        path = run / entry["file"]
        if path.is_file():
            figures.append(Figure(entry["title"], path.read_bytes(), entry["caption"]))
    return ReportSection("Privacy audit", readings, figures=figures, tables=tables)


@register_section("differential-privacy", order=55)
def differential_privacy_section(run: Path) -> ReportSection | None:
    """The (epsilon, delta) guarantee of a DP run, from its export, and epsilon spent over training."""
    from facegan.plots import line_plot_png, read_stats

    guarantee = (load_json_optional(Run(run).export_dir / EXPORT_CONFIG_NAME) or {}).get("dp")
    if not isinstance(guarantee, dict) or not guarantee:
        return None
    rows = [
        ["guarantee", f"({guarantee['epsilon']:.3f}, {guarantee['delta']:.3g})-differential privacy for every training face"],
        ["target epsilon", guarantee.get("target_epsilon") or "none (fixed noise multiplier)"],
        ["mechanism", guarantee["mechanism"]],
        ["noise multiplier", f"{guarantee['noise_multiplier']:.4g}"],
        ["per-sample clipping bound C", guarantee["max_grad_norm"]],
        ["sampling rate q (Poisson)", f"{guarantee['sample_rate']:.4g}"],
        ["discriminator steps", guarantee["steps"]],
        ["accountant", f"Opacus {guarantee['accountant'].upper()}"],
    ]
    readings = [
        f"The generator was trained with ({guarantee['epsilon']:.2f}, {guarantee['delta']:.2g})-differential privacy: "
        "smaller epsilon is stronger protection; below about 10 is commonly considered meaningful.",
        "Only the discriminator read real faces, through per-sample clipped and noised gradients; the generator is post-processing. "
        "The guarantee covers the exported weights, not the run folder's local diagnostics (real-image grid, real-image logits).",
    ]
    figures = []
    points = [(row["kimg"], row["epsilon"]) for row in read_stats(Run(run).stats_path) if "epsilon" in row]
    if points:
        png = line_plot_png(points, "kimg", "epsilon spent", "Privacy budget spent during training", reference=guarantee.get("target_epsilon"))
        figures.append(Figure("Epsilon over training", png,
                              "Privacy loss accumulated by the accountant as training proceeds; lower is better, and it never exceeds the target."))
    return ReportSection("Differential privacy", readings, figures=figures, tables=[Table("Guarantee", ["item", "value"], rows)])
