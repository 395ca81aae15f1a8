"""Controls: a generator that replays training faces must be flagged, one that shows outsiders must not.

Built from the 100 real faces that ship with scikit-image (32x32 grey, as tests/conftest.py prepares
them): 40 train, 30 holdout, 30 outside, shuffled with seed 0.

Bounds. With 40 members and 30 non-members a blind attacker's AUC has standard deviation
sqrt((40 + 30 + 1) / (12 * 40 * 30)) = 0.070 (Mann-Whitney under the null; checked by simulation in
test_audit_metrics), so the negative control must land within 3 sd of 0.5, [0.29, 0.71]: a split
that misses it happens 0.3% of the time, not by design. The positive control replays every training
face, so GAN-Leaks separates members perfectly; we ask for AUC >= 0.9 and 90% near copies, far past
any chance value (p < 1e-9). Near copies of the negative control are held to the chance model of
`near_copy_null_shares` (the 5% line from 30 holdout faces moves a lot), not to a fixed 10%.
"""
from facegan.provenance.record import Provenance
import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.images import save_png
from facegan.privacy.audit import SIGNIFICANCE, audit_generator, audit_samples
from facegan.privacy.audit_controls import ReplayGenerator, builtin_control_sets
from facegan.privacy.audit_metrics import auc_chance_sd

NEGATIVE_AUC_BOUNDS = (0.5 - 3 * auc_chance_sd(40, 30), 0.5 + 3 * auc_chance_sd(40, 30))  # (0.289, 0.711)


@pytest.fixture(scope="module")
def controls():
    return builtin_control_sets(size=32)


@pytest.fixture(scope="module")
def positive(controls):
    generator = controls.positive_control()
    return audit_generator(generator, controls.train, controls.holdout, num_samples=controls.num_samples(generator))


@pytest.fixture(scope="module")
def negative(controls):
    generator = controls.negative_control()
    return audit_generator(generator, controls.train, controls.holdout, num_samples=controls.num_samples(generator))


def attack(result, space):
    return next(item for item in result.membership if item.attack == "gan_leaks" and item.space == space)


def test_control_sets_are_disjoint_real_faces(controls):
    sizes = [len(controls.train), len(controls.holdout), len(controls.outside)]
    assert sizes == [40, 30, 30] and controls.train.images.shape[1:] == (32, 32, 1)
    rows = [set(map(bytes, np.asarray(part.images).reshape(len(part), -1))) for part in (controls.train, controls.holdout, controls.outside)]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])


def test_replay_generator_is_seeded_per_image(controls):
    generator = controls.positive_control()
    both = generator.sample([3, 41])
    np.testing.assert_array_equal(generator.sample([41]), both[1:])  # an image depends only on its seed
    assert both.dtype == np.uint8 and both.shape == (2, 32, 32, 1)
    difference = both[0].astype(int) - np.asarray(controls.train.images[3]).astype(int)
    assert 0 < np.abs(difference).max() <= 12  # a near copy, not a byte copy
    assert not np.array_equal(both[1], generator.sample([1])[0])  # 41 = 1 mod 40 but its own noise


@pytest.mark.parametrize("space", ["pixel", "face"])
def test_positive_control_is_flagged(positive, space):
    result = attack(positive, space)
    assert result.auc >= 0.9 and result.flagged and result.p_value < 1e-9
    assert result.tpr_at_fpr["0.01"] >= 0.9  # nearly every training face caught with no false accusation
    memo = positive.memorisation[space]
    assert memo.near_copy_share >= 0.9 and memo.flagged
    assert memo.dcr_generated["median"] < 0.25 * memo.dcr_holdout["median"]
    assert memo.nndr_generated_median < 0.5 * memo.nndr_holdout_median
    assert positive.flagged and positive.readings[0].startswith("Verdict: WARNING")


@pytest.mark.parametrize("space", ["pixel", "face"])
def test_negative_control_is_not_flagged(negative, space):
    result = attack(negative, space)
    assert NEGATIVE_AUC_BOUNDS[0] <= result.auc <= NEGATIVE_AUC_BOUNDS[1]
    assert not result.flagged and result.p_value >= SIGNIFICANCE
    memo = negative.memorisation[space]
    assert not memo.flagged and memo.near_copy_p_value >= SIGNIFICANCE
    assert memo.near_copy_share <= memo.near_copy_chance_limit
    # Outsiders are as far from the training faces as real holdout faces are.
    assert 0.8 <= memo.dcr_generated["median"] / memo.dcr_holdout["median"] <= 1.25


def test_negative_control_verdict_and_identity(negative, positive):
    assert not negative.flagged and negative.warnings == []
    assert negative.readings[0].startswith("Verdict: none of the 5")
    # Identity: at 32 px grey nearly every real face has a dlib lookalike in the training set, so the
    # holdout's natural rate is high; the positive control matches every time, the negative no more than real faces.
    # Every replayed face matches its own training face; only those dlib's detector finds count (~90% at 32 px).
    assert positive.identity.generated_match_rate >= 0.85
    assert not negative.identity.flagged and negative.identity.p_value > 0.01  # no more matches than chance allows


def test_audit_records_what_it_did(positive):
    data = positive.to_dict()
    assert data["format"] == "facegan-privacy-audit" and data["flagged"] is True
    assert data["target"]["kind"] == "generator" and data["target"]["num_generated"] == 40 and data["target"]["seeds"] == "0-39"
    assert data["skipped"]["discriminator"].startswith("no discriminator given")
    assert set(data["memorisation"]) == {"pixel", "face"} and len(data["membership"]) == 2
    assert set(data["figures"]) == {"roc", "distances", "closest_pixel", "closest_face"}
    for entry in data["figures"].values():  # one sentence each, saying which way is better
        caption = entry["caption"]
        assert caption.endswith(".") and ". " not in caption and ("better" in caption or "goal" in caption)
    assert any("small sets (40 train, 30 holdout)" in note for note in data["notes"])


def test_closest_pairs_name_distinct_training_faces(positive, controls):
    pairs = positive.memorisation["pixel"].closest_pairs
    assert len(pairs) == 8 and len({train for _, train, _ in pairs}) == 8
    distances = [distance for _, _, distance in pairs]
    assert distances == sorted(distances)
    # A replayed face's closest training face is the face it replays (seed s -> face s mod 40).
    assert all(train == gen % 40 for gen, train, _ in pairs)


def test_audit_is_deterministic(controls, positive):
    generator = controls.positive_control()
    again = audit_generator(generator, controls.train, controls.holdout, num_samples=40, features=["pixel"])
    assert again.memorisation["pixel"] == positive.memorisation["pixel"]
    assert attack(again, "pixel") == attack(positive, "pixel")


def write_folder(images, folder, size=None, rgb=False):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        picture = Image.fromarray(image[:, :, 0])
        if size:
            picture = picture.resize((size, size), Image.BICUBIC)
        picture = picture.convert("RGB") if rgb else picture
        if rgb:
            picture.save(folder / f"face{index:04d}.jpg", quality=95)
        else:
            save_png(np.asarray(picture)[:, :, None], folder / f"face{index:04d}.png", Provenance.off("test"))
    return folder


@pytest.mark.parametrize("control", ["positive", "negative"])
def test_samples_folder_gives_the_same_audit_as_the_array(controls, control, request, tmp_path):
    """PNG round trip of 32 px grey faces is lossless, so the folder audit must equal the in-memory one."""
    generator = controls.positive_control() if control == "positive" else controls.negative_control()
    folder = write_folder(generator.sample(range(controls.num_samples(generator))), tmp_path / "fakes")
    from_folder = audit_samples(folder, controls.train, controls.holdout)
    from_generator = request.getfixturevalue(control)
    for space in ("pixel", "face"):
        assert from_folder.memorisation[space] == from_generator.memorisation[space]
        assert attack(from_folder, space) == attack(from_generator, space)
    assert from_folder.flagged == (control == "positive")
    assert from_folder.target == {"kind": "samples", "path": str(folder), "num_generated": len(generator.images)}
    assert "discriminator" in from_folder.skipped


def test_samples_of_another_size_and_format_are_converted(controls, tmp_path):
    """64 px RGB JPEGs from "another generator" are brought to the training set's 32 px grey."""
    generator = controls.positive_control()
    folder = write_folder(generator.sample(range(40)), tmp_path / "big", size=64, rgb=True)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = audit_samples(folder, controls.train, controls.holdout)
    assert result.target["num_generated"] == 40
    assert attack(result, "pixel").auc >= 0.9 and attack(result, "face").auc >= 0.9 and result.memorisation["pixel"].flagged
    assert any("1 file(s)" in note and "corrupt" in note for note in result.notes)


def test_samples_folder_errors_are_clear(controls, tmp_path):
    with pytest.raises(FaceganError, match="samples folder not found"):
        audit_samples(tmp_path / "missing", controls.train, controls.holdout)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceganError, match="no images in"):
        audit_samples(tmp_path / "empty", controls.train, controls.holdout)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"")
    with pytest.raises(FaceganError, match="none of the 1 files"):
        audit_samples(tmp_path / "bad", controls.train, controls.holdout)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(FaceganError, match="must be a folder"):
        audit_samples(tmp_path / "file.png", controls.train, controls.holdout)


def test_input_errors_are_clear(controls):
    generator = controls.positive_control()
    with pytest.raises(FaceganError, match="unknown feature space 'inception'"):
        audit_generator(generator, controls.train, controls.holdout, features=["inception"])
    with pytest.raises(FaceganError, match="at least 2"):
        audit_generator(generator, controls.train, controls.holdout.subset([0]))
    small = ReplayGenerator(np.zeros((2, 16, 16, 1), np.uint8))
    with pytest.raises(FaceganError, match="makes 16px faces"):
        audit_generator(small, controls.train, controls.holdout, num_samples=4)
    with pytest.raises(FaceganError, match="--num must be at least 2"):
        audit_generator(generator, controls.train, controls.holdout, num_samples=1)
    with pytest.raises(FaceganError, match="--train: dataset not found"):
        audit_generator(generator, "/nonexistent/train", controls.holdout)


def test_overlapping_sets_are_refused(controls):
    """A holdout face that was trained on counts as a non-member: with the training set passed twice, a
    perfect memoriser would pass the audit. Any overlap is refused before any face is generated."""
    leaky_holdout = controls.holdout.subset(np.arange(30))
    leaky_holdout.images[:3] = np.asarray(controls.train.images[:3])
    memoriser = controls.positive_control()
    with pytest.raises(FaceganError, match="--holdout must be disjoint from --train: 3 of its 30 images are in the training set"):
        audit_generator(memoriser, controls.train, leaky_holdout, num_samples=30, features=["pixel"])
    with pytest.raises(FaceganError, match=f"--holdout must be disjoint from --train: {len(controls.train)} of its"):
        audit_samples(np.asarray(controls.train.images), controls.train, controls.train, features=["pixel"])


def test_pixel_only_audit_skips_identity(controls):
    result = audit_generator(controls.negative_control(), controls.train, controls.holdout, num_samples=30, features=["pixel"])
    assert result.data["holdout_in_train"] == 0
    assert "identity" in result.skipped  # pixel only: no face descriptors, no identity check


def test_identity_leakage_is_flagged_against_a_low_natural_rate(controls):
    """At 32 px grey dlib finds a lookalike for nearly every real face, so the identity check cannot fire on
    the real controls; against a holdout of blank images (natural rate 0) replayed faces must be flagged."""
    from facegan.data.dataset import FaceDataset

    blank = FaceDataset(np.repeat(np.linspace(0, 255, 30).astype(np.uint8)[:, None, None, None], 32, 1).repeat(32, 2))
    generator = controls.positive_control()
    result = audit_generator(generator, controls.train, blank, num_samples=40, features=["face"])
    identity = result.identity
    assert identity.generated_match_rate >= 0.85 and identity.holdout_match_rate == 0.0  # detected faces only
    assert identity.flagged and identity.p_value < 1e-9 and not identity.labelled
    assert any(warning.startswith("identity leakage: ") for warning in result.warnings)


def test_featureless_images_are_not_identity_leaks(controls):
    """A blob sits near dlib's mean descriptor and 'matches' everyone; it shows no person and must not count."""
    class Blobs:
        def sample(self, seeds, truncation=1.0, batch_size=64):
            return np.full((len(list(seeds)), 32, 32, 1), 128, dtype=np.uint8)

    result = audit_generator(Blobs(), controls.train, controls.holdout, num_samples=20, features=["face"])
    assert result.identity.generated_match_rate == 0.0 and not result.identity.flagged


def test_identity_labels_count_the_people_matched(controls):
    train = controls.train.subset(np.arange(40))
    train.identity = np.arange(40) % 10  # 10 people, 4 faces each
    train.manifest["identity_names"] = [f"person-{index}" for index in range(10)]
    holdout = controls.holdout.subset(np.arange(30))
    holdout.identity = np.full(30, 3)  # shares person-3 with train: not a pure lookalike baseline
    result = audit_generator(controls.positive_control(), train, holdout, num_samples=40, features=["face"])
    identity = result.identity
    assert identity.labelled and identity.num_train_identities == 10
    assert identity.identities_matched_by_generated == 10  # every replayed face is its own training person
    assert identity.top_identities[0][0].startswith("person-") and sum(count for _, count in identity.top_identities) <= 40
    assert identity.top_identities[0][1] == 4
    assert any("shares 1 person with the training set" in note for note in result.notes)


def test_identity_check_uses_the_recognisers_own_match_rule(controls, monkeypatch):
    """The threshold is the recogniser's (faces.recognisers), not a constant imported by the audit."""
    import facegan.privacy.audit as audit
    from facegan.faces.match import MatchRule

    class Strict:
        """Block means as descriptors; only exact copies are one person under this rule."""

        name, version, dim = "strict", "1", 4
        match = MatchRule("euclidean", 1e-9)
        threshold = match.threshold

        def embed(self, images, batch_size=64):
            images = np.asarray(images, dtype=np.float32)
            count, height, width = images.shape[:3]
            return images[..., 0].reshape(count, 2, height // 2, 2, width // 2).mean(axis=(2, 4)).reshape(count, 4)

    monkeypatch.setattr(audit, "_face_recogniser", lambda device: Strict())
    monkeypatch.setattr(audit, "_FACE_CACHE", {})  # descriptors of another recogniser must not leak into later tests
    generator = controls.positive_control(noise_std=0.0)  # exact copies
    result = audit_generator(generator, controls.train, controls.holdout, num_samples=controls.num_samples(generator), features=["face"])
    assert result.identity.threshold == 1e-9
    assert result.identity.holdout_match_rate == 0.0  # no real holdout face is an exact copy of a training face
    assert result.identity.generated_match_rate > 0.5  # replayed training faces are, wherever dlib finds a face
