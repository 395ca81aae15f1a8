"""`facegan attack` end to end: a trained recogniser run, attacked from the command line, results in RUN/attacks/NAME."""
from __future__ import annotations

import json
import re

import pytest

from facegan.cli.main import main
from facegan.robustness import load_attack
from facegan.run import Run


def test_attack_cli_writes_the_results_folder_and_prints_a_summary(tiny_recogniser_run, identity_dataset, identity_pairs, capsys):
    out = Run(tiny_recogniser_run).attacks_dir / "pgd"
    argv = ["attack", str(tiny_recogniser_run), "--data", str(identity_dataset), "--pairs", str(identity_pairs), "--mode", "dodging",
            "--attack", "pgd", "--norm", "linf", "--eps", "2/255,24/255", "--steps", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    record = load_attack(out)
    assert record is not None and record["attack"] == "pgd" and record["eps"] == 24.0 and record["steps"] == 4
    assert [row["eps"] for row in record["budgets"]] == [2.0, 24.0]
    assert record["success_rate"] >= 0.9 and record["recogniser"].startswith("facegan:")
    assert re.search(rf"eps 24 +success {record['success_rate']:.1%}", printed) and "written:" in printed and "attack.json" in printed
    run = Run(out)
    assert run.attack_pairs_path.is_file() and run.attack_curve_path.is_file()
    assert len(list(run.attack_images_dir.glob("*.png"))) == record["num_attacked"]
    from facegan.provenance.inspect import read_provenance

    first = next(run.attack_images_dir.glob("*.png"))
    assert read_provenance(first)["xmp"]["digital_source_type"] == "compositeWithTrainedAlgorithmicMedia"
    assert record["provenance"]["xmp"] is True
    # The same command again replaces its own results (the folder is facegan's), with the same numbers.
    assert main(argv) == 0
    assert json.loads(run.attack_path.read_text())["budgets"] == record["budgets"]


def test_attack_cli_square_on_lbph_runs_without_gradients(identity_dataset, identity_pairs, tmp_path, capsys):
    pytest.importorskip("facegan.attacks.square")
    argv = ["attack", "lbph", "--data", str(identity_dataset), "--pairs", str(identity_pairs), "--attack", "square", "--eps", "16",
            "--steps", "20", "--max-pairs", "3", "--out", str(tmp_path / "square"), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    assert load_attack(tmp_path / "square")["num_pairs"] == 3


def test_attack_cli_with_defences_names_them_in_the_record(tiny_recogniser_run, identity_dataset, identity_pairs, tmp_path, capsys):
    from tests.inversion.helpers import make_tiny_export

    generator = make_tiny_export(tmp_path / "generator")
    common = ["attack", str(tiny_recogniser_run), "--data", str(identity_dataset), "--pairs", str(identity_pairs), "--eps", "8",
              "--steps", "3", "--max-pairs", "4", "--no-progress"]
    runs = {
        "jpeg": ["--defence", "jpeg", "--quality", "60"],
        "blur-static": ["--defence", "blur", "--kernel", "3", "--no-adaptive"],
        "purify": ["--defence", "purify", "--generator", str(generator), "--purify-steps", "2", "--eot", "2"],
    }
    for name, extra in runs.items():
        assert main([*common, *extra, "--out", str(tmp_path / name)]) == 0, capsys.readouterr().err
        capsys.readouterr()
    jpeg, blur, purify = (load_attack(tmp_path / name) for name in runs)
    assert (jpeg["defence"], jpeg["adaptive"], jpeg["eot"]) == ("jpeg-q60", True, 1) and jpeg["recogniser"].endswith("+jpeg-q60")
    assert (blur["defence"], blur["adaptive"]) == ("median-3", False)
    assert purify["defence"].startswith("purify") and purify["eot"] == 2 and purify["num_pairs"] == 4


def test_eot_averages_the_margin_over_draws_of_a_randomised_defence():
    import torch

    from facegan.robustness.evaluate import _objective

    class Noisy:
        """A stand-in recogniser whose every embedding draw differs (a randomised defence in front of it)."""

        eot = 3
        calls = 0

        def embed_pixels(self, x):
            Noisy.calls += 1
            return x.flatten(1) * Noisy.calls

        def score(self, first, second):
            return (first * second).sum(-1)

    x, targets = torch.ones(2, 1, 1, 1), torch.ones(2, 1)
    margin = _objective(Noisy(), targets, torch.tensor([0.5, 1.0]), "dodging")(x)
    assert Noisy.calls == 3
    assert torch.allclose(margin, torch.tensor([2.0 - 0.5, 2.0 - 1.0]))  # mean of draws 1, 2, 3 minus the threshold
    impersonation = _objective(Noisy(), targets, torch.tensor([0.5, 1.0]), "impersonation")(x)
    assert torch.allclose(impersonation, torch.tensor([0.5 - 5.0, 1.0 - 5.0]))  # draws 4, 5, 6: t - mean
