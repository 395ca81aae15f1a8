"""The report card states the achieved (epsilon, delta) of a DP run, and says nothing of DP otherwise."""
import json
import re

from facegan.report.card import build_report
from facegan import train
from tests.privacy.helpers import private_config


def test_dp_run_report_shows_the_guarantee(faces16, tiny_config, tmp_path):
    run = tmp_path / "dp"
    train(private_config(tiny_config, faces16, run, kimg=0.032, noise_multiplier=1.0), progress=False)
    epsilon = json.loads((run / "export" / "config.json").read_text())["dp"]["epsilon"]
    page = build_report(run, tmp_path / "report.html").read_text()
    assert "<h2>Differential privacy</h2>" in page
    assert f"({epsilon:.3f}, " in page and "Opacus RDP" in page
    assert re.search(r"<h3>Epsilon over training</h3><img [^>]*src='data:image/png;base64,", page)


def test_non_private_run_has_no_dp_section(faces16, tiny_config, tmp_path):
    run = tmp_path / "plain"
    train(tiny_config(faces16, run, kimg=0.016), progress=False)
    assert "Differential privacy" not in build_report(run, tmp_path / "report.html").read_text()
