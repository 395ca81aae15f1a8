"""attack_pairs: budgets kept exactly in the saved PNGs, zero budget, success judged on the files, per-pair isolation, records."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.recognition.resolve import resolve_recogniser
from facegan.robustness import attack_pairs, load_attack
from facegan.run import Run

RECORD_KEYS = {
    "format", "format_version", "recogniser", "recogniser_version", "metric", "score", "mode", "attack", "engine", "norm", "eps", "steps",
    "seed", "batch_size", "minimal", "defence", "adaptive", "eot", "num_pairs", "num_attacked", "num_success", "clean_accuracy",
    "success_rate", "robust_accuracy", "median_linf", "median_l2", "median_over", "median_minimal_eps", "budgets", "threshold",
    "fold_thresholds", "clean_verification_accuracy", "dataset", "dataset_hash", "pairs_file", "pairs_hash", "files",
    "provenance",  # how the adversarial images are marked (xmp, c2pa, digital source type)
}
CSV_COLUMNS = ["pair", "fold", "left", "right", "same", "threshold", "clean_score", "adversarial_score", "success", "linf", "l2"]


def _rows(folder) -> list[dict[str, str]]:
    with open(Run(folder).attack_pairs_path, newline="") as handle:
        return list(csv.DictReader(handle))


def _png(folder, pair: int | str) -> np.ndarray:
    image = np.asarray(Image.open(Run(folder).attack_images_dir / f"{int(pair):05d}.png"))
    return image[..., None] if image.ndim == 2 else image  # (H, W, C) uint8


def _clean(dataset_path, label: str) -> np.ndarray:
    dataset = FaceDataset.load(dataset_path)
    return np.asarray(dataset.images[dataset.source_paths.index(label)])


@pytest.fixture(scope="module")
def recogniser(tiny_recogniser_run):
    return resolve_recogniser(str(tiny_recogniser_run))


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_a_zero_budget_changes_nothing(recogniser, identity_dataset, identity_pairs, tmp_path, attack):
    record = attack_pairs(recogniser, identity_dataset, identity_pairs, tmp_path, attack=attack, eps=0, steps=3)
    assert record["num_attacked"] > 0 and record["success_rate"] == 0.0
    assert record["robust_accuracy"] == record["clean_accuracy"]
    for row in _rows(tmp_path):
        assert np.array_equal(_png(tmp_path, row["pair"]), _clean(identity_dataset, row["left"]))
        assert float(row["linf"]) == 0.0 and float(row["l2"]) == 0.0 and row["success"] == "0"
        assert float(row["adversarial_score"]) == pytest.approx(float(row["clean_score"]), abs=1e-6)


@pytest.mark.parametrize("norm, eps, steps", [("linf", 3.7, 4), ("l2", 150.0, 4)])
def test_saved_pngs_respect_the_budget_and_the_pixel_range_exactly(recogniser, identity_dataset, identity_pairs, tmp_path, norm, eps, steps):
    record = attack_pairs(recogniser, identity_dataset, identity_pairs, tmp_path, attack="pgd", norm=norm, eps=eps, steps=steps)
    rows = _rows(tmp_path)
    assert len(rows) == record["num_attacked"] > 0
    largest = []
    for row in rows:
        adversarial, clean = _png(tmp_path, row["pair"]), _clean(identity_dataset, row["left"])
        assert adversarial.dtype == np.uint8 and adversarial.shape == clean.shape  # PNG holds 0..255 integers only
        delta = adversarial.astype(np.int64) - clean.astype(np.int64)
        linf, l2 = np.abs(delta).max(), np.sqrt((delta.astype(np.float64) ** 2).sum())
        if norm == "linf":
            assert linf <= np.floor(eps)  # integer perturbations: floor(3.7) = 3 grey levels
        else:
            assert l2 <= eps
        assert float(row["linf"]) == linf and float(row["l2"]) == pytest.approx(l2, rel=1e-12)
        largest.append(linf if norm == "linf" else l2)
    assert max(largest) >= (3 if norm == "linf" else 0.5 * eps)  # the attack used its budget, not a no-op


def test_success_is_judged_on_the_saved_png_through_the_deployed_embed(recogniser, identity_dataset, identity_pairs, tmp_path):
    record = attack_pairs(recogniser, identity_dataset, identity_pairs, tmp_path, attack="pgd", eps=6, steps=5)
    rows = _rows(tmp_path)
    adversarial = np.stack([_png(tmp_path, row["pair"]) for row in rows])
    right = np.stack([_clean(identity_dataset, row["right"]) for row in rows])
    scores = -recogniser.distance(recogniser.embed(adversarial), recogniser.embed(right))
    np.testing.assert_allclose(scores, [float(row["adversarial_score"]) for row in rows], atol=1e-6)
    success = [row["success"] == "1" for row in rows]
    assert success == [score < float(row["threshold"]) for score, row in zip(scores, rows)]  # dodging: rejected
    assert record["num_success"] == sum(success)
    assert record["success_rate"] == pytest.approx(sum(success) / len(rows))
    assert record["robust_accuracy"] == pytest.approx((len(rows) - sum(success)) / record["num_pairs"])


def test_pgd_at_a_large_budget_fools_the_tiny_recogniser_and_fgsm_at_zero_does_not(recogniser, identity_dataset, identity_pairs, tmp_path):
    for mode in ("dodging", "impersonation"):
        fooled = attack_pairs(recogniser, identity_dataset, identity_pairs, mode=mode, attack="pgd", eps=48, steps=10)
        assert fooled["num_attacked"] >= 8 and fooled["success_rate"] >= 0.9, (mode, fooled["success_rate"])
        assert fooled["robust_accuracy"] <= 0.1
        untouched = attack_pairs(recogniser, identity_dataset, identity_pairs, mode=mode, attack="fgsm", eps=0)
        assert untouched["success_rate"] == 0.0 and untouched["robust_accuracy"] == untouched["clean_accuracy"]


def test_the_attack_on_a_pair_uses_only_that_pairs_images(recogniser, identity_dataset, identity_pairs, tmp_path):
    first = attack_pairs(recogniser, identity_dataset, identity_pairs, tmp_path / "first", attack="pgd", eps=8, steps=4, batch_size=1)
    rows = {row["pair"]: row for row in _rows(tmp_path / "first")}
    # Another attacked pair of the same fold (whose threshold comes from the other folds) sharing no image with pair 1.
    target = rows["1"]
    other = next(row for row in rows.values() if row["fold"] == target["fold"] and row["pair"] != "1"
                 and not {row["left"], row["right"]} & {target["left"], target["right"]})
    dataset = FaceDataset.load(identity_dataset)
    images = np.array(dataset.images)
    for label in (other["left"], other["right"]):
        row = dataset.source_paths.index(label)
        images[row] = np.roll(images[row], 2, axis=1)  # still that person, but other pixels
    changed = FaceDataset(images, dict(dataset.manifest), identity=np.asarray(dataset.identity)).save(tmp_path / "changed")
    second = attack_pairs(recogniser, changed, identity_pairs, tmp_path / "second", attack="pgd", eps=8, steps=4, batch_size=1)
    assert second["fold_thresholds"][int(target["fold"])] == first["fold_thresholds"][int(target["fold"])]
    assert np.array_equal(_png(tmp_path / "first", 1), _png(tmp_path / "second", 1))
    assert not np.array_equal(_png(tmp_path / "first", other["pair"]), _png(tmp_path / "second", other["pair"]))


def test_the_record_and_files_are_as_documented(recogniser, identity_dataset, identity_pairs, tmp_path):
    record = attack_pairs(recogniser, identity_dataset, identity_pairs, tmp_path, attack="pgd", eps="2/255,8/255", steps=3, max_pairs=9)
    assert set(record) == RECORD_KEYS
    assert record["format"] == "facegan-attack" and record["eps"] == 8.0 and record["num_pairs"] == 9
    assert [row["eps"] for row in record["budgets"]] == [2.0, 8.0]
    assert record["budgets"][-1]["success_rate"] == record["success_rate"]
    assert record["budgets"][0]["success_rate"] <= record["budgets"][1]["success_rate"]
    assert len(record["fold_thresholds"]) == 3
    assert record["threshold"] == pytest.approx(np.mean([fold["threshold"] for fold in record["fold_thresholds"]]))
    assert record["files"] == {"pairs": "pairs.csv", "images": "adversarial", "curve": "attack_curve.png"}
    assert load_attack(tmp_path) == json.loads(Run(tmp_path).attack_path.read_text()) == record
    assert Run(tmp_path).attack_curve_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _rows(tmp_path)
    assert list(rows[0]) == CSV_COLUMNS
    assert sorted(path.name for path in Run(tmp_path).attack_images_dir.iterdir()) == sorted(f"{int(row['pair']):05d}.png" for row in rows)
    # Again into the same folder with one budget and other pairs: no stale curve or image is left to pass as this attack's.
    again = attack_pairs(recogniser, identity_dataset, identity_pairs, tmp_path, mode="impersonation", attack="fgsm", eps=4, max_pairs=3)
    assert "curve" not in again["files"] and not Run(tmp_path).attack_curve_path.exists()
    assert sorted(path.name for path in Run(tmp_path).attack_images_dir.iterdir()) == sorted(f"{int(row['pair']):05d}.png" for row in _rows(tmp_path))
    assert all(row["same"] == "0" for row in _rows(tmp_path))


def test_impersonation_success_means_accepted(recogniser, identity_dataset, identity_pairs, tmp_path):
    attack_pairs(recogniser, identity_dataset, identity_pairs, tmp_path, mode="impersonation", attack="pgd", eps=16, steps=5)
    rows = _rows(tmp_path)
    assert rows and all(row["same"] == "0" for row in rows)
    assert all((row["success"] == "1") == (float(row["adversarial_score"]) >= float(row["threshold"])) for row in rows)
    assert all(float(row["clean_score"]) < float(row["threshold"]) for row in rows)  # only the pairs right when clean


def test_options_are_refused_in_one_line_before_any_work(identity_dataset, identity_pairs, tmp_path):
    cases = [
        ({"mode": "stealth"}, "unknown attack mode"),
        ({"attack": "deepfool"}, "unknown attack"),
        ({"norm": "l3"}, "unknown norm"),
        ({"attack": "cw", "norm": "linf"}, "l2 norm only"),
        ({"eps": -1}, "negative"),
        ({"eps": 256}, "255"),
        ({"eps": float("nan")}, "--eps"),
        ({"steps": 0}, "--steps"),
        ({"eot": 3}, "randomised defence"),
        ({"eps": 0, "minimal": True}, "--minimal"),
    ]
    for options, message in cases:
        with pytest.raises(FaceganError, match=message):
            attack_pairs("pixel", identity_dataset, identity_pairs, tmp_path / "out", **options)
    with pytest.raises(FaceganError, match="not differentiable.*--attack square"):
        attack_pairs("lbph", identity_dataset, identity_pairs, tmp_path / "out", attack="pgd")
    assert not (tmp_path / "out").exists()


# ---- the real-client transfer check: crafted on dlib's PyTorch port, verified by dlib's own C++ recogniser -------------
@pytest.fixture(scope="module")
def lfw_chips(tmp_path_factory):
    """12 LFW faces (skimage's lfw_subset) upscaled to 150 px chips, 6 jittered images each; 2 folds x 3 same + 3 different pairs."""
    from tests.recognition.helpers import NUM_IDENTITIES, identity_faces, write_pairs

    folder = tmp_path_factory.mktemp("dlib")
    images, identity = identity_faces(size=150)
    names = [f"p{person:02d}" for person in range(NUM_IDENTITIES)]
    dataset = FaceDataset(images, {"source": "test:lfw150", "source_kind": "folder", "identity_names": names}, identity=identity).save(folder / "lfw150")
    return dataset, write_pairs(folder / "pairs.txt", num_folds=2, per_fold=3)


def _row_of(label: str) -> int:
    """Dataset row of an identity/number label of the chips dataset (identities in order, PER_IDENTITY images each)."""
    from tests.recognition.helpers import PER_IDENTITY

    person, number = label.split("/")
    return int(person[1:]) * PER_IDENTITY + int(number) - 1


def test_real_dlib_agrees_with_the_port_on_the_saved_adversarial_pngs(lfw_chips, tmp_path):
    dlib = pytest.importorskip("dlib")
    from facegan.faces.align import dlib_model_path

    dataset, pairs = lfw_chips
    record = attack_pairs("dlib", dataset, pairs, tmp_path, mode="dodging", attack="pgd", norm="l2", eps=90, steps=2)
    assert record["num_attacked"] == 6
    assert 0 < record["success_rate"] < 1  # some pairs fooled, some not: the comparison means something
    assert abs(record["success_rate_real_dlib"] - record["success_rate"]) <= 0.05
    assert record["real_dlib_max_score_gap"] < 1e-3  # vs dlib's 0.6 match threshold: the same numbers
    # Recomputed here from the files alone, with dlib's own API, as a user of dlib would.
    recognizer = dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
    images = FaceDataset.load(dataset).images
    for row in _rows(tmp_path):
        chip = _png(tmp_path, row["pair"])
        assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
        right = np.repeat(np.asarray(images[_row_of(row["right"])]), 3, axis=2)  # the grey chip as RGB, as the domain makes it
        first, second = (np.array(recognizer.compute_face_descriptor(np.ascontiguousarray(image))) for image in (chip, right))
        real_score = -np.linalg.norm(first - second)
        assert real_score == pytest.approx(float(row["real_dlib_score"]), abs=1e-5)
        assert abs(real_score - float(row["adversarial_score"])) < 1e-3
        assert (real_score < float(row["threshold"])) == (row["success"] == "1")


def test_minimal_finds_each_pairs_smallest_successful_budget(recogniser, identity_dataset, identity_pairs, tmp_path):
    record = attack_pairs(recogniser, identity_dataset, identity_pairs, tmp_path, attack="pgd", eps=24, steps=4, minimal=True)
    rows = _rows(tmp_path)
    assert list(rows[0]) == CSV_COLUMNS + ["minimal_eps"]
    minimal = np.array([float(row["minimal_eps"]) for row in rows])
    found = np.isfinite(minimal)
    assert found.mean() >= 0.9 and (minimal[found] <= 24).all() and (minimal[found] > 0).all()
    assert record["minimal"] and record["median_minimal_eps"] == pytest.approx(float(np.median(minimal)))
    # L-inf perturbations are integers within the budget: the minimal image's L-inf is at most its minimal budget.
    assert record["median_linf"] <= record["median_minimal_eps"]
    assert "binary search" in record["median_over"]


def test_a_pair_fooled_at_the_largest_budget_has_a_finite_minimal_budget(recogniser, identity_dataset, identity_pairs, tmp_path):
    # The search's probe at eps_max repeats that budget's attack (same random start), so the two never disagree.
    attack_pairs(recogniser, identity_dataset, identity_pairs, tmp_path, attack="pgd", eps=[2, 6], steps=3, minimal=True, seed=1)
    rows = _rows(tmp_path)
    success = np.array([row["success"] == "1" for row in rows])
    minimal = np.array([float(row["minimal_eps"]) for row in rows])
    assert success.any() and (~success).any()
    assert (np.isfinite(minimal) == success).all()


@pytest.mark.parametrize("attack, eps", [("fgsm", 6), ("pgd", 4)])
def test_success_rates_match_art_on_the_same_model_pairs_and_budget(recogniser, identity_dataset, identity_pairs, attack, eps):
    pytest.importorskip("art")
    for mode in ("dodging", "impersonation"):
        ours = attack_pairs(recogniser, identity_dataset, identity_pairs, mode=mode, attack=attack, eps=eps, steps=5)
        art = attack_pairs(recogniser, identity_dataset, identity_pairs, mode=mode, attack=attack, eps=eps, steps=5, engine="art")
        assert art["engine"] == "art" and art["num_attacked"] == ours["num_attacked"] >= 8
        assert 0 < ours["success_rate"] < 1  # a budget where the rate can differ at all
        # One pair of 12 is 8 points: "within a few points" is at most one pair apart.
        assert abs(art["success_rate"] - ours["success_rate"]) <= 1 / ours["num_attacked"] + 1e-9, (mode, art["success_rate"], ours["success_rate"])


def test_square_is_a_black_box_that_also_fools_the_non_differentiable_lbph(identity_dataset, identity_pairs, tmp_path):
    record = attack_pairs("lbph", identity_dataset, identity_pairs, tmp_path, attack="square", eps=32, steps=60, max_pairs=6)
    assert record["num_attacked"] > 0 and record["success_rate"] > 0
    for row in _rows(tmp_path):
        delta = _png(tmp_path, row["pair"]).astype(np.int64) - _clean(identity_dataset, row["left"]).astype(np.int64)
        assert np.abs(delta).max() <= 32


def test_an_attack_with_no_pair_to_attack_is_still_a_written_result(identity_dataset, identity_pairs, tmp_path, monkeypatch):
    from facegan.cli.attack import format_record
    from facegan.robustness import evaluate

    # The recogniser gets every pair wrong clean: nothing to attack, robust accuracy 0 is the result.
    monkeypatch.setattr(evaluate, "_fooled", lambda scores, thresholds, mode: np.ones(len(scores), dtype=bool))
    out = tmp_path / "out"
    record = attack_pairs("pixel", identity_dataset, identity_pairs, out, attack="fgsm", eps=[2, 4])
    assert record["num_attacked"] == 0 and record["success_rate"] is None and record["robust_accuracy"] == 0.0
    assert load_attack(out) == json.loads(json.dumps(record)) and not Run(out).attack_partial_path.exists()
    assert _rows(out) == [] and list(Run(out).attack_images_dir.iterdir()) == [] and Run(out).attack_curve_path.is_file()
    assert "success n/a, robust accuracy 0.0%" in format_record(record)
