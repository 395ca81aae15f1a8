"""`facegan edit` end to end on a tiny export: the strip, the JSON beside it, the printed table."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from facegan.cli.edit import parse_strengths
from facegan.cli.main import main
from tests.editing.helpers import edit_setup


def test_parse_strengths():
    assert parse_strengths("-3..3", 7) == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert parse_strengths("2", 3) == [0.0, 1.0, 2.0]
    assert parse_strengths("-0.3..0.3", 3)[1] == 0.0  # exactly zero, so that column is the original


def test_edit_writes_the_strip_and_measurements(tmp_path, monkeypatch, capsys):
    export, _ = edit_setup(tmp_path, monkeypatch)
    out = tmp_path / "strips" / "top.png"
    argv = ["edit", str(export), "--seeds", "0-2", "--attribute", "Top_Bright", "--strength", "-2..2", "--steps", "5",
            "--samples", "200", "--recogniser", "pixel", "--condition-on", "Left_Red", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "conditioned on Left_Red:" in printed and "unconditioned:" in printed and f"wrote {out}" in printed
    strip = np.asarray(Image.open(out))
    assert strip.shape == (3 * 18 + 2, 5 * 18 + 2, 3)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["format"] == "facegan-edit" and report["strengths"] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert report["faces"] == {"seeds": [0, 1, 2]}
    from facegan.provenance.inspect import read_provenance

    xmp = read_provenance(out)["xmp"]
    assert xmp["digital_source_type"] == "trainedAlgorithmicMedia" and xmp["action"] == "edit" and xmp["seeds"] == "0-2"
    assert report["provenance"]["model"] == xmp["model"] and xmp["model"].startswith("sha256:")
    rows = report["measurements"]["per_strength"]
    assert [row["strength"] for row in rows] == report["strengths"] and rows[2]["identity_drift"] == 0.0
    assert set(rows[0]["per_attribute_change"]) == {"Top_Bright", "Left_Red", "Noise"}
    # The middle column of the strip is the plain sample of each seed.
    from facegan.models.export import load_generator

    originals = load_generator(export).sample([0, 1, 2])
    np.testing.assert_array_equal(strip[2:18, 2 + 2 * 18 : 2 + 2 * 18 + 16], originals[0])
    # Run again: the cached classifier and directions give the same bytes.
    assert main(argv) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), strip)


def test_edit_from_projected_latents(tmp_path, monkeypatch, capsys):
    export, _ = edit_setup(tmp_path, monkeypatch)
    latents = np.random.default_rng(0).normal(size=(2, 16)).astype(np.float32)
    np.save(tmp_path / "latents.npy", latents)
    out = tmp_path / "mine.png"
    assert main(["edit", str(export), "--latents", str(tmp_path / "latents.npy"), "--attribute", "Left_Red", "--strength", "3",
                 "--steps", "2", "--samples", "200", "--recogniser", "none", "--no-progress", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["faces"]["count"] == 2 and "identity_drift" not in report["measurements"]["per_strength"][0]
    from facegan.provenance.inspect import read_provenance

    assert read_provenance(out)["xmp"]["digital_source_type"] == "trainedAlgorithmicMedia"  # G(z) of projected photos: generated pixels
