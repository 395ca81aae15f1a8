"""Hostile inputs to `facegan attack`: each is exit 2 and one `error:` line, before any slow work, nothing lost."""
from __future__ import annotations

import json
import os

import pytest

from facegan.run import Run
from tests.hostile.helpers import refused
from tests.recognition.helpers import save_identity_dataset, write_pairs


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("data") / "ids")


@pytest.fixture(scope="module")
def pairs(identities):
    return write_pairs(identities.parent / "pairs.txt")


def _attack(identities, pairs, out, *extra, recogniser="pixel"):
    return ["attack", recogniser, "--data", str(identities), "--pairs", str(pairs), "--out", str(out), "--no-progress", *extra]


@pytest.mark.parametrize("eps, message", [("-1", "is negative"), ("256", "255"), ("nan", "--eps"), ("4/0", "--eps"), ("", "--eps"),
                                          ("2,-4", "is negative")])
def test_attack_refuses_an_impossible_budget(identities, pairs, tmp_path, capsys, eps, message):
    assert message in refused(_attack(identities, pairs, tmp_path / "out", "--eps", eps), capsys)
    assert not (tmp_path / "out").exists()


def test_attack_refuses_an_unknown_norm(identities, pairs, tmp_path, capsys):
    assert "unknown norm 'l3'; choose linf or l2" in refused(_attack(identities, pairs, tmp_path / "out", "--norm", "l3"), capsys)


def test_attack_refuses_an_unknown_attack(identities, pairs, tmp_path, capsys):
    assert "unknown attack 'deepfool'" in refused(_attack(identities, pairs, tmp_path / "out", "--attack", "deepfool"), capsys)


def test_attack_refuses_an_unknown_mode(identities, pairs, tmp_path, capsys):
    assert "unknown --mode 'stealth'" in refused(_attack(identities, pairs, tmp_path / "out", "--mode", "stealth"), capsys)


def test_attack_refuses_cw_in_linf(identities, pairs, tmp_path, capsys):
    assert "l2 norm only" in refused(_attack(identities, pairs, tmp_path / "out", "--attack", "cw", "--norm", "linf"), capsys)


def test_attack_refuses_a_gradient_attack_on_lbph(identities, pairs, tmp_path, capsys):
    line = refused(_attack(identities, pairs, tmp_path / "out", "--attack", "pgd", recogniser="lbph"), capsys)
    assert "not differentiable" in line and "--attack square" in line


def test_attack_refuses_zero_steps(identities, pairs, tmp_path, capsys):
    assert "--steps" in refused(_attack(identities, pairs, tmp_path / "out", "--steps", "0"), capsys)


def test_attack_refuses_eot_or_no_adaptive_without_a_defence(identities, pairs, tmp_path, capsys):
    assert "applies to a defence" in refused(_attack(identities, pairs, tmp_path / "out", "--eot", "4"), capsys)
    assert "applies to a defence" in refused(_attack(identities, pairs, tmp_path / "out", "--no-adaptive"), capsys)


def test_attack_refuses_a_missing_pairs_file(identities, tmp_path, capsys):
    line = refused(_attack(identities, tmp_path / "nope.txt", tmp_path / "out"), capsys)
    assert "pairs file not found" in line and "facegan data pairs" in line


def test_attack_refuses_out_that_is_a_file(identities, pairs, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert "is a file, not a folder" in refused(_attack(identities, pairs, tmp_path / "notes.txt"), capsys)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_attack_refuses_out_that_is_a_fifo_without_hanging(identities, pairs, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe")
    assert "FIFO" in refused(_attack(identities, pairs, tmp_path / "pipe"), capsys)


def test_attack_refuses_out_inside_the_dataset(identities, pairs, capsys):
    assert "inside the dataset" in refused(_attack(identities, pairs, identities / "attack"), capsys)
    assert not (identities / "attack").exists()


def test_attack_refuses_out_in_an_export(identities, pairs, tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    (export / "config.json").write_text("{}")
    (export / "model.safetensors").write_bytes(b"weights")
    assert "is an export folder" in refused(_attack(identities, pairs, export), capsys)
    assert "inside the export" in refused(_attack(identities, pairs, export / "attack"), capsys)
    assert sorted(path.name for path in export.iterdir()) == ["config.json", "model.safetensors"]


def test_attack_refuses_out_holding_a_pairs_csv_it_did_not_write(identities, pairs, tmp_path, capsys):
    (tmp_path / "pairs.csv").write_text("my,own,table\n")
    assert "did not write" in refused(_attack(identities, pairs, tmp_path), capsys)
    assert (tmp_path / "pairs.csv").read_text() == "my,own,table\n"


def test_attack_refuses_out_with_foreign_files_among_its_adversarial_images(identities, pairs, tmp_path, capsys):
    from facegan.cli.main import main

    assert main(_attack(identities, pairs, tmp_path, "--attack", "fgsm", "--eps", "4")) == 0
    capsys.readouterr()
    (Run(tmp_path).attack_images_dir / "holiday.jpg").write_bytes(b"photo")
    assert "holiday.jpg" in refused(_attack(identities, pairs, tmp_path, "--attack", "fgsm", "--eps", "4"), capsys)
    assert (Run(tmp_path).attack_images_dir / "holiday.jpg").read_bytes() == b"photo"


def test_attack_refuses_a_verification_folder(identities, pairs, tmp_path, capsys):
    from facegan.cli.main import main

    assert main(["recog", "eval", "pixel", "--data", str(identities), "--pairs", str(pairs), "--out", str(tmp_path), "--no-progress"]) == 0
    capsys.readouterr()
    before = (tmp_path / "pairs.csv").read_bytes()
    assert "holds verification results" in refused(_attack(identities, pairs, tmp_path), capsys)
    assert (tmp_path / "pairs.csv").read_bytes() == before


def test_attack_refuses_a_run_folder_as_out(identities, pairs, tmp_path, capsys):
    Run(tmp_path).config_path.write_text('{"kind": "recogniser"}')
    assert "is a run folder" in refused(_attack(identities, pairs, tmp_path), capsys)


def test_attack_refuses_an_unknown_defence(identities, pairs, tmp_path, capsys):
    assert "unknown defence 'tinfoil'; choose one of none, jpeg, blur, purify" in refused(_attack(identities, pairs, tmp_path / "out", "--defence", "tinfoil"), capsys)


def test_attack_refuses_defence_options_of_another_defence(identities, pairs, tmp_path, capsys):
    assert "--generator is the generator of --defence purify" in refused(
        _attack(identities, pairs, tmp_path / "out", "--defence", "jpeg", "--generator", str(tmp_path)), capsys)
    assert "--quality is an option of --defence jpeg" in refused(_attack(identities, pairs, tmp_path / "out", "--defence", "blur", "--quality", "50"), capsys)
    assert "--quality must be between 1 and 95" in refused(_attack(identities, pairs, tmp_path / "out", "--defence", "jpeg", "--quality", "0"), capsys)
    # The CLI's ranges are the defences' own: a value the CLI passes is never refused again in other words.
    assert "--quality must be between 1 and 95" in refused(_attack(identities, pairs, tmp_path / "out", "--defence", "jpeg", "--quality", "99"), capsys)
    assert "--kernel must be between 3 and 31" in refused(_attack(identities, pairs, tmp_path / "out", "--defence", "blur", "--kernel", "33"), capsys)


def test_square_gets_a_thousand_queries_unless_told(identities, pairs, tmp_path, capsys):
    from facegan.cli.main import main

    assert main(_attack(identities, pairs, tmp_path / "sq", "--attack", "square", "--max-pairs", "1")) == 0
    assert json.loads((tmp_path / "sq" / "attack.json").read_text())["steps"] == 1000


def test_attack_refuses_purify_without_a_generator(identities, pairs, tmp_path, capsys):
    assert "needs a generator" in refused(_attack(identities, pairs, tmp_path / "out", "--defence", "purify"), capsys)


@pytest.mark.parametrize("eps", ["1e300/1e-300", "1e-99999999/1"])
def test_attack_refuses_an_overflowing_budget_in_one_line(identities, pairs, tmp_path, capsys, eps):
    assert f"--eps '{eps}' is not a budget" in refused(_attack(identities, pairs, tmp_path / "out", "--eps", eps), capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("inside", ["checkpoints", "samples", "tensorboard", "attacks", "attacks/pgd/deeper", "export-best/x"])
def test_attack_refuses_out_inside_a_runs_own_folders(identities, pairs, tmp_path, capsys, inside):
    run = tmp_path / "run"
    run.mkdir()
    Run(run).config_path.write_text('{"kind": "recogniser"}')
    line = refused(_attack(identities, pairs, run / inside), capsys)
    assert f"lies inside the run {run}" in line and str(Run(run).attacks_dir / "NAME") in line
    assert not (run / inside).exists()


def test_attack_into_a_runs_attacks_folder_is_accepted(identities, pairs, tmp_path, capsys):
    from facegan.cli.main import main

    run = tmp_path / "run"
    run.mkdir()
    Run(run).config_path.write_text('{"kind": "recogniser"}')
    assert main(_attack(identities, pairs, Run(run).attacks_dir / "fgsm", "--attack", "fgsm", "--eps", "4", "--max-pairs", "2")) == 0
    assert Run(Run(run).attacks_dir / "fgsm").attack_path.is_file()


def test_attack_fgsm_records_the_one_step_it_takes(identities, pairs, tmp_path, capsys):
    import json

    from facegan.cli.main import main

    assert main(_attack(identities, pairs, tmp_path, "--attack", "fgsm", "--eps", "4", "--steps", "3", "--max-pairs", "2")) == 0
    assert "fgsm linf dodging, 1 step, seed" in capsys.readouterr().out
    assert json.loads(Run(tmp_path).attack_path.read_text())["steps"] == 1


def test_attack_refuses_a_foreign_adversarial_folder_in_plain_words(identities, pairs, tmp_path, capsys):
    (tmp_path / "adversarial").mkdir()
    assert "holds an adversarial/ folder that `facegan attack` did not write" in refused(_attack(identities, pairs, tmp_path), capsys)


class _Killed(BaseException):
    """Stands for kill -9: nothing in facegan catches it, no cleanup beyond `finally` runs."""


def _kill_after_first_png(monkeypatch):
    from facegan.robustness import evaluate

    real = evaluate.write_bytes_atomic

    def write(path, data):
        real(path, data)
        if path.suffix == ".png":
            raise _Killed

    monkeypatch.setattr(evaluate, "write_bytes_atomic", write)


def test_attack_killed_while_writing_leaves_a_folder_the_rerun_accepts(identities, pairs, tmp_path, capsys, monkeypatch):
    from facegan.cli.main import main
    from facegan.robustness.evaluate import load_attack

    fresh, earlier = tmp_path / "fresh", tmp_path / "earlier"
    command = ["--attack", "fgsm", "--eps", "4", "--max-pairs", "3"]
    assert main(_attack(identities, pairs, earlier, *command)) == 0
    with monkeypatch.context() as patch:
        _kill_after_first_png(patch)
        for out in (fresh, earlier):
            with pytest.raises(_Killed):
                main(_attack(identities, pairs, out, "--attack", "fgsm", "--eps", "8", "--max-pairs", "3"))
            # The gap: no attack.json vouches for the new PNG (over the earlier budget), and no reader takes it for a result.
            assert not Run(out).attack_path.exists() and Run(out).attack_partial_path.is_file() and load_attack(out) is None
    capsys.readouterr()
    for out in (fresh, earlier):
        assert main(_attack(identities, pairs, out, *command)) == 0
        assert not Run(out).attack_partial_path.exists() and load_attack(out)["eps"] == 4.0


def test_attack_refuses_a_folder_another_attack_is_using_before_any_work(identities, pairs, tmp_path, capsys, monkeypatch):
    from facegan.robustness import evaluate

    monkeypatch.setattr(evaluate, "_resolve_model", lambda *args: pytest.fail("the recogniser was loaded"))
    with Run(tmp_path).lock():
        assert "is in use by another facegan process" in refused(_attack(identities, pairs, tmp_path), capsys)
    assert not Run(tmp_path).attack_path.exists()
