"""`--init-from`: warm-start G and D from a public run whose data share no image with the private data."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from facegan import train
from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.run import Run
from facegan.training.checkpoint import load_state
from facegan.training.distributed import DistributedContext
from facegan.training.init_from import initialise_from
from facegan.training.loop import _prepare_model_config, load_run_config, make_trainer


@pytest.fixture(scope="module")
def halves(faces16, tmp_path_factory):
    """The 100 faces split in two disjoint halves (public, private), and a public run trained on the first."""
    root = tmp_path_factory.mktemp("init")
    public, private = FaceDataset.load(faces16).split(0.5, seed=0)
    public.save(root / "public")
    private.save(root / "private")
    return root


@pytest.fixture(scope="module")
def public_run(halves, tiny_config_module):
    run = halves / "runs" / "public"
    train(tiny_config_module(halves / "public", run, kimg=0.064), progress=False)
    return run


@pytest.fixture(scope="module")
def tiny_config_module():
    from tests.conftest import TINY_STABLE
    from facegan.config import merge
    from facegan.training.config import resolve_config

    def make(data, out, preset="default", kimg=0.064, **updates):
        config = resolve_config(preset, {**TINY_STABLE, "data": str(data), "out": str(out), "kimg": kimg})
        return merge(config, updates) if updates else config

    return make


def test_initialised_networks_equal_the_source_checkpoint(halves, public_run, tiny_config_module):
    config = tiny_config_module(halves / "private", halves / "unused", init_from=str(public_run))
    private = FaceDataset.load(halves / "private")
    config = _prepare_model_config(config, private)
    trainer = make_trainer(config, private, torch.device("cpu"), DistributedContext())
    fresh = {name: value.clone() for name, value in trainer.D.state_dict().items()}
    record = initialise_from(trainer, public_run, private)
    from facegan.run import Run

    state = load_state(Run(public_run).state_path)
    for net, key in ((trainer.G, "G"), (trainer.D, "D"), (trainer.G_ema, "G_ema")):
        for name, value in net.state_dict().items():
            torch.testing.assert_close(value, state[key][name], rtol=0, atol=0)
    assert any(not torch.equal(fresh[name], value) for name, value in trainer.D.state_dict().items())
    assert record["overlap_images"] == 0 and record["dataset_images"] == 50 and record["source_kimg"] > 0


def test_run_records_init_from_in_config_run_info_and_export(halves, public_run, tiny_config_module):
    run = halves / "runs" / "warm"
    train(tiny_config_module(halves / "private", run, kimg=0.032, init_from=str(public_run)), progress=False)
    assert load_run_config(run).init_from == str(public_run.resolve())
    info = json.loads(Run(run).run_info_path.read_text())
    assert info["init_from"]["path"] == str(public_run.resolve())
    assert info["init_from"]["dataset_hash"] == FaceDataset.load(halves / "public").content_hash
    export = json.loads((run / "export" / "config.json").read_text())
    assert export["init_from"]["path"] == str(public_run.resolve())
    # A resume continues from its own checkpoint and keeps the record.
    train(tiny_config_module(halves / "private", run, kimg=0.064), resume=True, progress=False)
    assert json.loads((run / "export" / "config.json").read_text())["init_from"]["overlap_images"] == 0


def test_dp_fine_tuning_from_a_public_run(halves, tiny_config_module):
    public_dp = halves / "runs" / "public-dp"  # the dp preset's architecture (GroupNorm D), trained without privacy
    train(tiny_config_module(halves / "public", public_dp, preset="dp", kimg=0.032), progress=False)
    run = halves / "runs" / "dp"
    config = tiny_config_module(halves / "private", run, preset="dp", kimg=0.032, init_from=str(public_dp),
                                privacy={"epsilon": 10.0, "accountant": "rdp"})
    train(config, progress=False)
    export = json.loads((run / "export" / "config.json").read_text())
    assert export["init_from"]["path"] == str(public_dp.resolve()) and export["dp"]["epsilon"] <= 10.0


def test_overlapping_public_data_is_refused(halves, public_run, tiny_config_module, faces16):
    with pytest.raises(FaceganError, match="shares 50 images"):
        train(tiny_config_module(faces16, halves / "runs" / "leak", init_from=str(public_run)), progress=False)
    assert not (halves / "runs" / "leak" / "config.json").exists()


def test_architecture_mismatch_and_bad_sources_are_one_line(halves, public_run, tiny_config_module, tmp_path):
    wide = tiny_config_module(halves / "private", tmp_path / "wide", init_from=str(public_run),
                              model={"g_channels": 32, "d_channels": 32, "min_channels": 8})
    with pytest.raises(FaceganError, match="do not match this run's architecture"):
        train(wide, progress=False)
    with pytest.raises(FaceganError, match="not a facegan run"):
        train(tiny_config_module(halves / "private", tmp_path / "a", init_from=str(halves / "public")), progress=False)
    with pytest.raises(FaceganError, match="no such run"):
        train(tiny_config_module(halves / "private", tmp_path / "b", init_from=str(tmp_path / "missing")), progress=False)


def test_cli_init_from_end_to_end_and_errors(halves, public_run, tmp_path):
    base = [sys.executable, "-m", "facegan", "train", "--data", str(halves / "private"), "--kimg", "0.016", "--no-progress",
            "--set", "model.g_channels=16", "--set", "model.d_channels=16", "--set", "model.min_channels=8", "--batch-size", "8",
            "--set", "runtime.tensorboard=false"]
    done = subprocess.run([*base, "--out", str(tmp_path / "ok"), "--init-from", str(public_run)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    fifo = tmp_path / "fifo"
    import os

    os.mkfifo(fifo)
    for source in (str(fifo), str(public_run / "config.json")):
        failed = subprocess.run([*base, "--out", str(tmp_path / "bad"), "--init-from", source], capture_output=True, text=True, timeout=300)
        assert failed.returncode != 0 and failed.stderr.startswith("error:") and failed.stderr.count("\n") == 1, failed.stderr
