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


def test_a_recogniser_runs_card_shows_the_recogniser_not_gan_sections(tmp_path):
    # Before, the GAN sections ran on it: a "Run" table of None presets and kimg, D/G losses of nan and
    # "The run's generator export could not be loaded".
    import re

    from facegan.run import Run

    run = Run(tmp_path / "recog")
    run.write_config({"kind": "recogniser", "data": ["data/a"], "out": str(run.path), "batch_size": 64, "mix": None,
                      "backbone": {"width": 32, "blocks": [1, 2, 2, 1], "embedding_size": 128}, "head": {"kind": "cosface", "scale": 64.0}})
    run.write_summary({"kind": "recogniser", "num_steps": 150, "seconds": 31.7, "img_per_s": 303.1, "interrupted": False})
    run.append_stats({"step": 150, "kimg": 9.6, "loss": 15.7, "accuracy": 0.08, "img_per_s": 344.3})
    run.export_dir.mkdir()
    (run.export_dir / "config.json").write_text(json.dumps({"format": "facegan-recogniser", "kind": "recogniser", "match": {
        "metric": "cosine", "threshold": 0.5744, "calibration": {"num_same": 60, "num_different": 60, "pairs": "held-out training images", "accuracy": 0.9}}}))
    (run.export_dir / "model.safetensors").write_bytes(b"not read by the card")
    html = build_report(run.path).read_text()
    assert re.findall(r"<h2[^>]*>(.*?)</h2>", html) == ["Recogniser"]
    assert "cosine distance below 0.5744" in html and "150 steps of batch 64" in html and "could not be loaded" not in html
