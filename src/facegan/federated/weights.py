"""The networks as one Flower ArrayRecord, and FedAvg over them.

G, D and (with EMA) G's moving average travel together under prefixed keys: `G.<name>`, `D.<name>`,
`G_ema.<name>`. Only floating-point tensors travel: integer buffers (BatchNorm's
`num_batches_tracked`) are counters, not learned values, and averaging them would turn them into
fractions, so each side keeps its own. The server averages these records with Flower's FedAvg
(`tests/federated/test_weights.py` checks it against a float64 weighted mean).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from facegan.errors import FaceganError

PREFIXES = ("G.", "D.", "G_ema.")


def networks_of(owner: Any) -> dict[str, nn.Module]:
    """The modules that travel: G and D, and G_ema where the owner keeps one."""
    networks = {"G": owner.G, "D": owner.D}
    if getattr(owner, "G_ema", None) is not None:
        networks["G_ema"] = owner.G_ema
    return networks


def to_arrays(owner: Any) -> dict[str, np.ndarray]:
    """Every floating-point tensor of the owner's networks as float32 numpy, keys prefixed by network."""
    arrays: dict[str, np.ndarray] = {}
    for prefix, module in networks_of(owner).items():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                arrays[f"{prefix}.{name}"] = tensor.detach().to("cpu", torch.float32).numpy().copy()
    return arrays


def load_arrays(owner: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy the travelling tensors into the owner's networks; keys or shapes that do not match are one FaceganError."""
    for prefix, module in networks_of(owner).items():
        state = module.state_dict()
        expected = {f"{prefix}.{name}" for name, tensor in state.items() if tensor.is_floating_point()}
        given = {key for key in arrays if key.startswith(prefix + ".")}
        if expected != given:
            missing = sorted(expected - given) or sorted(given - expected)
            raise FaceganError(f"the federated weights do not match this model ({missing[0]} differs); "
                               "every client must train the same architecture")
        with torch.no_grad():
            for name, tensor in state.items():
                if not tensor.is_floating_point():
                    continue
                value = np.asarray(arrays[f"{prefix}.{name}"])
                if tuple(value.shape) != tuple(tensor.shape):
                    raise FaceganError(f"the federated weight {prefix}.{name} has shape {value.shape}, the model {tuple(tensor.shape)}")
                tensor.copy_(torch.from_numpy(np.array(value, order="C")).to(tensor.dtype))  # np.array keeps 0-d shapes


def num_bytes(arrays: Mapping[str, np.ndarray]) -> int:
    """Bytes of tensor data in one update (what a round sends each way per client, before framing)."""
    return int(sum(np.asarray(value).nbytes for value in arrays.values()))
