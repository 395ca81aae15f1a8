"""evaluate() end to end on a tiny trained model: metrics.json, the cache, batch-size independence,
refusals before any work, the training-time FD/KID hook and the `facegan eval` CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.metrics import EvalResult, compute_fd_kid, evaluate, frechet_distance_from_features, kernel_inception_distance
from facegan.metrics.cache import compute_real_features, select_real_indices
from facegan.metrics.evaluation import default_metrics_path
from facegan.models.export import load_generator
from tests.metrics.helpers import PROJECTION_NAME, ProjectionExtractor, train_tiny_run

pytestmark = pytest.mark.usefixtures("cache_dir")

ALL_VALUES = {"fd", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "face_rate", "face_rate_real"}


@pytest.fixture(scope="module")
def tiny_run(faces16, tmp_path_factory):
    """A 16x16 generator trained for 0.032 kimg on the 100 real faces (module-wide: ~2 s)."""
    return train_tiny_run(faces16, tmp_path_factory.mktemp("runs") / "tiny")


def test_evaluate_writes_metrics_and_reuses_cached_real_features(tiny_run, faces16, projection, cache_dir):
    result = evaluate(tiny_run, faces16, num=64, features=PROJECTION_NAME, seed=3, batch_size=16, progress=False)
    assert set(result.metrics) == ALL_VALUES
    assert all(np.isfinite(value) for value in result.metrics.values())
    assert result.metrics["fd"] > 0 and 0 <= result.metrics["precision"] <= 1 and 0 <= result.metrics["coverage"] <= 1
    assert result.metrics["face_rate_real"] == pytest.approx(0.69, abs=0.1)  # 16x16 faces; measured 0.69 on all 100
    assert result.metrics["face_rate"] < result.metrics["face_rate_real"]  # 4 training steps do not make faces

    # The numbers are the documented pipeline: seeds 3..66, a seeded real subset, the same extractor.
    dataset = FaceDataset.load(faces16)
    reals = ProjectionExtractor().features(dataset.images[select_real_indices(100, 64, seed=3)])
    fakes = ProjectionExtractor().features(load_generator(tiny_run).sample(range(3, 67)))
    assert result.metrics["fd"] == pytest.approx(frechet_distance_from_features(reals, fakes), rel=1e-9)
    assert (result.metrics["kid_mean"], result.metrics["kid_std"]) == pytest.approx(
        kernel_inception_distance(reals, fakes, num_subsets=100, subset_size=64, seed=3), rel=1e-9)

    protocol = result.protocol
    assert protocol["num_generated"] == 64 and protocol["seeds"] == "3-66" and protocol["truncation"] == 1.0
    assert protocol["num_real"] == 64 and protocol["real_selection"] == "random 64 of 100 (seed 3)"
    assert protocol["extractor"] == PROJECTION_NAME and protocol["extractor_version"] == "1" and protocol["feature_dim"] == 8
    assert protocol["dataset_hash"] == dataset.content_hash and protocol["trained_on_this_dataset"] is True
    assert protocol["prdc_k"] == 5 and protocol["kid_subsets"] == 100 and protocol["kid_subset_size"] == 64
    assert protocol["face_rate_upsample_num_times"] == 0 and "100 px" in protocol["face_rate_upsample"]
    assert protocol["facegan_version"] and protocol["resize"].startswith("4x4 block means")

    path = result.save(default_metrics_path(tiny_run / "export"))
    assert path == tiny_run / "metrics.json"  # an export inside a run writes into the run
    assert json.loads(path.read_text()) == result.to_dict()
    assert EvalResult.load(path) == result

    # Real features: computed once (64 images), cached in one file, reused by the second call.
    assert [extractor.num_images for extractor in projection] == [64 + 64]
    cache_files = list((cache_dir / "features").iterdir())
    assert len(cache_files) == 1 and cache_files[0].name.startswith(PROJECTION_NAME)
    again = evaluate(tiny_run, faces16, num=64, features=PROJECTION_NAME, seed=3, batch_size=16, progress=False)
    assert projection[1].num_images == 64  # only the generated side
    assert again == result and list((cache_dir / "features").iterdir()) == cache_files


def test_results_do_not_depend_on_batch_size(tiny_run, faces16, projection):
    small = evaluate(tiny_run, faces16, num=40, features=PROJECTION_NAME, batch_size=7, progress=False, cache=False)
    large = evaluate(tiny_run, faces16, num=40, features=PROJECTION_NAME, batch_size=64, progress=False, cache=False)
    assert small.metrics.keys() == large.metrics.keys()
    for name in small.metrics:
        assert small.metrics[name] == pytest.approx(large.metrics[name], rel=1e-9, abs=1e-12), name
    assert small.protocol == large.protocol
    assert projection[0].num_calls == 2 * 6 and projection[1].num_calls == 2 * 1  # really batched differently


def test_only_the_asked_metrics(tiny_run, faces16, projection):
    result = evaluate(tiny_run, faces16, num=20, features=PROJECTION_NAME, metrics="fd", progress=False)
    assert set(result.metrics) == {"fd"} and "kid_subsets" not in result.protocol and "face_rate_detector" not in result.protocol
    rate_only = evaluate(tiny_run, faces16, num=20, features=PROJECTION_NAME, metrics=["face-rate"], progress=False)
    assert set(rate_only.metrics) == {"face_rate", "face_rate_real"} and "extractor" not in rate_only.protocol
    assert len(projection) == 1  # no extractor built when no metric needs features


@pytest.mark.parametrize("options, message", [
    ({"metrics": "fd,fid"}, "unknown metric 'fid'"),
    ({"features": "clip"}, "unknown features 'clip'"),
    ({"num": 1}, "--num must be at least 2"),
    ({"num": 5, "metrics": "prdc"}, "needs more than 5 images"),
    ({"batch_size": 0}, "--batch-size must be at least 1"),
    ({"truncation": 1.5}, "--truncation must be between"),
    ({"data": "/no/such/dataset"}, "dataset not found"),
    ({"model": "/no/such/run"}, "no such run or export"),
])
def test_refuses_bad_options_before_any_work(tiny_run, faces16, projection, options, message):
    arguments = {"model": tiny_run, "data": faces16, "features": PROJECTION_NAME, "progress": False, **options}
    with pytest.raises(FaceganError, match=message) as error:
        evaluate(**arguments)
    assert "\n" not in str(error.value)
    assert projection == []  # refused before building the extractor, let alone using it


def test_inception_without_weights_is_refused_before_any_work(tiny_run, faces16, monkeypatch, capsys):
    monkeypatch.delenv("FACEGAN_INCEPTION_WEIGHTS", raising=False)
    assert main(["eval", str(tiny_run), "--data", str(faces16), "--features", "inception", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "--inception-weights" in error and "FACEGAN_INCEPTION_WEIGHTS" in error and error.count("\n") == 1


def test_refuses_a_dataset_of_another_size(tiny_run, faces32, projection):
    with pytest.raises(FaceganError, match="16x16x1 images but the dataset holds 32x32x1"):
        evaluate(tiny_run, faces32, features=PROJECTION_NAME, progress=False)


def test_compute_fd_kid_for_the_training_loop(tiny_run, faces16):
    extractor = ProjectionExtractor()
    real = compute_real_features(FaceDataset.load(faces16), extractor, num=100)
    generator = load_generator(tiny_run)
    values = compute_fd_kid(generator, real.features, extractor, num=50, seed=1, batch_size=16)
    assert set(values) == {"fd", "kid_mean", "kid_std"}
    fakes = extractor.features(generator.sample(range(1, 51)))
    assert values["fd"] == pytest.approx(frechet_distance_from_features(real.features, fakes), rel=1e-9)
    # Any seeds -> images callable works too (the loop passes its live EMA generator this way).
    assert compute_fd_kid(lambda seeds: generator.sample(seeds), real.features, extractor, num=50, seed=1) == values
    with pytest.raises(FaceganError, match="real features must be"):
        compute_fd_kid(generator, real.features[:, :4], extractor)


def test_format_table_is_aligned():
    result = EvalResult({"fd": 12.3456, "kid_mean": 0.000123, "precision": 0.5}, {"num_generated": 10})
    assert result.format_table().splitlines() == [
        "metric         value  better",
        "---------  ---------  ------",
        "fd             12.35  ↓ lower",
        "kid_mean   1.230e-04  ↓ lower",
        "precision        0.5  ↑ higher",
        "",
        "protocol",
        "  num_generated  10",
    ]


def test_cli_eval(tiny_run, faces16, projection, tmp_path, capsys):
    out = tmp_path / "m.json"
    argv = ["eval", str(tiny_run / "export"), "--data", str(faces16), "--num", "32", "--features", PROJECTION_NAME,
            "--metrics", "fd,kid,prdc", "--batch-size", "8", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "fd" in printed and "↓ lower" in printed and "protocol" in printed and str(out) in printed
    saved = json.loads(out.read_text())
    assert set(saved["metrics"]) == {"fd", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"}
    assert saved["protocol"]["num_generated"] == 32

    # Without --data: the dataset the model was trained on; without --out: the run folder.
    (tiny_run / "metrics.json").unlink(missing_ok=True)
    assert main(["eval", str(tiny_run), "--num", "16", "--features", PROJECTION_NAME, "--metrics", "fd", "--no-progress"]) == 0
    assert json.loads((tiny_run / "metrics.json").read_text())["protocol"]["dataset"] == str(faces16)

    assert main(["eval", str(tiny_run), "--data", str(faces16), "--metrics", "fd,bogus"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: unknown metric 'bogus'") and error.count("\n") == 1


@pytest.mark.slow
def test_evaluate_in_dlib_face_space(tiny_run, faces16):
    pytest.importorskip("facegan.faces.dlib_resnet")
    try:
        from facegan.metrics import get_extractor

        get_extractor("face")
    except (FaceganError, ImportError, OSError) as error:  # the dlib model file may be missing
        pytest.skip(f"face extractor unavailable: {error}")
    result = evaluate(tiny_run, faces16, num=50, features="face", metrics="fd,kid,prdc", progress=False)
    assert result.protocol["extractor"] == "dlib-resnet-face" and result.protocol["feature_dim"] == 128
    assert result.metrics["fd"] > 0 and np.isfinite(result.metrics["kid_mean"])
    # Real faces are closer to each other than to 4-step fakes in face space.
    dataset = FaceDataset.load(faces16)
    real = compute_real_features(dataset, get_extractor("face"), num=100).features  # all 100 (evaluate used 50)
    real_vs_real = frechet_distance_from_features(real[:50], real[50:])
    assert real_vs_real < result.metrics["fd"]
