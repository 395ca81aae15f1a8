"""Dataclass configs: unknown keys refused, types checked, overrides applied in order."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from facegan.config import apply_overrides, from_dict, parse_override, to_dict
from facegan.errors import FaceganError
from facegan.training.config import TrainConfig, resolve_config


def test_unknown_key_is_an_error():
    with pytest.raises(FaceganError, match="unknown config key 'model.colour'"):
        from_dict(TrainConfig, {"model": {"colour": 3}})


def test_wrong_type_is_an_error():
    with pytest.raises(FaceganError, match="batch_size"):
        from_dict(TrainConfig, {"batch_size": "many"})
    with pytest.raises(FaceganError, match="not one of"):
        apply_overrides(TrainConfig(), ["loss.kind=wasserstein"])


def test_precedence_defaults_preset_updates_overrides():
    config = resolve_config("seed-dcgan", {"kimg": 5, "optimizer": {"lr_g": 3e-4}}, ["optimizer.lr_g=0.001", "seed=9"])
    assert config.model.architecture == "dcgan"  # preset
    assert config.kimg == 5.0  # update
    assert config.optimizer.lr_g == 0.001  # override wins
    assert config.optimizer.lr_d == 1e-4  # preset kept
    assert config.seed == 9


def test_override_values_parse_as_json_else_string():
    assert parse_override("a.b=1") == {"a": {"b": 1}}
    assert parse_override("a=true") == {"a": True}
    assert parse_override("augment.policy=color,cutout") == {"augment": {"policy": "color,cutout"}}
    with pytest.raises(FaceganError):
        parse_override("novalue")


@given(kimg=st.floats(0.001, 1e6), batch=st.integers(2, 4096), seed=st.integers(0, 2**31), policy=st.sampled_from(["", "color", "color,translation,cutout"]))
def test_round_trip_through_json(kimg, batch, seed, policy):
    config = resolve_config("default", {"kimg": kimg, "batch_size": batch, "seed": seed, "augment": {"policy": policy}})
    assert from_dict(TrainConfig, to_dict(config)) == config


def test_impossible_options_refused_before_work():
    for override, message in [("kimg=-1", "kimg"), ("batch_size=1", "batch_size"), ("augment.policy=rotate", "unknown augmentation")]:
        config = resolve_config("default", {"data": "d", "out": "o"}, [override])
        with pytest.raises(FaceganError, match=message):
            config.validate()


# ---- every number is finite and in range (issue 7 §1) --------------------------------------------

import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

from hypothesis import example, settings  # noqa: E402

from facegan.config import check_range, describe_fields, field_docs  # noqa: E402
from facegan.models.config import ModelConfig  # noqa: E402


def _validated(*overrides):
    config = resolve_config("default", {"data": "d", "out": "o"}, list(overrides))
    config.validate()
    return config


@pytest.mark.parametrize("text", ["NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", "1e400"])
def test_non_finite_floats_refused_when_loaded(text):
    with pytest.raises(FaceganError, match=r"config key 'ema.half_life_kimg': .* is not a finite number"):
        apply_overrides(TrainConfig(), [f"ema.half_life_kimg={text}"])
    with pytest.raises(FaceganError, match="not a finite number"):
        from_dict(TrainConfig, json.loads('{"loss": {"r1_gamma": NaN}}'))


@pytest.mark.parametrize("override, message", [
    ("model.g_channels=0", "model.g_channels must be at least 1, got 0"),
    ("model.g_channels=-4", "model.g_channels must be at least 1, got -4"),
    ("model.min_channels=0", "model.min_channels must be at least 1"),
    ("augment.translation_ratio=5", "augment.translation_ratio must be below 1"),
    ("augment.cutout_ratio=-1", "augment.cutout_ratio must be at least 0"),
    ("model.d_dropout=1.5", "model.d_dropout must be below 1"),
    ("optimizer.beta1=5", "optimizer.beta1 must be below 1"),
    ("optimizer.beta2=1", "optimizer.beta2 must be below 1"),
    ("optimizer.lr_d=0", "optimizer.lr_d must be positive"),
    ("optimizer.lr_g=3", "optimizer.lr_g must be at most 1"),
    ("model.leaky_slope=-0.1", "model.leaky_slope must be at least 0"),
    ("model.z_dim=0", "model.z_dim must be at least 1"),
    ("batch_size=1", "batch_size must be at least 2"),
    ("ema.rampup=-1", "ema.rampup must be at least 0"),
    ("ema.half_life_kimg=0", "ema.half_life_kimg must be positive"),
    ("schedule.metric_kimg=-1", "schedule.metric_kimg must be at least 0"),
    ("schedule.max_minutes=-1", "schedule.max_minutes must be at least 0"),
    ("schedule.num_snapshot_images=0", "schedule.num_snapshot_images must be at least 1"),
    ("seed=-1", "seed must be at least 0"),
    ("seed=18446744073709551616", "seed must be below"),
    ("runtime.num_threads=-2", "runtime.num_threads must be at least 0"),
    ("privacy.epsilon=-1", "privacy.epsilon"),
    ("privacy.delta=1", "privacy.delta"),
    ("privacy.max_grad_norm=0", "privacy.max_grad_norm"),
    ("loss.r1_interval=0", "loss.r1_interval must be at least 1"),
    ("model.resolution=12", "model.resolution must be a power of two"),
    ("model.resolution=-8", "model.resolution must be a power of two"),
])
def test_out_of_range_values_refused_by_validate(override, message):
    with pytest.raises(FaceganError, match=message):
        _validated(override)


@pytest.mark.parametrize("override, message", [
    ("batch_size=1e8", r"batch_size=100000000 would need ~[\d,]+ GiB .*at most 65536"),
    ("model.z_dim=1e8", r"model.z_dim=100000000 would need ~[\d,]+ GiB of weights; at most 4096"),
    ("model.g_channels=1e6", r"model.g_channels=1000000 would need ~[\d,]+ GiB of weights; at most 4096"),
    ("model.d_channels=100000", r"model.d_channels=100000 would need ~[\d,]+ GiB"),
])
def test_sizes_that_cannot_fit_refused_with_an_estimate(override, message):
    with pytest.raises(FaceganError, match=message):
        _validated(override)


def test_valid_configs_still_pass():
    for preset in ("default", "seed-dcgan", "dp"):
        resolve_config(preset, {"data": "d", "out": "o"}).validate()
    _validated("optimizer.beta1=0.9", "model.d_dropout=0.3", "augment.translation_ratio=0.5", "model.g_channels=4096", "batch_size=65536")


def test_check_range_names_the_key_and_the_range():
    with pytest.raises(FaceganError, match=r"^x must be a finite number \(range \[0, 1\]\), got nan$"):
        check_range("x", float("nan"), 0, 1)
    check_range("x", 0.0, 0, 1, max_open=True)


def test_validate_does_not_import_privacy_or_augment():
    import subprocess
    import sys

    code = ("import sys; from facegan.training.config import resolve_config; "
            "resolve_config('dp', {'data': 'd', 'out': 'o', 'privacy': {'epsilon': 1}}).validate(); "
            "print(sorted(m for m in sys.modules if m.startswith(('facegan.privacy', 'facegan.training.augment'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


_FLOAT_KEYS = [key for key, kind, _default, _doc in describe_fields(TrainConfig) if kind == "float"]
_INT_KEYS = [key for key, kind, _default, _doc in describe_fields(TrainConfig) if kind == "int"]
_HOSTILE_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-0", "1e308"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_FLOAT_KEYS + _INT_KEYS), _HOSTILE_VALUES), min_size=1, max_size=4))
@example([("model.g_channels", "1e308"), ("batch_size", 10**400)])  # once an OverflowError in the size estimate
def test_any_config_that_validates_has_only_finite_in_range_numbers(assignments):
    overrides = [f"{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in assignments]
    try:
        config = _validated(*overrides)
    except FaceganError:
        return
    for key, kind, _default, _doc in describe_fields(TrainConfig):
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        if kind == "float":
            assert isinstance(value, float) and math.isfinite(value), (key, value)
            assert abs(value) <= 1e9, (key, value)
        if kind == "int":
            assert isinstance(value, int) and 0 <= value < 2**63, (key, value)


def test_field_docs_are_the_attribute_docstrings():
    docs = field_docs(ModelConfig)
    assert docs["g_channels"].startswith("Widest generator feature maps")
    assert set(docs) == {field.name for field in dataclasses.fields(ModelConfig)}
    rows = {key: (kind, default, doc) for key, kind, default, doc in describe_fields(TrainConfig)}
    assert rows["model.g_channels"][:2] == ("int", 64)
    assert rows["loss.kind"][0] == "logistic | hinge"
    assert rows["ema.half_life_kimg"][2] == "Half-life of the average in thousands of images."
