"""Read dlib's DNN serialization format into numpy arrays (no dlib, no C++).

Written from dlib's own serializers (davisking/dlib: `serialize.h`, `float_details.h`,
`cuda/tensor.h`, `dnn/core.h`, `dnn/layers.h`, `dnn/input.h`, `dnn/loss.h`); the byte format,
in short:

- Integers: one control byte (bit 0x80 = negative, low 4 bits = number of value bytes), then the
  absolute value little-endian. Zero is `01 00`.
- bool: the ASCII byte '1' or '0'. std::string: integer length, then the raw bytes.
- float/double: `float_details` = (int64 mantissa, int16 exponent) as two integers; the value is
  mantissa * 2**exponent (exponents 32000/32001/32002 mean +inf/-inf/nan).
- tensor: int version; num_samples, k, nr, nc; then the values: version 1 as one `float_details`
  each, version 2 as raw little-endian IEEE float32 (what dlib writes since 2016).
- alias_tensor (a view into a layer's `params`): int version 1, then num_samples, k, nr, nc.
- A network is nested templates, so the file is nested too: `add_loss_layer` writes (version,
  loss details, subnetwork); `add_layer` writes (version, *subnetwork*, layer details, three
  bools, x_grad, cached_output[, params_grad]); tags and skips write (version, subnetwork). Hence
  all wrapper versions come first (top to bottom), then the input layer, then every layer's
  details from the bottom up.
- The file does not record the topology (which tag an add_prev refers to), only each layer's own
  details: the topology is the C++ type. So, exactly like dlib, we declare the network type here
  (`FACE_RECOGNITION_RESNET_V1`) and check every layer we read against it.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from facegan.errors import FaceganError

# float_details' special exponents (dlib/float_details.h).
_EXPONENT_INF = 32000
_EXPONENT_NEG_INF = 32001
_EXPONENT_NAN = 32002


class DlibFormatError(FaceganError):
    """The file is not the dlib network we expect (wrong model file, truncated, or a newer format)."""


# ---------------------------------------------------------------------------------------------
# Primitive readers
# ---------------------------------------------------------------------------------------------


class DlibReader:
    """A cursor over the bytes of a dlib-serialized object, one `read_*` per dlib type."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.offset = 0

    def _take(self, count: int) -> bytes:
        if self.offset + count > len(self.payload):
            raise DlibFormatError(
                f"dlib file ends early: wanted {count} bytes at offset {self.offset} of {len(self.payload)}"
            )
        chunk = self.payload[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def read_int(self) -> int:
        """A dlib integer: control byte (0x80 = negative, 0x0F = byte count), then |value| little-endian."""
        control = self._take(1)[0]
        num_bytes = control & 0x0F
        if num_bytes > 8:
            raise DlibFormatError(f"bad integer control byte 0x{control:02x} at offset {self.offset - 1}")
        value = int.from_bytes(self._take(num_bytes), "little", signed=False)
        return -value if control & 0x80 else value

    def read_bool(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool byte {char!r} at offset {self.offset - 1}")
        return char == b"1"

    def read_string(self) -> str:
        length = self.read_int()
        return self._take(length).decode("latin-1")

    def read_float(self) -> float:
        """A dlib float/double: (mantissa, exponent) integers meaning mantissa * 2**exponent."""
        # dlib's deserializer tells the current binary format from the old ASCII one by bits 0x70
        # of the first byte (always 0 in a control byte); we only support the binary format.
        if self.payload[self.offset] & 0x70:
            raise DlibFormatError(f"old ASCII float format at offset {self.offset} is not supported")
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _EXPONENT_INF:
            return float("inf")
        if exponent == _EXPONENT_NEG_INF:
            return float("-inf")
        if exponent == _EXPONENT_NAN:
            return float("nan")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def read_tensor(self) -> np.ndarray:
        """A dlib tensor as float32 (num_samples, k, nr, nc)."""
        version = self.read_int()
        shape = tuple(self.read_int() for _ in range(4))
        count = int(np.prod(shape))
        if version == 2:
            # Raw little-endian IEEE floats: one memcpy, so parsing 22 MB takes milliseconds.
            values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        elif version == 1:
            values = np.array([self.read_float() for _ in range(count)], dtype=np.float32)
        else:
            raise DlibFormatError(f"unknown dlib tensor version {version} at offset {self.offset}")
        return values.reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """An alias_tensor is only a shape: how to view a slice of the layer's `params`."""
        version = self.read_int()
        if version != 1:
            raise DlibFormatError(f"unknown dlib alias_tensor version {version}")
        return tuple(self.read_int() for _ in range(4))  # type: ignore[return-value]

    def expect_string(self, *allowed: str) -> str:
        found = self.read_string()
        if found not in allowed:
            raise DlibFormatError(f"expected dlib record {' or '.join(allowed)!s}, found {found!r}")
        return found


# ---------------------------------------------------------------------------------------------
# Layer details (what each dlib layer class writes after its subnetwork)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DlibLayer:
    """One computational layer as read from the file: its dlib kind, settings and parameters."""

    kind: str  # "con", "fc", "affine", "relu", "max_pool", "avg_pool", "add_prev", "input_rgb_image_sized"
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _read_con(reader: DlibReader) -> DlibLayer:
    version = reader.expect_string("con_4", "con_5")
    params = reader.read_tensor().reshape(-1)
    num_filters = reader.read_int()
    settings = {
        "num_filters": num_filters,
        "nr": reader.read_int(),
        "nc": reader.read_int(),
        "stride_y": reader.read_int(),
        "stride_x": reader.read_int(),
        "padding_y": reader.read_int(),
        "padding_x": reader.read_int(),
    }
    filters_shape = reader.read_alias_tensor()  # (num_filters, k, nr, nc)
    biases_shape = reader.read_alias_tensor()  # (1, num_filters, 1, 1)
    for _ in range(4):  # learning-rate / weight-decay multipliers: training only
        reader.read_float()
    use_bias = reader.read_bool() if version == "con_5" else True
    num_weights = int(np.prod(filters_shape))
    # `params` is [filters | biases] back to back, filters row-major (out, in, kh, kw) like torch.
    arrays = {"weight": params[:num_weights].reshape(filters_shape)}
    if use_bias:
        arrays["bias"] = params[num_weights : num_weights + num_filters].copy()
        expected = num_weights + int(np.prod(biases_shape))
    else:
        expected = num_weights
    if params.size != expected:
        raise DlibFormatError(f"con_ has {params.size} parameters, its shapes need {expected}")
    return DlibLayer("con", settings, arrays)


def _read_fc(reader: DlibReader) -> DlibLayer:
    reader.expect_string("fc_2")
    num_outputs = reader.read_int()
    num_inputs = reader.read_int()
    params = reader.read_tensor().reshape(-1)
    weights_shape = reader.read_alias_tensor()  # (num_inputs, num_outputs)
    biases_shape = reader.read_alias_tensor()
    bias_mode = reader.read_int()  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    for _ in range(4):
        reader.read_float()
    num_weights = num_inputs * num_outputs
    # dlib computes output = input @ W with W (num_inputs, num_outputs); torch wants W.T.
    arrays = {"weight": params[:num_weights].reshape(num_inputs, num_outputs).T.copy()}
    if bias_mode == 0:
        arrays["bias"] = params[num_weights : num_weights + num_outputs].copy()
    settings = {"num_outputs": num_outputs, "num_inputs": num_inputs, "has_bias": bias_mode == 0,
                "weights_shape": weights_shape, "biases_shape": biases_shape}
    return DlibLayer("fc", settings, arrays)


def _read_affine(reader: DlibReader) -> DlibLayer:
    reader.expect_string("affine_")
    params = reader.read_tensor().reshape(-1)
    gamma_shape = reader.read_alias_tensor()
    beta_shape = reader.read_alias_tensor()
    mode = reader.read_int()  # CONV_MODE = 0 (one gamma/beta per channel), FC_MODE = 1
    size = int(np.prod(gamma_shape))
    if params.size != size + int(np.prod(beta_shape)):
        raise DlibFormatError("affine_ parameter count does not match its gamma/beta shapes")
    arrays = {"gamma": params[:size].copy(), "beta": params[size:].copy()}
    return DlibLayer("affine", {"mode": "conv" if mode == 0 else "fc", "shape": gamma_shape}, arrays)


def _read_pool(reader: DlibReader, name: str) -> DlibLayer:
    reader.expect_string(f"{name}_2")
    settings = {key: reader.read_int() for key in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}
    return DlibLayer(name, settings)


def _read_input_rgb_image_sized(reader: DlibReader) -> DlibLayer:
    reader.expect_string("input_rgb_image_sized")
    means = [reader.read_float() for _ in range(3)]  # avg_red, avg_green, avg_blue
    size = (reader.read_int(), reader.read_int())  # NR, NC
    return DlibLayer("input_rgb_image_sized", {"mean_rgb": means, "size": size})


def _read_loss_metric(reader: DlibReader) -> dict[str, float]:
    version = reader.expect_string("loss_metric_", "loss_metric_2")
    if version == "loss_metric_":
        return {"margin": 0.1, "distance_threshold": 0.75}  # values hard-coded in old dlib
    return {"margin": reader.read_float(), "distance_threshold": reader.read_float()}


def _read_relu(reader: DlibReader) -> DlibLayer:
    reader.expect_string("relu_")  # no parameters
    return DlibLayer("relu")


def _read_add_prev(reader: DlibReader) -> DlibLayer:
    reader.expect_string("add_prev_")  # no parameters; which tag it adds is part of the C++ type
    return DlibLayer("add_prev")


_DETAIL_READERS: dict[str, Callable[[DlibReader], DlibLayer]] = {
    "con": _read_con,
    "fc": _read_fc,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": lambda reader: _read_pool(reader, "max_pool"),
    "avg_pool": lambda reader: _read_pool(reader, "avg_pool"),
    "add_prev": _read_add_prev,
}


# ---------------------------------------------------------------------------------------------
# The network type: dlib's `anet_type` from examples/dnn_face_recognition_ex.cpp
# ---------------------------------------------------------------------------------------------


class Node(NamedTuple):
    """One node of a dlib network type: an add_layer (with the settings its details must have),
    a tag or a skip (which carry no data in the file; their ids only document the topology)."""

    wrapper: str  # "layer", "tag" or "skip"
    kind: str = ""  # for layers: a key of _DETAIL_READERS
    expected: dict[str, Any] = {}  # for layers: settings the file must hold
    tag_id: int = 0  # for tags and skips


def _layer(kind: str, **expected: Any) -> Node:
    return Node("layer", kind, expected)


def _pool(kind: str, size: int, stride: int) -> Node:
    # Pools, like convs, default to no padding when strided (and size/2 otherwise).
    padding = 0 if stride != 1 else size // 2
    return _layer(kind, nr=size, nc=size, stride_y=stride, stride_x=stride, padding_y=padding, padding_x=padding)


def _conv(num_filters: int, size: int, stride: int) -> Node:
    # dlib's con_ default padding: 0 when strided, else size/2 ("same").
    padding = 0 if stride != 1 else size // 2
    return _layer("con", num_filters=num_filters, nr=size, nc=size, stride_y=stride, stride_x=stride,
                  padding_y=padding, padding_x=padding)


def _residual_block(num_filters: int, downsample: bool) -> list[Node]:
    """ares / ares_down, bottom to top.

    block = affine<con<N,3,3,1,1, relu<affine<con<N,3,3,s,s, SUBNET>>>>>
    ares      = relu<add_prev1<block<tag1<SUBNET>>>>
    ares_down = relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<block<tag1<SUBNET>>>>>>>
    """
    stride = 2 if downsample else 1
    # affine in CONV mode = one gamma/beta per channel, which DlibFaceRecognizer folds into the conv.
    block = [_conv(num_filters, 3, stride), _layer("affine", mode="conv"), _layer("relu"),
             _conv(num_filters, 3, 1), _layer("affine", mode="conv")]
    if not downsample:
        return [Node("tag", tag_id=1), *block, _layer("add_prev"), _layer("relu")]
    return [Node("tag", tag_id=1), *block, Node("tag", tag_id=2), Node("skip", tag_id=1), _pool("avg_pool", 2, 2),
            _layer("add_prev"), _layer("relu")]


def _face_recognition_resnet_v1() -> list[Node]:
    """Every node of dlib's face recogniser, bottom (input side) to top (descriptor side)."""
    nodes: list[Node] = [_conv(32, 7, 2), _layer("affine", mode="conv"), _layer("relu"), _pool("max_pool", 3, 2)]
    # alevel4 .. alevel0: (filters, downsample first?, number of blocks)
    for num_filters, downsample, num_blocks in ((32, False, 3), (64, True, 4), (128, True, 3), (256, True, 3), (256, True, 1)):
        for index in range(num_blocks):
            nodes += _residual_block(num_filters, downsample and index == 0)
    nodes.append(_pool("avg_pool", 0, 1))  # avg_pool_everything: a 0x0 window means the whole image
    nodes.append(_layer("fc", num_outputs=128, has_bias=False))  # fc_no_bias<128>
    return nodes


FACE_RECOGNITION_RESNET_V1: list[Node] = _face_recognition_resnet_v1()


@dataclasses.dataclass
class DlibNetwork:
    """A parsed dlib network: layers bottom to top (the input layer first) plus the loss settings."""

    layers: list[DlibLayer]
    loss: dict[str, float]
    num_bytes: int
    sha256: str


def parse_dlib_network(payload: bytes, nodes: list[Node] = FACE_RECOGNITION_RESNET_V1) -> DlibNetwork:
    """Parse a dlib `add_loss_layer<loss_metric, ...>` network whose type is `nodes` (bottom to top).

    Raises DlibFormatError unless every layer matches `nodes` and every byte is consumed.
    """
    reader = DlibReader(payload)
    if reader.read_int() != 1:
        raise DlibFormatError("unexpected add_loss_layer version (is this a dlib DNN file?)")
    loss = _read_loss_metric(reader)

    # Wrapper versions, outermost (top) first; add_layer's version decides its trailing fields.
    versions: list[int] = [0] * len(nodes)
    for index in reversed(range(len(nodes))):
        kind = nodes[index].wrapper
        # index 0 is the add_layer holding the input layer: a different class with versions 2..3.
        allowed = (2, 3) if index == 0 else {"layer": (1, 2), "tag": (1,), "skip": (1,)}[kind]
        versions[index] = reader.read_int()
        if versions[index] not in allowed:
            raise DlibFormatError(f"unexpected {kind} version {versions[index]} at offset {reader.offset}")

    layers = [_read_input_rgb_image_sized(reader)]
    for index, node in enumerate(nodes):
        if node.wrapper != "layer":
            continue  # tags and skips write nothing after their subnetwork
        kind, expected = node.kind, node.expected
        layer = _DETAIL_READERS[kind](reader)
        for key, value in expected.items():
            if layer.settings.get(key) != value:
                raise DlibFormatError(
                    f"layer {index} ({kind}): {key}={layer.settings.get(key)!r}, the network expects {value!r}"
                )
        # add_layer bookkeeping: three bools and cached tensors (empty in a saved model).
        for _ in range(3):
            reader.read_bool()
        reader.read_tensor()  # x_grad
        reader.read_tensor()  # cached_output
        if index == 0:
            reader.read_tensor()  # grad_final
            if versions[0] >= 3:
                reader.read_int()  # _sample_expansion_factor
        elif versions[index] == 2:
            reader.read_tensor()  # params_grad
        layers.append(layer)

    if reader.offset != len(payload):
        raise DlibFormatError(f"parsed {reader.offset} of {len(payload)} bytes: the file holds a different network")
    return DlibNetwork(layers, loss, reader.offset, hashlib.sha256(payload).hexdigest())


def face_recognizer_arrays(network: DlibNetwork) -> dict[str, np.ndarray]:
    """Name the face recogniser's parameters as `DlibFaceRecognizer` expects them.

    Keys: `input.mean_rgb` (3,), `stem.conv.{weight,bias}`, `stem.affine.{gamma,beta}`,
    `blocks.{i}.conv{1,2}.{weight,bias}`, `blocks.{i}.affine{1,2}.{gamma,beta}` for the 14 residual
    blocks in input-to-output order, and `fc.weight` (128, 256). All float32.
    """
    convs = [layer for layer in network.layers if layer.kind == "con"]
    affines = [layer for layer in network.layers if layer.kind == "affine"]
    fcs = [layer for layer in network.layers if layer.kind == "fc"]
    arrays: dict[str, np.ndarray] = {
        "input.mean_rgb": np.asarray(network.layers[0].settings["mean_rgb"], dtype=np.float32),
        "stem.conv.weight": convs[0].arrays["weight"],
        "stem.conv.bias": convs[0].arrays["bias"],
        "stem.affine.gamma": affines[0].arrays["gamma"],
        "stem.affine.beta": affines[0].arrays["beta"],
        "fc.weight": fcs[0].arrays["weight"],
    }
    for block in range((len(convs) - 1) // 2):
        for position in (1, 2):
            conv = convs[1 + 2 * block + position - 1]
            affine = affines[1 + 2 * block + position - 1]
            arrays[f"blocks.{block}.conv{position}.weight"] = conv.arrays["weight"]
            arrays[f"blocks.{block}.conv{position}.bias"] = conv.arrays["bias"]
            arrays[f"blocks.{block}.affine{position}.gamma"] = affine.arrays["gamma"]
            arrays[f"blocks.{block}.affine{position}.beta"] = affine.arrays["beta"]
    return {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in arrays.items()}


def read_face_recognizer_dat(path: str | Path) -> tuple[dict[str, np.ndarray], DlibNetwork]:
    """Parse `dlib_face_recognition_resnet_model_v1.dat` into named float32 arrays (and the raw parse)."""
    path = Path(path)
    try:
        payload = path.read_bytes()
    except OSError as error:
        raise DlibFormatError(f"cannot read dlib model {path}: {error.strerror}") from error
    network = parse_dlib_network(payload)
    return face_recognizer_arrays(network), network
