"""Every image-writing command marks its images; `facegan provenance` reads them back; the one-writer rule."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from facegan.cli.main import main
from facegan.provenance.inspect import read_provenance
from facegan.provenance.record import TRAINED
from tests.provenance.certs import make_test_pki

SRC = Path(__file__).resolve().parents[2] / "src" / "facegan"


@pytest.fixture(scope="module")
def run(tmp_path_factory, faces16):
    from facegan.config import merge
    from facegan.training import train
    from facegan.training.config import resolve_config
    from tests.conftest import TINY_STABLE

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(merge(resolve_config("default", {**TINY_STABLE, "data": str(faces16), "out": str(out), "kimg": 0.032}), {}))
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def _export_hash(run: Path) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256((run / "export" / "model.safetensors").read_bytes()).hexdigest()


def test_sample_and_interpolate_mark_each_image_with_model_and_seed(run, tmp_path):
    assert main(["sample", str(run), "--seeds", "3-5", "--grid", str(tmp_path / "grid.jpg"), "--out-dir", str(tmp_path / "fakes"),
                 "--no-progress"]) == 0
    model = _export_hash(run)
    for seed in (3, 4, 5):
        xmp = read_provenance(tmp_path / "fakes" / f"seed{seed:05d}.png")["xmp"]
        assert xmp["digital_source_type"] == TRAINED and xmp["model"] == model and xmp["seed"] == str(seed) and xmp["action"] == "sample"
    grid = read_provenance(tmp_path / "grid.jpg")["xmp"]
    assert grid["seeds"] == "3-5" and grid["model"] == model and "seed" not in grid
    assert main(["interpolate", str(run), "--seeds", "3,7", "--steps", "3", "--out", str(tmp_path / "strip.webp")]) == 0
    strip = read_provenance(tmp_path / "strip.webp")["xmp"]
    assert strip["action"] == "interpolate" and strip["seeds"] == "3,7" and strip["model"] == model


def test_training_snapshots_and_report_figures_are_marked(run):
    from facegan.run import Run

    fakes = sorted(Run(run).samples_dir.glob("fakes*.png"))
    assert fakes
    assert read_provenance(fakes[-1])["xmp"]["digital_source_type"] == TRAINED
    reals = read_provenance(Run(run).reals_grid_path)["xmp"]
    assert reals["content"] == "reencoded" and "digital_source_type" not in reals
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    import base64
    import io

    from PIL import Image

    from facegan.provenance.record import parse_xmp

    figures = [base64.b64decode(data) for data in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]
    marked = [parse_xmp(Image.open(io.BytesIO(figure)).info["xmp"]) for figure in figures if b"xmpmeta" in figure]
    assert any(record.get("digital_source_type") == TRAINED and record.get("model") == _export_hash(run) for record in marked)


def test_c2pa_signing_from_the_command_line_and_require_c2pa(run, tmp_path, pki, capsys):
    assert main(["sample", str(run), "--seeds", "0-1", "--out-dir", str(tmp_path / "signed"), "--c2pa-cert", str(pki.chain),
                 "--c2pa-key", str(pki.key)]) == 0
    assert main(["sample", str(run), "--seeds", "0", "--out-dir", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    assert main(["provenance", str(tmp_path / "signed"), "--trust", str(pki.root), "--require-c2pa"]) == 0
    out = capsys.readouterr().out
    assert out.count("c2pa: Trusted") == 2 and "seed00001.png: xmp: trainedAlgorithmicMedia" in out
    assert main(["provenance", str(tmp_path / "signed"), str(tmp_path / "plain"), "--require-c2pa", "--json"]) == 1
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [record["c2pa"] is None for record in records] == [False, False, True]
    assert captured.err.strip().startswith("error: 1 of 3 images lack valid C2PA credentials")
    # The same through a settings file.
    (tmp_path / "c2pa.toml").write_text(f'cert = "{pki.chain}"\nkey = "{pki.key}"\n')
    assert main(["interpolate", str(run), "--seeds", "1,2", "--steps", "2", "--out", str(tmp_path / "s.png"),
                 "--c2pa-config", str(tmp_path / "c2pa.toml")]) == 0
    assert read_provenance(tmp_path / "s.png", pki.root.read_text())["c2pa"]["state"] == "Trusted"


def test_no_provenance_writes_plain_images_and_says_so(run, tmp_path, capsys):
    assert main(["sample", str(run), "--seeds", "0", "--out-dir", str(tmp_path / "raw"), "--no-provenance"]) == 0
    assert "--no-provenance" in capsys.readouterr().err
    assert read_provenance(tmp_path / "raw" / "seed00000.png")["xmp"] is None
    assert main(["provenance", str(tmp_path / "raw" / "seed00000.png")]) == 0
    assert "xmp: none; c2pa: none" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--grid", "g.bmp"], "cannot carry provenance"),
    (["--grid", "g.png", "--c2pa-cert", "chain.pem"], "needs both --c2pa-cert"),
    (["--grid", "g.png", "--no-provenance", "--c2pa-config", "x.toml"], "contradict"),
    (["--grid", "g.png", "--c2pa-cert", "SELF", "--c2pa-key", "SELFKEY"], "self-signed"),
    (["--grid", "g.png", "--c2pa-cert", "/no/such.pem", "--c2pa-key", "/no/key.pem"], "--c2pa-cert"),
])
def test_bad_provenance_options_are_one_line_before_any_work(run, tmp_path, pki, extra, message):
    extra = [str(pki.self_signed_chain) if item == "SELF" else str(pki.self_signed_key) if item == "SELFKEY" else item for item in extra]
    process = subprocess.run([sys.executable, "-m", "facegan", "sample", str(run), "--seeds", "0", *extra], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], process.stderr
    assert not list(tmp_path.glob("g.*"))


def test_provenance_command_refuses_bad_input(tmp_path):
    (tmp_path / "text.png").write_text("hello")
    for argv, message in ((["provenance", str(tmp_path / "missing.png")], "does not exist"),
                          (["provenance", str(tmp_path / "text.png")], "not a readable image"),
                          (["provenance", str(tmp_path)], "not a readable image"),
                          (["provenance", str(tmp_path / "text.png"), "--trust", str(tmp_path / "text.png")], "no PEM certificate")):
        process = subprocess.run([sys.executable, "-m", "facegan", *argv], capture_output=True, text=True, timeout=120)
        lines = process.stderr.strip().splitlines()
        assert process.returncode == 2 and len(lines) == 1 and message in lines[0], (argv, process.stderr)


# Encoders that write image bytes outside the one writer, allowed because their bytes never leave memory as a file:
# lossy round trips that simulate damage or a defence, and matplotlib charts (plots, not images of faces).
IN_MEMORY_ENCODERS = {
    "repair/degrade.py": "JPEG damage simulated in memory",
    "robustness/defences.py": "the JPEG defence, applied in memory",
    "plots.py": "matplotlib charts",
    "fingerprint/distortions.py": "JPEG and other transformations the fingerprint must survive, in memory",
    "privacy/audit_figures.py": "matplotlib charts (the face panel goes through png_bytes)",
    "robustness/evaluate.py": "the attack-curve chart (the images go through png_bytes)",
}


def test_no_image_is_written_by_another_path():
    """Only facegan.images encodes images for files: no Pillow `.save(`, cv2.imwrite or savefig elsewhere but the allowed ones."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative == "images.py":
            continue
        text = path.read_text()
        for pattern in (r"\.save\([^)]*format=", r"imwrite\(", r"savefig\(", r"\bImage\.[a-z_]+\([^)]*\)\.save\(", r"(?<!np)\.save\(buffer"):
            if re.search(pattern, text) and relative not in IN_MEMORY_ENCODERS:
                offenders.append(f"{relative}: {pattern}")
    assert not offenders, offenders
    for relative in IN_MEMORY_ENCODERS:
        assert (SRC / relative).is_file(), relative  # the allow-list names real files
