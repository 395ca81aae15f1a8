"""The report card's face-verification section: table, ROC and example pairs from `recog eval` results."""
from __future__ import annotations

import json

import pytest

from facegan.recognition import verify
from facegan.report.card import build_report
from facegan.report.recognition_sections import verification_section
from tests.recognition.helpers import save_identity_dataset, write_pairs


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("recog")
    dataset = save_identity_dataset(root / "ids")
    pairs = write_pairs(root / "pairs.txt")
    for name in ("pixel", "lbph"):
        verify(name, dataset, pairs, out_dir=root / "results" / name)
    return root / "results"


def test_section_compares_every_recogniser_in_the_folder(results):
    section = verification_section(results)
    table = section.tables[0]
    assert [row[0] for row in table.rows] == ["lbph (lbph)", "pixel (pixel)"]  # sub-folders, sorted
    record = json.loads((results / "pixel" / "verification.json").read_text())
    assert table.rows[1][3] == f"{record['accuracy_mean']:.2%} ± {record['accuracy_std']:.2%}"
    assert table.rows[1][4] == f"{record['auc']:.4f}"
    titles = [figure.title for figure in section.figures]
    assert titles == ["ROC", "Example pairs: lbph (lbph)", "Example pairs: pixel (pixel)"]
    assert all(figure.png.startswith(b"\x89PNG") for figure in section.figures)
    assert "Best verification accuracy" in section.readings[0]


def test_single_results_folder_and_no_results(results, tmp_path):
    section = verification_section(results / "lbph")
    assert [row[0] for row in section.tables[0].rows] == ["lbph"]
    assert verification_section(tmp_path) is None
    (tmp_path / "verification.json").write_text('{"format": "something else"}')
    assert verification_section(tmp_path) is None  # not facegan's: no section


def test_report_card_of_a_results_folder_shows_the_section(results, tmp_path):
    out = build_report(results, tmp_path / "card.html")
    page = out.read_text()
    assert "Face verification" in page and "Verification (LFW protocol)" in page and page.count("<img") == 3
