"""The networks as one ArrayRecord: prefixed keys, float tensors only, and Flower's FedAvg = the weighted mean."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from facegan.errors import FaceganError
from facegan.federated.server import Networks
from facegan.federated.weights import load_arrays, num_bytes, to_arrays
from facegan.training.config import resolve_config


def networks(preset="default", seed=0):
    size = 32 if preset == "seed-dcgan" else 16
    config = resolve_config(preset, {"model": {"resolution": size, "channels": 1, "g_channels": 16, "d_channels": 16, "min_channels": 8},
                                     "seed": seed})
    return Networks(config)


def test_keys_are_prefixed_and_integer_buffers_stay_home():
    nets = networks("seed-dcgan")
    arrays = to_arrays(nets)
    assert {key.split(".")[0] for key in arrays} == {"G", "D"}  # no EMA in the DCGAN recipe
    assert not any("num_batches_tracked" in key for key in arrays)
    assert all(value.dtype == np.float32 for value in arrays.values())
    nets.G.dense_norm.num_batches_tracked.fill_(7)
    other = networks("seed-dcgan", seed=1)
    load_arrays(nets, to_arrays(other))
    assert int(nets.G.dense_norm.num_batches_tracked) == 7  # a counter is never overwritten or averaged
    for name, tensor in nets.G.state_dict().items():
        if tensor.is_floating_point():
            assert torch.equal(tensor, other.G.state_dict()[name])
    assert num_bytes(arrays) == sum(value.nbytes for value in arrays.values())


def test_ema_travels_and_scalars_keep_their_shape():
    nets = networks()
    arrays = to_arrays(nets)
    assert any(key.startswith("G_ema.") for key in arrays)
    scalars = [key for key, value in arrays.items() if value.ndim == 0]
    assert scalars  # gains are 0-d: they must come back 0-d
    load_arrays(nets, arrays)


def test_mismatched_weights_are_one_clear_error():
    nets = networks()
    arrays = to_arrays(nets)
    with pytest.raises(FaceganError, match="do not match"):
        load_arrays(nets, {key: value for key, value in arrays.items() if key != next(iter(arrays))})
    key = next(key for key, value in arrays.items() if value.ndim == 4)
    with pytest.raises(FaceganError, match="shape"):
        load_arrays(nets, {**arrays, key: arrays[key][:1]})


@settings(max_examples=15, deadline=None)
@given(weights=st.lists(st.integers(1, 500), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_flower_fedavg_is_the_image_weighted_mean(weights, seed):
    """Flower's FedAvg over facegan's records equals the float64 weighted mean (a numpy reference)."""
    from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAvg

    rng = np.random.default_rng(seed)
    shapes = {"G.a": (3, 2), "G.gain": (), "D.b": (4,)}
    updates = [{key: rng.normal(size=shape).astype(np.float32) for key, shape in shapes.items()} for _ in weights]
    replies = []
    for arrays, weight in zip(updates, weights):
        content = RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                              "metrics": MetricRecord({"num-examples": float(weight)})})
        replies.append(_Reply(content))
    aggregated, _ = FedAvg(weighted_by_key="num-examples").aggregate_train(1, replies)
    total = sum(weights)
    for key in shapes:
        expected = sum(np.float64(w) / total * arrays[key].astype(np.float64) for arrays, w in zip(updates, weights))
        np.testing.assert_allclose(aggregated[key].numpy(), expected, rtol=1e-5, atol=1e-6)
        assert aggregated[key].numpy().shape == shapes[key]


class _Reply:
    """What FedAvg.aggregate_train reads of a reply (a real Message needs a running Flower run)."""

    def __init__(self, content):
        self.content = content

    def has_content(self):
        return True

    def has_error(self):
        return False
