"""Report card: self-contained HTML, one section per available piece of evidence, extensible."""
import json
import re

import pytest

from facegan.errors import FaceganError
from facegan.report.card import build_report
from facegan.report.sections import Figure, ReportSection, register_section, registered_sections, unregister_section
from facegan.training.loop import train


@pytest.fixture(scope="module")
def tiny_run(faces16, tmp_path_factory):
    from tests.conftest import TINY_STABLE
    from facegan.training.config import resolve_config

    out = tmp_path_factory.mktemp("runs") / "run"
    train(resolve_config("default", {**TINY_STABLE, "data": str(faces16), "out": str(out), "kimg": 0.032}), progress=False)
    return out


def test_report_is_self_contained_with_core_sections(tiny_run, tmp_path):
    path = build_report(tiny_run, tmp_path / "report.html")
    page = path.read_text()
    for title in ("Run", "Training", "Samples", "Nearest training faces"):
        assert f"<h2>{title}</h2>" in page
    assert "Quality metrics" not in page  # no metrics.json yet: the section is left out, not faked
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(images) >= 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in page and "https://" not in page  # opens offline


def test_metrics_section_appears_with_metrics(tiny_run, tmp_path):
    (tiny_run / "metrics.json").write_text(json.dumps({"metrics": {"fd": 12.5, "precision": 0.4}, "protocol": {"extractor": "test", "num_generated": 10}}))
    try:
        page = build_report(tiny_run, tmp_path / "r.html").read_text()
    finally:
        (tiny_run / "metrics.json").unlink()
    assert "<h2>Quality metrics</h2>" in page and "12.5" in page and "lower is better" in page


def test_sections_are_extensible(tiny_run, tmp_path):
    @register_section("test-extra", order=999)
    def extra(run):
        return ReportSection("Extra evidence", ["A reading."], figures=[Figure("Dot", b"\x89PNG fake", "What it means; higher is better.")])

    try:
        page = build_report(tiny_run, tmp_path / "r.html").read_text()
        assert page.index("<h2>Extra evidence</h2>") > page.index("<h2>Samples</h2>")
    finally:
        unregister_section("test-extra")
    assert "test-extra" not in [name for _order, name, _builder in registered_sections()]


def test_a_section_name_is_registered_once():
    names = [name for _order, name, _builder in registered_sections()]
    assert {"overview", "training", "samples", "nearest", "metrics", "differential-privacy", "privacy"} <= set(names)
    assert len(names) == len(set(names))
    with pytest.raises(ValueError, match="'metrics' is already registered"):
        register_section("metrics", order=1)(lambda run: None)
    assert [name for _order, name, _builder in registered_sections()] == names  # the first one stays


def test_not_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(FaceganError, match="not a facegan run folder"):
        build_report(tmp_path)
