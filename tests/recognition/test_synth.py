"""`synthesize_identities`: new people, consistent in identity, never a training person (the planted case)."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.faces.recognisers import register_recogniser, unregister_recogniser
from facegan.recognition.synth import nuisance_seeds_for, synthesize_identities, training_recogniser
from tests.recognition.synth_fakes import (
    PIXEL_RECOGNISER,
    FakeIdentityGenerator,
    PixelRecogniser,
    PlainGenerator,
    training_faces,
)


@pytest.fixture
def pixel():
    register_recogniser(PIXEL_RECOGNISER, lambda **options: PixelRecogniser())
    yield PIXEL_RECOGNISER
    unregister_recogniser(PIXEL_RECOGNISER)


def test_writes_identity_labelled_dataset_with_names_seeds_and_figures(pixel, tmp_path):
    train = training_faces()
    dataset = synthesize_identities(FakeIdentityGenerator(), 4, 3, seed=10, recogniser=pixel, reference=train)
    assert dataset.images.shape == (12, 32, 32, 3) and dataset.images.dtype == np.uint8
    assert dataset.identity.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert dataset.identity_names == ["s00000", "s00001", "s00002", "s00003"]
    synth = dataset.manifest["synth"]
    assert [record["identity_seed"] for record in synth["identities"]] == [10, 11, 12, 13]
    assert "nuisance_seeds_for(identity_seed, K)" in synth["nuisance_seeds"]
    # The recorded identity seed and the rule give the images back.
    assert np.array_equal(dataset.images[3:6], FakeIdentityGenerator().sample_identity(11, nuisance_seeds_for(11, 3)))
    assert synth["num_rejected"] == 0 and synth["rejected"] == []
    figures = synth["consistency"]
    # The fake's identities are clearly apart in pixel space and its nuisance small: every pair right.
    assert figures["same_identity_within_threshold"] == 1.0
    assert figures["different_identity_beyond_threshold"] == 1.0
    assert 0.0 < figures["intra_identity_distance_median"] < 0.45 < figures["inter_identity_distance_median"]
    assert figures["num_same_identity_pairs"] == 4 * 3 and figures["num_different_identity_pairs"] == 66 - 12
    assert all(record["closest_training_distance"] >= 0.45 for record in synth["identities"])
    assert synth["recogniser"] == {"name": pixel, "version": "1", "metric": "cosine", "threshold": 0.45,
                                   "training_recogniser": None, "independent": True}
    assert synth["reference"]["content_hash"] == train.content_hash and synth["reference"]["num_images"] == 18
    # The usual FaceDataset format: saved and loaded back with its labels.
    loaded = FaceDataset.load(dataset.save(tmp_path / "synth"))
    assert np.array_equal(loaded.images, dataset.images) and loaded.identity.tolist() == dataset.identity.tolist()
    assert loaded.identity_names == dataset.identity_names and loaded.manifest["source_kind"] == "synthetic"


def test_images_depend_only_on_seeds(pixel):
    first = synthesize_identities(FakeIdentityGenerator(), 3, 4, seed=5, recogniser=pixel)
    second = synthesize_identities(FakeIdentityGenerator(), 3, 4, seed=5, recogniser=pixel)
    other = synthesize_identities(FakeIdentityGenerator(), 3, 4, seed=6, recogniser=pixel)
    assert np.array_equal(first.images, second.images)
    # Identity seed 6 is the second identity of seed=5 and the first of seed=6: the same person, same images.
    assert np.array_equal(first.images[4:8], other.images[0:4])


def test_nuisance_seeds_are_prefix_stable_distinct_and_in_range():
    assert nuisance_seeds_for(3, 5)[:2] == nuisance_seeds_for(3, 2)
    assert len(set(nuisance_seeds_for(3, 50) + nuisance_seeds_for(4, 50))) == 100
    assert all(0 <= seed < 2**63 for seed in nuisance_seeds_for(123, 100))


def test_planted_training_face_is_rejected_and_regenerated_from_the_next_seed(pixel):
    train = training_faces()
    planted = FakeIdentityGenerator(planted={0: train.images[4]})  # identity seed 0 "is" training person t001
    dataset = synthesize_identities(planted, 3, 3, seed=0, recogniser=pixel, reference=train)
    synth = dataset.manifest["synth"]
    assert synth["num_rejected"] == 1
    assert synth["rejected"][0]["identity_seed"] == 0 and synth["rejected"][0]["slot"] == "s00000"
    assert synth["rejected"][0]["distance"] < 0.45
    assert [record["identity_seed"] for record in synth["identities"]] == [1, 2, 3]
    assert synth["identities"][0]["attempts"] == 2
    # No image of the planted face made it into the dataset.
    planted_images = planted.sample_identity(0, nuisance_seeds_for(0, 3))
    assert not any(np.array_equal(image, copy) for image in dataset.images for copy in planted_images)
    # Without the reference nothing is checked, so the copy goes through: the reference is what rejects it.
    unchecked = synthesize_identities(FakeIdentityGenerator(planted={0: train.images[4]}), 3, 3, seed=0, recogniser=pixel)
    assert unchecked.manifest["synth"]["identities"][0]["identity_seed"] == 0
    assert any("not checked" in note for note in unchecked.manifest["synth"]["notes"])


def test_planted_rejection_names_the_closest_training_identity(pixel):
    train = training_faces()
    planted = FakeIdentityGenerator(planted={0: train.images[4]})
    dataset = synthesize_identities(planted, 2, 2, seed=0, recogniser=pixel, reference=train, min_distance=0.0)
    record = dataset.manifest["synth"]["identities"][0]  # min_distance 0: accepted, but its closeness is recorded
    assert record["identity_seed"] == 0 and record["closest_training_identity"] == "t001"
    assert record["closest_training_image"] in (3, 4, 5) and record["closest_training_distance"] < 0.45


def test_min_distance_above_every_distance_rejects_until_attempts_run_out(pixel):
    train = training_faces()
    with pytest.raises(FaceganError, match=r"identity s00000: all 3 candidates \(identity seeds 0-2\) came closer than 2"):
        synthesize_identities(FakeIdentityGenerator(), 2, 2, recogniser=pixel, reference=train, min_distance=2.0, max_attempts=3)


def test_same_recogniser_as_training_is_reported_not_independent(pixel):
    generator = FakeIdentityGenerator(metadata={"identity": {"recogniser": pixel}})
    assert training_recogniser(generator) == pixel
    synth = synthesize_identities(generator, 2, 2, recogniser=pixel).manifest["synth"]
    assert synth["recogniser"]["independent"] is False and synth["recogniser"]["training_recogniser"] == pixel
    assert any("may flatter" in note for note in synth["notes"])


def test_dlib_alias_and_recorded_version_count_as_the_same_recogniser():
    from facegan.recognition.synth import _canonical

    # idgan's export records "dlib-resnet v1" (name and version); verify registers "dlib" as an alias.
    assert _canonical("dlib") == _canonical("dlib-resnet") == _canonical("dlib-resnet v1") == _canonical({"name": "dlib"}) == "dlib-resnet"
    assert _canonical("lbph") == "lbph" and _canonical(None) is None and _canonical("") is None


def test_training_recogniser_recorded_with_its_version_is_not_independent(pixel):
    generator = FakeIdentityGenerator(metadata={"identity": {"mode": "split-latent", "recogniser": f"{pixel} v1"}})
    synth = synthesize_identities(generator, 2, 2, recogniser=pixel).manifest["synth"]
    assert synth["recogniser"]["independent"] is False and synth["recogniser"]["training_recogniser"] == f"{pixel} v1"


def test_plain_generator_is_refused_in_one_line(pixel):
    with pytest.raises(FaceganError, match="is not identity-aware; train it with --condition identity"):
        synthesize_identities(PlainGenerator(), 2, 2, recogniser=pixel)


@pytest.mark.parametrize("identities, per_identity, message", [
    (1, 3, "identities must be at least 2"), (3, 1, "per_identity must be at least 2 .same-identity pairs"),
    (0, 3, "identities must be at least 2"), (True, 3, "identities must be a whole number"),
])
def test_too_few_identities_or_images_are_refused(pixel, identities, per_identity, message):
    with pytest.raises(FaceganError, match=message):
        synthesize_identities(FakeIdentityGenerator(), identities, per_identity, recogniser=pixel)


def test_progress_is_reported_per_identity(pixel):
    calls = []
    synthesize_identities(FakeIdentityGenerator(), 3, 2, recogniser=pixel, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_many_pairs_are_sampled_not_enumerated(pixel, monkeypatch):
    import facegan.recognition.synth as synth_module

    monkeypatch.setattr(synth_module, "MAX_PAIRS", 50)
    figures = synthesize_identities(FakeIdentityGenerator(), 6, 5, recogniser=pixel).manifest["synth"]["consistency"]
    assert figures["pairs_sampled"] is True
    assert figures["num_same_identity_pairs"] == 50 and figures["num_different_identity_pairs"] == 50
    assert figures["same_identity_within_threshold"] == 1.0 and figures["different_identity_beyond_threshold"] == 1.0


def test_the_identity_leakage_audit_reads_synth_output_unchanged(pixel):
    from facegan.privacy.audit import audit_samples

    train = training_faces(num_identities=8, per_identity=3)
    holdout = training_faces(num_identities=8, per_identity=3, first_seed=2000)
    dataset = synthesize_identities(FakeIdentityGenerator(), 8, 3, recogniser=pixel, reference=train)
    result = audit_samples(dataset.images, train, holdout, features=["pixel"])
    assert result.to_dict()["memorisation"]["pixel"]["near_copy_share"] is not None


def test_a_reference_of_another_size_is_refused(pixel):
    small = FaceDataset(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(FaceganError, match="reference faces are 16x16x3 but the generator makes 32x32x3"):
        synthesize_identities(FakeIdentityGenerator(), 2, 2, recogniser=pixel, reference=small)


def test_an_absurd_request_is_refused_with_a_memory_estimate(pixel):
    with pytest.raises(FaceganError, match=r"1000000 identities x 1000 images at 32x32x3 would need ~2,861.0 GiB"):
        synthesize_identities(FakeIdentityGenerator(), 1_000_000, 1000, recogniser=pixel)


# ---- the CLI ---------------------------------------------------------------------------------------
def _cli(argv, capsys):
    from facegan.cli.main import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_the_dataset_and_rejects_the_planted_face_against_the_runs_training_data(pixel, tmp_path, monkeypatch, capsys):
    import facegan.models.export as export_module
    from tests.recognition.synth_fakes import make_run

    train = training_faces()
    train_path = train.save(tmp_path / "train")
    run, loader = make_run(tmp_path / "run", str(train_path), train.content_hash, planted={0: train.images[7]})
    monkeypatch.setattr(export_module, "load_generator", loader)
    code, out, err = _cli(["synth", str(run), "--identities", "3", "--per-identity", "3", "--out", str(tmp_path / "synth"),
                           "--recogniser", pixel, "--no-progress"], capsys)
    assert code == 0, err
    assert "3 identities x 3 images" in out and "1 candidates rejected" in out and "independent of training" in out
    dataset = FaceDataset.load(tmp_path / "synth")
    assert len(dataset) == 9 and dataset.identity_names == ["s00000", "s00001", "s00002"]
    synth = dataset.manifest["synth"]
    assert synth["reference"]["path"] == str(train_path) and synth["rejected"][0]["identity_seed"] == 0
    assert dataset.manifest["source"] == f"synth:{(run / 'export').resolve()}"


def test_cli_says_when_the_runs_training_data_no_longer_loads(pixel, tmp_path, monkeypatch, capsys):
    import facegan.models.export as export_module
    from tests.recognition.synth_fakes import make_run

    run, loader = make_run(tmp_path / "run", str(tmp_path / "gone"), "abc")
    monkeypatch.setattr(export_module, "load_generator", loader)
    code, out, err = _cli(["synth", str(run), "--identities", "2", "--per-identity", "2", "--out", str(tmp_path / "synth"),
                           "--recogniser", pixel, "--no-progress"], capsys)
    assert code == 0, err
    assert f"note: the training dataset {tmp_path / 'gone'} does not load" in out and "NOT checked against training faces" in out
    assert FaceDataset.load(tmp_path / "synth").manifest["synth"]["reference"] is None


def test_cli_explicit_reference_replaces_the_default(pixel, tmp_path, monkeypatch, capsys):
    import facegan.models.export as export_module
    from tests.recognition.synth_fakes import make_run

    train = training_faces()
    other = train.save(tmp_path / "other")
    run, loader = make_run(tmp_path / "run", None, planted={0: train.images[0]})
    monkeypatch.setattr(export_module, "load_generator", loader)
    code, out, err = _cli(["synth", str(run), "--identities", "2", "--per-identity", "2", "--out", str(tmp_path / "synth"),
                           "--recogniser", pixel, "--reference", str(other), "--no-progress"], capsys)
    assert code == 0, err
    assert FaceDataset.load(tmp_path / "synth").manifest["synth"]["num_rejected"] == 1


def test_cli_shows_a_progress_bar_in_identities(pixel, tmp_path, monkeypatch, capsys):
    import facegan.models.export as export_module
    from tests.recognition.synth_fakes import make_run

    run, loader = make_run(tmp_path / "run", None)
    monkeypatch.setattr(export_module, "load_generator", loader)
    code, out, err = _cli(["synth", str(run), "--identities", "3", "--per-identity", "2", "--out", str(tmp_path / "synth"),
                           "--recogniser", pixel], capsys)
    assert code == 0, err
    assert "synth: 100%" in err and "3/3" in err
    assert "note: the model records no training dataset; synthetic identities were NOT checked" in out


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "chi-square"])
def test_closest_training_distance_matches_a_brute_force_search(metric):
    from facegan.faces.match import MatchRule, pair_distances
    from facegan.recognition.synth import _pairwise_min

    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(7, 5)), rng.normal(size=(2500, 5))  # more rows than one chunk
    if metric == "chi-square":  # histograms: LBPH's metric went through the Euclidean formula before
        first, second = np.abs(first), np.abs(second)
    distances, index = _pairwise_min(first, second, MatchRule(metric, 1.0))
    for row in range(len(first)):
        brute = pair_distances(np.repeat(first[row : row + 1], len(second), 0), second, metric)
        assert index[row] == brute.argmin() and distances[row] == pytest.approx(brute.min(), abs=1e-9)


def test_default_dlib_recogniser_measures_in_euclidean_space():
    from facegan.faces.align import dlib_model_path

    try:
        dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")
    except FaceganError as error:
        pytest.skip(str(error))
    from facegan.faces.match import pair_distances
    from facegan.faces.recognisers import get_recogniser

    train = training_faces(num_identities=2, per_identity=2)
    # dlib sees these coloured patterns as near-identical non-faces (distances ~0.2), so no rejection here.
    dataset = synthesize_identities(FakeIdentityGenerator(), 2, 2, reference=train, min_distance=0.0)
    synth = dataset.manifest["synth"]
    assert synth["recogniser"]["name"] == "dlib-resnet" and synth["recogniser"]["metric"] == "euclidean"
    assert synth["recogniser"]["threshold"] == 0.6
    dlib = get_recogniser("dlib-resnet")
    generated, reference = dlib.embed(dataset.images[:2]), dlib.embed(train.images)
    expected = min(pair_distances(np.repeat(row[None], len(reference), 0), reference).min() for row in generated)
    assert synth["identities"][0]["closest_training_distance"] == pytest.approx(expected, abs=1e-5)


def test_separation_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    from facegan.recognition.synth import _separation_auc

    rng = np.random.default_rng(0)
    same = np.round(rng.normal(0.3, 0.1, 200), 2)  # rounded: many ties, inside and across the groups
    different = np.round(rng.normal(0.5, 0.1, 300), 2)
    labels = np.r_[np.ones(len(same)), np.zeros(len(different))]
    expected = roc_auc_score(labels, -np.r_[same, different])  # closer = more alike
    assert _separation_auc(same, different) == pytest.approx(expected, abs=1e-12)
    assert _separation_auc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert _separation_auc(np.array([0.3]), np.array([0.3])) == 0.5


def test_measure_with_adds_figures_of_other_recognisers_marked_independent_or_not(pixel, monkeypatch):
    import facegan.recognition.synth as synth_module

    generator = FakeIdentityGenerator()
    monkeypatch.setattr(synth_module, "training_recogniser", lambda _generator: pixel)
    dataset = synthesize_identities(generator, 3, 3, recogniser=pixel, measure_with=[pixel, "pixel"])
    measured = dataset.manifest["synth"]["consistency_by_recogniser"]
    assert set(measured) == {pixel, "pixel"}
    assert measured[pixel]["independent"] is False and measured["pixel"]["independent"] is True
    assert measured[pixel]["same_vs_different_auc"] == dataset.manifest["synth"]["consistency"]["same_vs_different_auc"]
    assert 0.0 <= measured["pixel"]["same_vs_different_auc"] <= 1.0
    assert "pixel: same-vs-different AUC" in synth_module.summary_line(dataset)


def test_measure_with_an_unknown_recogniser_is_refused_before_any_image(pixel):
    class Counting(FakeIdentityGenerator):
        calls = 0

        def sample_identity(self, *args, **kwargs):
            Counting.calls += 1
            return super().sample_identity(*args, **kwargs)

    with pytest.raises(FaceganError, match="unknown recogniser 'nobody'"):
        synthesize_identities(Counting(), 3, 3, recogniser=pixel, measure_with=["nobody"])
    assert Counting.calls == 0


def test_reference_spacing_is_the_low_percentile_of_nearest_other_identity_distances():
    from facegan.faces.match import MatchRule
    from facegan.recognition.synth import reference_spacing

    rng = np.random.default_rng(1)
    descriptors = rng.normal(size=(40, 6))
    identity = np.repeat(np.arange(10), 4)
    descriptors[1] = descriptors[0] + 1e-3  # same identity: must not count as "closest other person"
    rule = MatchRule("euclidean", 1.0)
    full = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=-1)
    full[identity[:, None] == identity[None]] = np.inf
    expected = np.percentile(full.min(1), 1.0)
    spacing = reference_spacing(descriptors, identity, rule)
    assert spacing["value"] == pytest.approx(expected, abs=1e-12) and spacing["between"] == "different identities"
    unlabelled = reference_spacing(descriptors, None, rule)  # any other image counts: the near-copy pair now
    assert unlabelled["value"] < 0.01 < spacing["value"]


def test_min_distance_reference_rejects_the_planted_copy_and_accepts_new_people(pixel):
    train = training_faces()
    planted = FakeIdentityGenerator(planted={0: train.images[4]})
    dataset = synthesize_identities(planted, 3, 3, recogniser=pixel, reference=train, min_distance="reference")
    synth = dataset.manifest["synth"]
    assert synth["min_distance_rule"] == "reference" and synth["min_distance"] == synth["reference_spacing"]["value"] > 0
    assert [rejection["identity_seed"] for rejection in synth["rejected"]] == [0]


def test_unreachable_threshold_says_to_measure_the_reference_instead(pixel):
    train = training_faces()
    with pytest.raises(FaceganError, match="training faces themselves lie closer than .* use --min-distance reference"):
        synthesize_identities(FakeIdentityGenerator(), 2, 2, recogniser=pixel, reference=train, min_distance=1.9, max_attempts=2)
