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
