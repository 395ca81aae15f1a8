"""The adversarial-robustness section of the report card: `facegan attack` results about a recogniser.

Registered on import by `facegan.report.card`. It reads the attack.json of FOLDER, of FOLDER/attacks/*
(where `facegan attack RUN ... --out RUN/attacks/NAME` puts them) and of FOLDER's other direct
sub-folders, and shows one table (every figure names the attack that produced it, the defence and
whether the attack was adaptive) and the success-rate-versus-budget curves of every attack that ran
at several budgets. The report sits above robustness: it reads its results, never the reverse.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facegan.report.sections import Figure, ReportSection, Table, register_section
from facegan.run import Run

MAX_RESULTS = 48  # attack folders shown; a folder of hundreds should not make the card crawl
_FIELDS = ("success_rate", "clean_accuracy", "robust_accuracy", "num_pairs")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _usable(record: dict[str, Any]) -> bool:
    """Whether an attack.json holds what the card shows (a hand-edited one is left out, and named, not the whole section).

    success_rate is null when no pair was right clean (nothing to attack): robust accuracy 0 is still a result.
    """
    rate = record.get("success_rate")
    return (all(_is_number(record.get(key)) for key in _FIELDS if key != "success_rate") and (rate is None or _is_number(rate))
            and all(isinstance(record.get(key), str) for key in ("attack", "norm", "mode")))


def _candidates(folder: Path) -> list[Path]:
    candidates = [folder]
    for parent in (Run(folder).attacks_dir, folder):
        try:
            candidates += sorted(entry for entry in parent.iterdir() if entry.is_dir() and not entry.name.startswith("."))
        except OSError:
            pass
    unique, seen = [], set()
    for candidate in candidates:
        if candidate not in seen:
            seen.add(candidate)
            unique.append(candidate)
    return unique


def scan_attacks(folder: str | Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[Path]]:
    """(results folder, attack record) for FOLDER, FOLDER/attacks/* and FOLDER's direct sub-folders holding facegan's
    attack.json, and the folders whose attack.json could not be read or lacks what the card shows."""
    from facegan.errors import FaceganError
    from facegan.robustness.evaluate import load_attack

    found, skipped = [], []
    for candidate in _candidates(Path(folder)):
        if not Run(candidate).attack_path.exists() or Run(candidate).attack_partial_path.exists():
            continue  # no attack here, or one still being written (or killed while writing): not a result
        try:
            record = load_attack(candidate)
        except (OSError, ValueError, FaceganError):
            record = None
        if isinstance(record, dict) and _usable(record):
            found.append((candidate, record))
        else:
            skipped.append(candidate)
        if len(found) >= MAX_RESULTS:
            break
    return found, skipped


def find_attacks(folder: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """The readable attack records of `scan_attacks`."""
    return scan_attacks(folder)[0]


def _budget(value: Any) -> str:
    return f"{value:.3g}" if _is_number(value) else "-"


def _percent(value: Any) -> str:
    return f"{value:.1%}" if _is_number(value) else "-"


def defence_label(record: dict[str, Any]) -> str:
    """'none', or the defence and how it was attacked: 'jpeg-q75 (BPDA)', 'purify (BPDA+EOT 4)', 'blur (non-adaptive)'."""
    defence = record.get("defence")
    if not defence or defence == "none":
        return "none"
    if not record.get("adaptive", True):
        return f"{defence} (non-adaptive)"
    eot = record.get("eot") or 1
    return f"{defence} (BPDA{f'+EOT {eot}' if isinstance(eot, int) and eot > 1 else ''})"


def attack_label(record: dict[str, Any]) -> str:
    """'PGD L-inf, 20 steps' — the attack that produced a figure."""
    norm = {"linf": "L-inf", "l2": "L2"}.get(str(record.get("norm")), str(record.get("norm")))
    steps = record.get("steps")
    name = str(record.get("attack")).upper() if record.get("attack") != "square" else "Square"
    if record.get("attack") == "fgsm":
        return f"{name} {norm}"
    unit = "queries" if record.get("attack") == "square" else "steps"
    return f"{name} {norm}, {steps} {unit}" if _is_number(steps) else f"{name} {norm}"


def _table(results: list[tuple[Path, dict[str, Any]]]) -> Table:
    rows = []
    for folder, record in results:
        real = record.get("success_rate_real_dlib")
        rows.append([
            folder.name, str(record.get("recogniser", "?")), defence_label(record), attack_label(record), str(record["mode"]),
            _budget(record.get("eps")), f"{int(record['num_pairs'])}", _percent(record["clean_accuracy"]), _percent(record["robust_accuracy"]),
            _percent(record["success_rate"]) if record["success_rate"] is not None else "n/a (none right clean)",
            _percent(real) if real is not None else "-",
            _budget(record.get("median_linf")), _budget(record.get("median_l2")),
        ])
    return Table(
        "Attacks on face verification",
        ["results", "recogniser", "defence", "attack", "mode", "budget (0-255)", "pairs", "clean acc.", "robust acc.", "success",
         "success on real dlib", "median L-inf", "median L2"],
        rows,
        "Dodging attacks same-person pairs (success: the score falls below the pair's fold threshold), impersonation different-person "
        "pairs (success: it rises above). Clean and robust accuracy are over the pairs of that kind: higher robust accuracy is better. "
        "Perturbations are measured on the saved 8-bit PNGs, on the 0-255 scale (with --minimal: medians of each pair's smallest "
        "successful quantised perturbation, found by binary search). "
        "'Success on real dlib' re-verifies the saved images with dlib's own C++ recogniser.",
    )


def _curves_png(results: list[tuple[Path, dict[str, Any]]]) -> bytes | None:
    curves = []
    for folder, record in results:
        budgets = [entry for entry in record.get("budgets") or [] if isinstance(entry, dict)
                   and _is_number(entry.get("eps")) and _is_number(entry.get("success_rate"))]
        if len(budgets) >= 2:
            budgets.sort(key=lambda entry: entry["eps"])
            label = f"{record.get('recogniser', '?')}, {defence_label(record)}: {attack_label(record)}, {record['mode']}"
            curves.append((label, [entry["eps"] for entry in budgets], [entry["success_rate"] for entry in budgets]))
    if not curves:
        return None
    from facegan.plots import figure_png, plt

    figure, axis = plt.subplots(figsize=(7.5, 4.2))
    for label, budgets, rates in curves:
        axis.plot(budgets, rates, marker="o", label=label)
    axis.set_xlabel("budget (0-255 scale)")
    axis.set_ylabel("attack success rate")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure_png(figure)


@register_section("robustness", order=75)
def robustness_section(run: Path) -> ReportSection | None:
    """Adversarial attacks on face verification (`facegan attack --out FOLDER`), when FOLDER, FOLDER/attacks/* or a sub-folder holds attack.json."""
    results, skipped = scan_attacks(Path(run))
    if not results and not skipped:
        return None
    readings = []
    if skipped:
        readings.append(f"Left out: the attack.json of {', '.join(str(path) for path in skipped[:6])}{' ...' if len(skipped) > 6 else ''} "
                        "is unreadable, not facegan's or lacks its figures (truncated or edited by hand?); run `facegan attack` there again.")
    for mode in ("dodging", "impersonation"):
        of_mode = [record for _, record in results if record["mode"] == mode and record["success_rate"] is not None]
        if of_mode:
            strongest = max(of_mode, key=lambda record: record["success_rate"])
            readings.append(
                f"Strongest {mode} attack: {attack_label(strongest)} at budget {_budget(strongest.get('eps'))} on {strongest.get('recogniser')} "
                f"(defence {defence_label(strongest)}) succeeds on {strongest['success_rate']:.1%} of the attacked pairs; robust accuracy "
                f"{strongest['robust_accuracy']:.1%} against {strongest['clean_accuracy']:.1%} clean."
            )
    for _, record in results:
        real = record.get("success_rate_real_dlib")
        if _is_number(real):
            readings.append(f"Transfer to dlib's own C++ recogniser ({attack_label(record)}, {record['mode']}): {real:.1%} on real dlib "
                            f"against {record['success_rate']:.1%} on facegan's port.")
            break
    if any(record.get("defence") not in (None, "none") and not record.get("adaptive", True) for _, record in results):
        readings.append("Non-adaptive figures attack the undefended recogniser only; a defence is judged by its adaptive (BPDA/EOT) rows.")
    if not results:
        return ReportSection("Adversarial robustness", readings)
    figures = []
    curves = _curves_png(results)
    if curves:
        figures.append(Figure("Success rate against budget", curves,
                              "Each line is one attack run at several budgets: lower lines mean a more robust recogniser or defence."))
    return ReportSection("Adversarial robustness", readings, figures=figures, tables=[_table(results)])
