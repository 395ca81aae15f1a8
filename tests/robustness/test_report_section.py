"""The report card's adversarial-robustness section, on real `attack_pairs` results (tiny recogniser, CPU, seconds)."""
from __future__ import annotations

import json

from facegan.report.card import build_report, resolve_report_run
from facegan.report.robustness_sections import attack_label, defence_label, find_attacks, robustness_section
from facegan.robustness.evaluate import attack_pairs
from facegan.run import Run


def test_a_recogniser_runs_card_shows_its_attacks_with_budget_curves(tiny_recogniser_run, identity_dataset, identity_pairs, tmp_path):
    run = Run(tiny_recogniser_run)
    folder = run.attacks_dir / "pgd-dodging"
    record = attack_pairs(str(run.path), str(identity_dataset), str(identity_pairs), folder, mode="dodging", attack="pgd",
                          norm="linf", eps=[0, 8, 64], steps=3)
    found = find_attacks(run.path)
    assert folder in [path for path, _ in found]  # (the session's recogniser run may hold other tests' attacks too)
    section = robustness_section(run.path)
    table = section.tables[0]
    row = dict(zip(table.columns, table.rows[[path for path, _ in found].index(folder)]))
    assert row["attack"] == "PGD L-inf, 3 steps" and row["defence"] == "none" and row["mode"] == "dodging"
    assert row["success"] == f"{record['success_rate']:.1%}" and row["budget (0-255)"] == "64"
    assert "Success rate against budget" in [figure.title for figure in section.figures]
    assert section.figures[0].png.startswith(b"\x89PNG")
    html = build_report(run.path).read_text()
    assert "Adversarial robustness" in html and "PGD L-inf, 3 steps" in html


def test_an_attack_results_folder_alone_gets_a_card_and_a_hand_edited_record_is_left_out(tiny_recogniser_run, identity_dataset,
                                                                                        identity_pairs, tmp_path):
    out = tmp_path / "results"
    attack_pairs(str(tiny_recogniser_run), str(identity_dataset), str(identity_pairs), out / "fgsm", mode="impersonation", attack="fgsm",
                 norm="linf", eps=4, defence="jpeg")
    broken = out / "broken"
    broken.mkdir()
    (broken / "attack.json").write_text(json.dumps({"format": "facegan-attack", "success_rate": "lots"}))
    assert resolve_report_run(out).path == out
    found = find_attacks(out)
    assert [path.name for path, _ in found] == ["fgsm"]
    section = robustness_section(out)
    assert section.figures == []  # one budget: no curve
    row = dict(zip(section.tables[0].columns, section.tables[0].rows[0]))
    assert row["defence"].startswith("jpeg") and row["defence"].endswith("(BPDA)") and row["attack"] == "FGSM L-inf"


def test_labels_name_the_attack_and_how_a_defence_was_attacked():
    assert defence_label({"defence": None}) == "none"
    assert defence_label({"defence": "purify-gan", "adaptive": True, "eot": 4}) == "purify-gan (BPDA+EOT 4)"
    assert defence_label({"defence": "median-3", "adaptive": False}) == "median-3 (non-adaptive)"
    assert attack_label({"attack": "square", "norm": "linf", "steps": 500}) == "Square L-inf, 500 queries"
    assert attack_label({"attack": "cw", "norm": "l2", "steps": 30}) == "CW L2, 30 steps"


def test_unreadable_attack_records_are_named_and_a_record_with_nothing_attacked_is_shown(tiny_recogniser_run, identity_dataset,
                                                                                         identity_pairs, tmp_path):
    out = tmp_path / "results"
    record = attack_pairs(str(tiny_recogniser_run), str(identity_dataset), str(identity_pairs), out / "pgd", eps=4, steps=2)
    text = (out / "pgd" / "attack.json").read_text()
    for name, content in (("truncated", text[:300]), ("list", "[1, 2]")):
        (out / name).mkdir()
        (out / name / "attack.json").write_text(content)
    (out / "none").mkdir()
    (out / "none" / "attack.json").write_text(json.dumps({**record, "success_rate": None, "num_attacked": 0, "robust_accuracy": 0.0}))
    section = robustness_section(out)
    assert any("Left out" in reading and "truncated" in reading and "list" in reading for reading in section.readings)
    rows = {row[0]: dict(zip(section.tables[0].columns, row)) for row in section.tables[0].rows}
    assert set(rows) == {"pgd", "none"}
    assert rows["none"]["success"].startswith("n/a") and rows["none"]["robust acc."] == "0.0%"


def test_an_attack_still_being_written_is_neither_a_result_nor_called_broken(tiny_recogniser_run, identity_dataset, identity_pairs,
                                                                              tmp_path):
    out = tmp_path / "results"
    attack_pairs(str(tiny_recogniser_run), str(identity_dataset), str(identity_pairs), out / "done", eps=4, steps=2)
    (out / "writing").mkdir()
    (out / "writing" / "attack.json").write_text((out / "done" / "attack.json").read_text())
    Run(out / "writing").attack_partial_path.write_text("")
    section = robustness_section(out)
    assert [row[0] for row in section.tables[0].rows] == ["done"]
    assert not any("Left out" in reading for reading in section.readings)
