"""The audit on a real (tiny) trained run: every part including the discriminator attack, the CLI, the report."""
import argparse
import json

from facegan.provenance.record import Provenance
import numpy as np
import pytest
import torch
from torch import nn

from facegan.data.dataset import FaceDataset
from facegan.privacy.audit import audit_generator, discriminator_scores, load_run_discriminator, membership_attack
from facegan.privacy.audit_controls import builtin_control_sets
from facegan.training.loop import train


@pytest.fixture(scope="module")
def split_run(faces32, tmp_path_factory):
    """faces32 split 80/20 by image, a tiny model trained on the 80, and both sets saved."""
    from tests.conftest import TINY_STABLE
    from facegan.training.config import resolve_config

    root = tmp_path_factory.mktemp("audit")
    train_set, holdout_set = FaceDataset.load(faces32).split(0.2, seed=0)
    train_path, holdout_path = train_set.save(root / "train"), holdout_set.save(root / "holdout")
    run = root / "run"
    train(resolve_config("default", {**TINY_STABLE, "data": str(train_path), "out": str(run), "kimg": 0.064}), progress=False)
    return run, train_path, holdout_path


def cli(argv):
    """`facegan audit ...` as main() runs it (main.py registers the module; this mirrors it)."""
    from facegan.cli import audit

    parser = argparse.ArgumentParser(prog="facegan")
    audit.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_run_audit_has_every_part(split_run):
    run, train_path, holdout_path = split_run
    result = audit_generator(run, train_path, holdout_path, num_samples=64)
    path = result.save(run)
    data = json.loads(path.read_text())
    assert data["target"]["kind"] == "run" and data["target"]["num_generated"] == 64 and data["target"]["kimg"] == pytest.approx(0.064)
    assert data["data"]["train_is_training_set"] is True and data["data"]["holdout_in_train"] == 0
    assert data["data"]["train"]["num_images"] == 80 and data["data"]["holdout"]["num_images"] == 20
    attacks = {(item["attack"], item["space"]) for item in data["membership"]}
    assert attacks == {("discriminator", "logit"), ("gan_leaks", "pixel"), ("gan_leaks", "face")}
    assert data["skipped"] == {}
    for item in data["membership"]:
        assert 0.0 <= item["auc"] <= 1.0 and item["num_members"] == 80 and item["num_nonmembers"] == 20
        assert set(item["tpr_at_fpr"]) == {"0.01", "0.001"} and item["roc_fpr"][0] == 0.0 and item["roc_tpr"][-1] == 1.0
    assert set(data["memorisation"]) == {"pixel", "face"} and data["identity"]["num_generated"] == 64
    for entry in data["figures"].values():
        assert (run / entry["file"]).read_bytes().startswith(b"\x89PNG")
    assert "Verdict" in data["readings"][0]


def test_export_audit_skips_the_discriminator_with_a_note(split_run, tmp_path):
    run, train_path, holdout_path = split_run
    result = audit_generator(run / "export", train_path, holdout_path, num_samples=16, features=["pixel"])
    assert result.target["kind"] == "export" and [item.attack for item in result.membership] == ["gan_leaks"]
    assert "export holds only the generator" in result.skipped["discriminator"] and str(run) in result.skipped["discriminator"]
    assert any(reading.startswith("Not run: discriminator") for reading in result.readings)


def test_wrong_training_set_is_noted(split_run):
    run, train_path, holdout_path = split_run
    # Swap the roles: the "training set" given is not what the model saw.
    result = audit_generator(run, holdout_path, train_path, num_samples=16, features=["pixel"])
    assert result.data["train_is_training_set"] is False
    assert any("is not the set this model was trained on" in note for note in result.notes)


def test_missing_checkpoint_skips_the_discriminator_attack(split_run, tmp_path):
    import shutil

    run, train_path, holdout_path = split_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    result = audit_generator(copy, train_path, holdout_path, num_samples=16, features=["pixel"])
    assert "checkpoints/state.pt" in result.skipped["discriminator"]


def test_discriminator_scores_do_not_depend_on_the_batch(split_run):
    run, train_path, _ = split_run
    discriminator = load_run_discriminator(run)
    images = np.asarray(FaceDataset.load(train_path).images[:12])
    one_by_one = discriminator_scores(discriminator, images, batch_size=1)
    batched = discriminator_scores(discriminator, images, batch_size=8)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-5)
    assert np.ptp(one_by_one) > 0  # real scores, not a constant
    from facegan.models.stable import MinibatchStd

    assert [module.group_size for module in discriminator.modules() if isinstance(module, MinibatchStd)] == [4]  # restored


class MemorisingDiscriminator(nn.Module):
    """A discriminator that memorised its training set: logit = minus the distance to the closest training face."""

    def __init__(self, train_images: np.ndarray) -> None:
        super().__init__()
        from facegan.images import to_model

        self.register_buffer("train_faces", to_model(train_images).flatten(1))  # (T, C*H*W)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(images.flatten(1), self.train_faces).min(dim=1).values  # (N,)


def test_discriminator_attack_controls():
    """White-box positive control (a memorising D) is caught; a D that never saw the data is not."""
    from facegan.models import build_discriminator
    from facegan.models.config import ModelConfig

    controls = builtin_control_sets(size=32)
    members, nonmembers = np.asarray(controls.train.images), np.asarray(controls.holdout.images)
    memorising = MemorisingDiscriminator(members)
    caught = membership_attack("discriminator", "logit", discriminator_scores(memorising, members), discriminator_scores(memorising, nonmembers))
    assert caught.auc == pytest.approx(1.0) and caught.flagged

    torch.manual_seed(0)
    untrained = build_discriminator(ModelConfig(resolution=32, channels=1, d_channels=16, min_channels=8))
    blind = membership_attack("discriminator", "logit", discriminator_scores(untrained, members), discriminator_scores(untrained, nonmembers))
    assert 0.29 <= blind.auc <= 0.71 and not blind.flagged  # within 3 chance sd (0.070) of 0.5, see test_audit_controls

    result = audit_generator(controls.negative_control(), controls.train, controls.holdout, num_samples=30, features=["pixel"], discriminator=memorising)
    assert result.membership[0].attack == "discriminator" and result.membership[0].flagged and result.flagged


def test_cli_audits_a_run_and_the_report_shows_it(split_run, capsys):
    from facegan.report.card import build_report

    run, train_path, holdout_path = split_run
    assert cli(["audit", str(run), "--train", str(train_path), "--holdout", str(holdout_path), "--num", "32", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Verdict") and "MIA LOGAN (discriminator): AUC" in printed and f"{run / 'audit.json'}" in printed
    audit = json.loads((run / "audit.json").read_text())
    assert audit["target"]["num_generated"] == 32
    page = build_report(run, run / "report.html").read_text()
    section = page[page.index("<h2>Privacy audit</h2>"):]
    assert "Membership inference" in section and "LOGAN (discriminator)" in section and "Identity leakage" in section
    assert section.count("<img ") == 4 and "0.5 = attacker guesses" in section


def test_report_leaves_the_section_out_without_an_audit(tmp_path):
    from facegan.report.privacy_sections import privacy_audit_section

    assert privacy_audit_section(tmp_path) is None
    (tmp_path / "audit.json").write_text("{not json")
    assert privacy_audit_section(tmp_path) is None


def test_cli_samples_folder_and_exit_codes(tmp_path, capsys):
    from facegan.images import save_png

    controls = builtin_control_sets(size=32)
    train_path, holdout_path = controls.train.save(tmp_path / "train"), controls.holdout.save(tmp_path / "holdout")
    for name, generator in (("copies", controls.positive_control()), ("outsiders", controls.negative_control())):
        for seed, image in enumerate(generator.sample(range(len(generator.images)))):
            save_png(image, tmp_path / name / f"seed{seed:05d}.png", Provenance.off("test"))
    common = ["--train", str(train_path), "--holdout", str(holdout_path), "--features", "pixel", "--no-progress", "--fail-on-warning"]
    assert cli(["audit", "--samples", str(tmp_path / "copies"), *common]) == 1
    assert cli(["audit", "--samples", str(tmp_path / "outsiders"), *common]) == 0
    assert (tmp_path / "copies-audit" / "audit.json").is_file() and (tmp_path / "outsiders-audit" / "audit_roc.png").is_file()
    assert not list((tmp_path / "copies").glob("audit*"))  # nothing written among the samples
    assert cli(["audit", "--samples", str(tmp_path / "copies"), "--out", str(tmp_path / "elsewhere"), "--num", "10", *common]) == 1
    assert json.loads((tmp_path / "elsewhere" / "audit.json").read_text())["target"]["num_generated"] == 10


@pytest.mark.parametrize("argv, message", [
    (["audit", "--train", "t", "--holdout", "h"], "give either RUN_OR_EXPORT or --samples"),
    (["audit", "run", "--samples", "s", "--train", "t", "--holdout", "h"], "give either RUN_OR_EXPORT or --samples"),
    (["audit", "/nonexistent/run", "--train", "t", "--holdout", "h"], "no such run or export"),
    (["audit", "--samples", "s", "--train", "t", "--holdout", "h", "--num", "1"], "--num must be at least 2"),
])
def test_cli_user_errors_are_one_clear_line(argv, message, capsys):
    from facegan.cli.main import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert captured.err.endswith("\n") and "Traceback" not in captured.out


def test_report_survives_an_audit_from_another_version(tmp_path):
    from facegan.report.privacy_sections import privacy_audit_section

    (tmp_path / "audit.json").write_text(json.dumps({"format": "facegan-privacy-audit", "membership": [{"attack": "x"}]}))
    section = privacy_audit_section(tmp_path)
    assert section.title == "Privacy audit" and "run `facegan audit` again" in section.readings[0]
