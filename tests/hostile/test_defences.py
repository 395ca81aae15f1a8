"""Hostile inputs to the defences of `facegan attack`: each is exit 2 and one `error:` line, nothing written."""
from __future__ import annotations

import pytest

from tests.hostile.helpers import refused
from tests.recognition.helpers import save_identity_dataset, write_pairs


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("data") / "ids")


@pytest.fixture(scope="module")
def pairs(identities):
    return write_pairs(identities.parent / "pairs.txt")


def _attack(identities, pairs, out, *extra):
    return ["attack", "pixel", "--data", str(identities), "--pairs", str(pairs), "--out", str(out), "--no-progress", "--steps", "1", *extra]


def test_attack_refuses_an_unknown_defence(identities, pairs, tmp_path, capsys):
    line = refused(_attack(identities, pairs, tmp_path / "out", "--defence", "gauss"), capsys)
    assert "unknown defence 'gauss'; choose one of none, jpeg, blur, purify" in line
    assert not (tmp_path / "out").exists()


def test_attack_refuses_purify_without_a_generator(identities, pairs, tmp_path, capsys):
    assert "the purify defence needs a generator; pass --generator RUN" in refused(
        _attack(identities, pairs, tmp_path / "out", "--defence", "purify"), capsys)
    assert not (tmp_path / "out").exists()


def test_attack_refuses_a_purify_generator_that_does_not_exist(identities, pairs, tmp_path, capsys):
    missing = tmp_path / "no-run"
    assert f"no such run or export: {missing}" in refused(
        _attack(identities, pairs, tmp_path / "out", "--defence", "purify", "--generator", str(missing)), capsys)


def test_attack_refuses_a_training_checkpoint_as_the_purify_generator(identities, pairs, tmp_path, capsys):
    checkpoint = tmp_path / "state.pt"
    checkpoint.write_bytes(b"not a model")
    assert "is a training checkpoint (resume state)" in refused(
        _attack(identities, pairs, tmp_path / "out", "--defence", "purify", "--generator", str(checkpoint)), capsys)


def test_attack_refuses_a_purify_generator_whose_export_is_corrupt(identities, pairs, tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    (export / "config.json").write_text("{not json")
    (export / "model.safetensors").write_bytes(b"\0" * 16)
    assert "is corrupt; export the model again" in refused(
        _attack(identities, pairs, tmp_path / "out", "--defence", "purify", "--generator", str(export)), capsys)


def test_attack_refuses_a_recogniser_export_as_the_purify_generator(identities, pairs, tmp_path, capsys):
    export = tmp_path / "recogniser" / "export"
    export.mkdir(parents=True)
    (export / "config.json").write_text('{"format": "facegan-recogniser", "format_version": 1}')
    (export / "model.safetensors").write_bytes(b"\0" * 16)
    assert "is not a facegan generator export (format 'facegan-recogniser')" in refused(
        _attack(identities, pairs, tmp_path / "out", "--defence", "purify", "--generator", str(export)), capsys)
