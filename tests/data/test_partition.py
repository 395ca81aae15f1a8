"""`facegan data partition`: client datasets with no shared image, by iid / identity / dirichlet, and refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from facegan.data.partition import assign_clients, load_partitions, partition_dataset
from facegan.errors import FaceganError


def people(num_identities: int = 12, per_identity: int = 5, seed: int = 0) -> FaceDataset:
    """Distinct random 4x4 images, identity-labelled, with one 0/1 attribute."""
    rng = np.random.default_rng(seed)
    identity = np.repeat(np.arange(num_identities), per_identity)
    images = rng.integers(0, 256, (len(identity), 4, 4, 3), dtype=np.uint8)
    attributes = (rng.random((len(identity), 1)) < 0.3).astype(np.int8)
    names = [f"person_{index:03d}" for index in range(num_identities)]
    return FaceDataset(images=images, manifest={"identity_names": names, "attribute_names": ["Smiling"]},
                       identity=identity, attributes=attributes)


@settings(max_examples=40, deadline=None)
@given(num_identities=st.integers(2, 15), per_identity=st.integers(1, 6), clients=st.integers(1, 6),
       by=st.sampled_from(["iid", "identity", "dirichlet"]), alpha=st.floats(0.01, 100), seed=st.integers(0, 2**31))
def test_every_image_on_exactly_one_client_and_every_client_non_empty(num_identities, per_identity, clients, by, alpha, seed):
    dataset = people(num_identities, per_identity, seed=seed % 7)
    if clients > (num_identities if by == "identity" else len(dataset)):
        with pytest.raises(FaceganError, match="--clients"):
            assign_clients(dataset, clients, by=by, alpha=alpha, seed=seed)
        return
    assignment = assign_clients(dataset, clients, by=by, alpha=alpha, seed=seed)
    assert assignment.shape == (len(dataset),) and set(assignment.tolist()) == set(range(clients))
    if by == "identity":
        for person in range(num_identities):
            assert len(set(assignment[dataset.identity == person].tolist())) == 1
    np.testing.assert_array_equal(assignment, assign_clients(dataset, clients, by=by, alpha=alpha, seed=seed))


def test_small_alpha_skews_and_large_alpha_evens_out():
    dataset = people(num_identities=40, per_identity=10)
    def spread(alpha):
        assignment = assign_clients(dataset, 4, by="dirichlet", alpha=alpha, seed=1)
        # mean over identities of the largest client share: 1 = each person on one client, 0.25 = even
        return np.mean([np.bincount(assignment[dataset.identity == p], minlength=4).max() / 10 for p in range(40)])
    assert spread(0.05) > 0.8 and spread(1000) < 0.5


def test_iid_shares_are_equal_within_one():
    sizes = np.bincount(assign_clients(people(10, 7), 4, seed=3))
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 70


def test_written_clients_union_is_the_source_and_load_partitions_reads_them(tmp_path):
    source = people()
    source.save(tmp_path / "src")
    manifest = partition_dataset(tmp_path / "src", tmp_path / "clients", 3, by="identity", seed=2)
    assert manifest["overlap"] == 0 and [entry["name"] for entry in manifest["clients"]] == ["client-000", "client-001", "client-002"]
    paths = load_partitions(tmp_path / "clients")
    parts = [FaceDataset.load(path) for path in paths]
    assert sum(len(part) for part in parts) == len(source)
    rows = {row.tobytes() for part in parts for row in part.images}
    assert rows == {row.tobytes() for row in source.images}
    names = [set(np.asarray(part.identity_names)[np.unique(part.identity)].tolist()) for part in parts]
    assert not (names[0] & names[1]) and not (names[1] & names[2]) and not (names[0] & names[2])
    saved = json.loads((tmp_path / "clients" / "partitions.json").read_text())
    assert saved["source_hash"] == FaceDataset.load(tmp_path / "src").content_hash
    assert [entry["size"] for entry in saved["clients"]] == [len(part) for part in parts]
    # Partitioning again into the same folder replaces the earlier clients whole.
    partition_dataset(tmp_path / "src", tmp_path / "clients", 2, seed=2)
    assert len(load_partitions(tmp_path / "clients")) == 2 and not (tmp_path / "clients" / "client-002").exists()


def test_cli_partition_end_to_end(tmp_path, capsys):
    people().save(tmp_path / "src")
    assert main(["data", "partition", str(tmp_path / "src"), "--clients", "2", "--by", "dirichlet", "--attribute", "Smiling",
                 "--alpha", "0.3", "--out", str(tmp_path / "out")]) == 0
    assert "overlap 0 images" in capsys.readouterr().out
    assert len(load_partitions(tmp_path / "out")) == 2


@pytest.mark.parametrize("extra, message", [
    (["--clients", "0"], "--clients must be"),
    (["--clients", "61"], "more than the dataset's 60 images"),
    (["--clients", "13", "--by", "identity"], "more than the dataset's 12 identities"),
    (["--clients", "2", "--by", "dirichlet", "--alpha", "nan"], "--alpha must be"),
    (["--clients", "2", "--by", "dirichlet", "--alpha", "-1"], "--alpha must be"),
    (["--clients", "2", "--by", "dirichlet", "--alpha", "inf"], "--alpha must be"),
    (["--clients", "2", "--by", "dirichlet", "--attribute", "Nope"], "is not in this dataset"),
    (["--clients", "2", "--attribute", "Smiling"], "--attribute applies to --by dirichlet only"),
    (["--clients", "2", "--seed", "-1"], "--seed must be"),
])
def test_bad_options_are_one_error_line(tmp_path, extra, message):
    people().save(tmp_path / "src")
    process = subprocess.run([sys.executable, "-m", "facegan", "data", "partition", str(tmp_path / "src"), *extra,
                              "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert process.returncode != 0 and process.stderr.count("\n") == 1 and process.stderr.startswith("error:")
    assert message in process.stderr and not (tmp_path / "out").exists()


def test_refuses_unlabelled_identity_split_foreign_out_and_the_source_itself(tmp_path):
    unlabelled = FaceDataset(images=np.zeros((6, 4, 4, 1), np.uint8))
    with pytest.raises(FaceganError, match="needs identity labels"):
        assign_clients(unlabelled, 2, by="identity")
    people().save(tmp_path / "src")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "me.jpg").write_bytes(b"precious")
    with pytest.raises(FaceganError, match="not a facegan partition folder"):
        partition_dataset(tmp_path / "src", foreign, 2)
    assert (foreign / "me.jpg").read_bytes() == b"precious"
    with pytest.raises(FaceganError, match="input dataset"):
        partition_dataset(tmp_path / "src", tmp_path / "src" / "inner", 2)
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    with pytest.raises(FaceganError, match="symbolic link"):
        partition_dataset(tmp_path / "src", tmp_path / "link", 2)
    with pytest.raises(FaceganError, match="not a partition folder"):
        load_partitions(tmp_path / "src")
