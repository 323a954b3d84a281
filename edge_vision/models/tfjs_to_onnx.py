"""Convert a TensorFlow.js graph model (``model.json`` + weight shards) to ONNX.

Only the TF ops that the supported models use are implemented (see ``SUPPORTED_OPS``); any other
op raises :class:`UnsupportedOpError` naming the op and the node, so that a new model fails loudly
at conversion time instead of producing a wrong graph.

Layout: TF graphs are NHWC while ONNX convolutions are NCHW. Every TF tensor is tracked together
with the permutation in which its ONNX counterpart is stored (``onnx = tf.transpose(perm)``).
Convolutions, pooling and resizing ask for NCHW, element-wise ops keep whatever layout they get,
and TF ``Transpose`` ops only change the bookkeeping, so a Transpose is emitted only where an op
needs a layout its input lacks (nanodet: 6 instead of 161; centernet: 6 instead of 179).
onnxruntime 1.31 with its default optimisations removes the naive transposes as well (same
latency), but without them (other runtimes, lower optimisation levels) the naive graph is
1.2-1.6x slower; ``optimize_layout=False`` builds it, for comparison.
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = [
    "CONVERTER_VERSION",
    "SUPPORTED_OPS",
    "TfNode",
    "TfjsGraph",
    "UnsupportedOpError",
    "convert_tfjs_to_onnx",
    "graph_ops",
    "load_tfjs_graph",
    "save_onnx",
]

DEFAULT_OPSET = 17
CONVERTER_VERSION = 1
"""Bumped whenever the converter's output changes (cached ONNX files carry it in their name)."""


class UnsupportedOpError(NotImplementedError):
    """A TF op (or an attribute combination of it) the converter does not implement."""

    def __init__(self, op: str, node: str, detail: str = "") -> None:
        self.op = op
        self.node = node
        self.detail = detail
        msg = f"TF op {op!r} in node {node!r} is not supported by tfjs_to_onnx"
        super().__init__(f"{msg}: {detail}" if detail else msg)


_TF_DTYPES: dict[str, np.dtype] = {
    "DT_FLOAT": np.dtype(np.float32),
    "DT_DOUBLE": np.dtype(np.float64),
    "DT_HALF": np.dtype(np.float16),
    "DT_INT32": np.dtype(np.int32),
    "DT_INT64": np.dtype(np.int64),
    "DT_UINT8": np.dtype(np.uint8),
    "DT_BOOL": np.dtype(np.bool_),
}
# Little-endian storage types of the weight shards.
_SHARD_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int32": np.dtype("<i4"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "bool": np.dtype("u1"),
}
_ONNX_DTYPES: dict[np.dtype, int] = {
    np.dtype(np.float32): onnx.TensorProto.FLOAT,
    np.dtype(np.float64): onnx.TensorProto.DOUBLE,
    np.dtype(np.float16): onnx.TensorProto.FLOAT16,
    np.dtype(np.int32): onnx.TensorProto.INT32,
    np.dtype(np.int64): onnx.TensorProto.INT64,
    np.dtype(np.uint8): onnx.TensorProto.UINT8,
    np.dtype(np.bool_): onnx.TensorProto.BOOL,
}


# --------------------------------------------------------------------------------------------
# Reading model.json
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TfNode:
    """One GraphDef node as stored in ``modelTopology.node`` (attributes kept as raw JSON)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attr: Mapping[str, Any] = field(default_factory=dict)

    def _get(self, key: str) -> Mapping[str, Any] | None:
        value = self.attr.get(key)
        return value if isinstance(value, Mapping) else None

    def attr_int(self, key: str, default: int) -> int:
        value = self._get(key)
        return int(value["i"]) if value and "i" in value else default

    def attr_float(self, key: str, default: float) -> float:
        value = self._get(key)
        return float(value["f"]) if value and "f" in value else default

    def attr_bool(self, key: str, default: bool) -> bool:
        value = self._get(key)
        return bool(value["b"]) if value and "b" in value else default

    def attr_str(self, key: str, default: str) -> str:
        value = self._get(key)
        # GraphDef-as-JSON stores bytes attributes base64-encoded.
        return base64.b64decode(value["s"]).decode() if value and "s" in value else default

    def attr_ints(self, key: str) -> list[int]:
        value = self._get(key)
        return [int(v) for v in value.get("list", {}).get("i", [])] if value else []

    def attr_strs(self, key: str) -> list[str]:
        value = self._get(key)
        items = value.get("list", {}).get("s", []) if value else []
        return [base64.b64decode(v).decode() for v in items]

    def attr_dtype(self, key: str) -> np.dtype | None:
        value = self._get(key)
        if not value or "type" not in value:
            return None
        if value["type"] not in _TF_DTYPES:
            raise UnsupportedOpError(self.op, self.name, f"dtype {value['type']}")
        return _TF_DTYPES[value["type"]]


@dataclass
class TfjsGraph:
    """A parsed TF.js graph model: topologically sorted nodes plus decoded constants."""

    nodes: list[TfNode]
    consts: dict[str, np.ndarray]
    input_shapes: dict[str, tuple[int, ...]]
    outputs: list[str]
    """Output tensor references (``node`` or ``node:k``), in signature order."""
    meta: dict[str, str] = field(default_factory=dict)


def _decode_weights(manifest: Sequence[Mapping[str, Any]], base_dir: Path) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        # A group's shards are one byte stream split into files.
        buf = b"".join((base_dir / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = tuple(int(d) for d in spec["shape"])
            count = math.prod(shape)
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else spec["dtype"]
            if stored not in _SHARD_DTYPES:
                raise ValueError(f"weight {spec['name']!r}: unsupported storage dtype {stored!r}")
            raw = np.frombuffer(buf, _SHARD_DTYPES[stored], count, offset)
            offset += count * _SHARD_DTYPES[stored].itemsize
            target = _SHARD_DTYPES.get(spec["dtype"], np.dtype(np.float32))
            if quant and stored in ("uint8", "uint16"):
                # Affine quantisation: value = min + scale * q.
                values = quant["min"] + quant["scale"] * raw.astype(np.float32)
                if spec["dtype"] == "int32":
                    values = np.round(values)
            else:
                values = raw
            if spec["dtype"] == "bool":
                values = raw.astype(np.bool_)
            else:
                values = np.asarray(values).astype(target.newbyteorder("="))
            weights[spec["name"]] = values.reshape(shape)
        if offset != len(buf):
            raise ValueError(f"weight shards {group['paths']} hold {len(buf)} bytes, used {offset}")
    return weights


def _inline_tensor(node: TfNode) -> np.ndarray:
    """A Const whose value is stored in the topology rather than in the weight shards."""
    tensor = node.attr.get("value", {}).get("tensor", {})
    dtype = _TF_DTYPES.get(tensor.get("dtype", ""))
    if dtype is None:
        raise UnsupportedOpError("Const", node.name, f"inline tensor dtype {tensor.get('dtype')}")
    shape = tuple(int(d.get("size", 0)) for d in tensor.get("tensorShape", {}).get("dim", []))
    for key in ("floatVal", "intVal", "int64Val", "boolVal", "doubleVal"):
        if key in tensor:
            values = np.array(tensor[key]).astype(dtype)
            # TensorProto repeats the last value to fill the shape.
            return np.resize(values, shape) if shape else values.reshape(())
    return np.zeros(shape, dtype)


def _toposort(nodes: list[TfNode]) -> list[TfNode]:
    by_name = {n.name: n for n in nodes}
    order: list[TfNode] = []
    state: dict[str, int] = {}
    for root in nodes:
        stack: list[tuple[TfNode, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                state[node.name] = 2
                order.append(node)
                continue
            if state.get(node.name):
                continue
            state[node.name] = 1
            stack.append((node, True))
            for ref in node.inputs:
                dep = by_name.get(_node_of(ref))
                if dep is None:
                    raise ValueError(f"node {node.name!r} reads missing tensor {ref!r}")
                if state.get(dep.name) == 1:
                    raise ValueError(f"cycle through node {dep.name!r}")
                if not state.get(dep.name):
                    stack.append((dep, False))
    return order


def _node_of(ref: str) -> str:
    return ref.split(":", 1)[0]


def _canonical(ref: str) -> str:
    """``node:0`` and ``node`` name the same tensor."""
    return ref[:-2] if ref.endswith(":0") else ref


def load_tfjs_graph(model_json: str | Path) -> TfjsGraph:
    """Parse a TF.js ``graph-model`` and decode all of its weights to numpy."""
    path = Path(model_json)
    doc = json.loads(path.read_text())
    if doc.get("format", "graph-model") != "graph-model":
        raise ValueError(f"{path}: not a TF.js graph model (format={doc.get('format')!r})")
    topology = doc["modelTopology"]
    if topology.get("library", {}).get("function"):
        raise UnsupportedOpError("<function library>", path.name, "control flow functions")
    weights = _decode_weights(doc.get("weightsManifest", []), path.parent)
    nodes: list[TfNode] = []
    consts: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for raw in topology["node"]:
        # Control dependencies (^name) carry no data and are irrelevant without side effects.
        inputs = tuple(i for i in raw.get("input", []) if not i.startswith("^"))
        node = TfNode(raw["name"], raw["op"], inputs, raw.get("attr", {}))
        nodes.append(node)
        if node.op == "Const":
            value = weights[node.name] if node.name in weights else _inline_tensor(node)
            dtype = node.attr_dtype("dtype")
            # TF.js stores int64 constants as int32: restore the declared type.
            consts[node.name] = value.astype(dtype) if dtype is not None else value
        elif node.op == "Placeholder":
            dims = node.attr.get("shape", {}).get("shape", {}).get("dim", [])
            shapes[node.name] = tuple(int(d.get("size", -1)) for d in dims)
    signature = doc.get("signature", {})
    outputs = [_canonical(o["name"]) for o in signature.get("outputs", {}).values()]
    if not outputs:
        used = {_node_of(i) for n in nodes for i in n.inputs}
        outputs = [n.name for n in nodes if n.name not in used and n.op != "Const"]
    for spec in signature.get("inputs", {}).values():
        dims = spec.get("tensorShape", {}).get("dim", [])
        shapes[_node_of(spec["name"])] = tuple(int(d.get("size", -1)) for d in dims)
    meta = {k: str(doc[k]) for k in ("generatedBy", "convertedBy") if doc.get(k)}
    return TfjsGraph(_toposort(nodes), consts, shapes, outputs, meta)


def graph_ops(graph: TfjsGraph) -> Counter[str]:
    """How often each op occurs (for checking a new model against ``SUPPORTED_OPS``)."""
    return Counter(n.op for n in graph.nodes)


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------

Perm = tuple[int, ...]
_NCHW: Perm = (0, 3, 1, 2)  # the ONNX layout of a logical NHWC tensor


def _identity(rank: int) -> Perm:
    return tuple(range(rank))


def _inverse(perm: Sequence[int]) -> Perm:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


@dataclass
class _Value:
    """A TF tensor during conversion: a constant, or an ONNX tensor stored in ``perm`` order."""

    shape: tuple[int, ...]
    dtype: np.dtype
    const: np.ndarray | None = None
    name: str = ""
    perm: Perm = ()

    @property
    def rank(self) -> int:
        return len(self.shape)


def _const(value: np.ndarray) -> _Value:
    value = np.asarray(value)
    return _Value(tuple(value.shape), value.dtype, const=value)


class _Builder:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self, optimize_layout: bool) -> None:
        self.optimize_layout = optimize_layout
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._layouts: dict[tuple[str, Perm], str] = {}

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            name = f"{base}_{k}"
            k += 1
        self._names.add(name)
        return name

    def initializer(self, value: np.ndarray, base: str) -> str:
        name = self.unique(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(
        self, op: str, inputs: Sequence[str], base: str, n_out: int = 1, **attrs: Any
    ) -> list[str]:
        outs = [self.unique(base if i == 0 else f"{base}:{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=outs[0], **attrs))
        return outs

    def tensor(self, value: _Value, perm: Perm | None = None, base: str = "const") -> str:
        """The ONNX name of ``value`` stored in ``perm`` order (identity when None)."""
        want = perm if perm is not None else _identity(value.rank)
        if value.const is not None:
            return self.initializer(np.transpose(value.const, want) if want else value.const, base)
        if value.perm == want:
            return value.name
        key = (value.name, want)
        if key not in self._layouts:
            # onnx = logical.transpose(have); we need logical.transpose(want).
            rel = tuple(value.perm.index(w) for w in want)
            (moved,) = self.node("Transpose", [value.name], f"{value.name}/to", perm=rel)
            self._layouts[key] = moved
        return self._layouts[key]

    def dynamic(
        self, name: str, shape: Sequence[int], dtype: np.dtype, perm: Perm | None = None
    ) -> _Value:
        shape = tuple(int(s) for s in shape)
        return _Value(shape, np.dtype(dtype), name=name, perm=perm or _identity(len(shape)))


_Converter = Callable[[_Builder, TfNode, list[_Value]], list[_Value]]
_CONVERTERS: dict[str, _Converter] = {}
# Numpy evaluation of ops whose inputs are all constant (shape arithmetic in onnx-tf graphs).
_FOLDERS: dict[str, Callable[[TfNode, list[np.ndarray]], np.ndarray]] = {}


def _converter(*ops: str) -> Callable[[_Converter], _Converter]:
    def register(fn: _Converter) -> _Converter:
        for op in ops:
            _CONVERTERS[op] = fn
        return fn

    return register


def _need_const(node: TfNode, value: _Value, what: str) -> np.ndarray:
    if value.const is None:
        raise UnsupportedOpError(node.op, node.name, f"{what} must be a constant")
    return value.const


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# --- element-wise ---------------------------------------------------------------------------


def _unary(b: _Builder, node: TfNode, x: _Value, op: str, **attrs: Any) -> _Value:
    name = b.node(op, [b.tensor(x, x.perm)], node.name, **attrs)[0]
    return b.dynamic(name, x.shape, x.dtype, x.perm)


@_converter("Identity")
def _cv_identity(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    return [ins[0]]


@_converter("Sigmoid", "Relu")
def _cv_activation(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    return [_unary(b, node, ins[0], node.op)]


@_converter("LeakyRelu")
def _cv_leaky(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    return [_unary(b, node, ins[0], "LeakyRelu", alpha=node.attr_float("alpha", 0.2))]


def _clip(b: _Builder, name: str, x: str, lo: float, hi: float, dtype: np.dtype) -> str:
    bounds = [
        b.initializer(np.array(v, dtype), f"{name}/{tag}") for v, tag in ((lo, "min"), (hi, "max"))
    ]
    return b.node("Clip", [x, *bounds], name)[0]


@_converter("Relu6")
def _cv_relu6(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x = ins[0]
    return [
        b.dynamic(
            _clip(b, node.name, b.tensor(x, x.perm), 0.0, 6.0, x.dtype), x.shape, x.dtype, x.perm
        )
    ]


@_converter("Cast")
def _cv_cast(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    dst = node.attr_dtype("DstT")
    if dst is None:
        raise UnsupportedOpError(node.op, node.name, "missing DstT")
    x = ins[0]
    name = b.node("Cast", [b.tensor(x, x.perm)], node.name, to=_ONNX_DTYPES[dst])[0]
    return [b.dynamic(name, x.shape, dst, x.perm)]


def _broadcast_shape(node: TfNode, a: Sequence[int], c: Sequence[int]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(tuple(a), tuple(c)))
    except ValueError as exc:
        raise ValueError(f"{node.name}: shapes {a} and {c} do not broadcast") from exc


def _binary_operands(b: _Builder, node: TfNode, x: _Value, y: _Value) -> tuple[str, str, Perm]:
    """Names of both operands in one shared layout (the dynamic operands' when possible)."""
    shape = _broadcast_shape(node, x.shape, y.shape)
    dyn = [v for v in (x, y) if v.const is None]
    perm = _identity(len(shape))
    if dyn and all(v.rank == len(shape) and v.perm == dyn[0].perm for v in dyn):
        perm = dyn[0].perm
    names = []
    for v in (x, y):
        if v.const is not None:
            # Give a constant the full rank so that it can be permuted with the other operand.
            full = v.const.reshape((1,) * (len(shape) - v.rank) + v.const.shape)
            names.append(b.tensor(_const(full), perm, f"{node.name}/c"))
        elif v.rank == len(shape):
            names.append(b.tensor(v, perm))
        else:
            names.append(b.tensor(v))  # lower rank broadcasts only in identity layout
    return names[0], names[1], perm


_BINARY_ONNX = {"Add": "Add", "AddV2": "Add", "Sub": "Sub", "Mul": "Mul", "Equal": "Equal"}


@_converter("Add", "AddV2", "Sub", "Mul", "Equal")
def _cv_binary(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x, y = ins
    xs, ys, perm = _binary_operands(b, node, x, y)
    name = b.node(_BINARY_ONNX[node.op], [xs, ys], node.name)[0]
    dtype = np.dtype(np.bool_) if node.op == "Equal" else x.dtype
    return [b.dynamic(name, _broadcast_shape(node, x.shape, y.shape), dtype, perm)]


@_converter("FloorDiv", "FloorMod")
def _cv_floor(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x, y = ins
    xs, ys, perm = _binary_operands(b, node, x, y)
    shape = _broadcast_shape(node, x.shape, y.shape)
    if np.issubdtype(x.dtype, np.integer):
        # ONNX integer Mod with fmod=0 takes the divisor's sign, i.e. TF's floor semantics;
        # (x - mod) is then an exact multiple of y, so integer Div is exact too.
        mod = b.node("Mod", [xs, ys], f"{node.name}/mod", fmod=0)[0]
        if node.op == "FloorMod":
            out = b.node("Identity", [mod], node.name)[0]
        else:
            diff = b.node("Sub", [xs, mod], f"{node.name}/sub")[0]
            out = b.node("Div", [diff, ys], node.name)[0]
    else:
        div = b.node("Div", [xs, ys], f"{node.name}/div")[0]
        if node.op == "FloorDiv":
            out = b.node("Floor", [div], node.name)[0]
        else:
            floor = b.node("Floor", [div], f"{node.name}/floor")[0]
            prod = b.node("Mul", [floor, ys], f"{node.name}/mul")[0]
            out = b.node("Sub", [xs, prod], node.name)[0]
    return [b.dynamic(out, shape, x.dtype, perm)]


# --- convolution and pooling ----------------------------------------------------------------


def _tf_pads(
    node: TfNode,
    size: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> tuple[list[int], list[int]]:
    """Begin and end padding of the spatial dims for TF's SAME/VALID padding."""
    padding = node.attr_str("padding", "VALID")
    if padding == "VALID":
        return [0] * len(size), [0] * len(size)
    if padding != "SAME":
        raise UnsupportedOpError(node.op, node.name, f"padding {padding}")
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        # TF puts the odd pixel at the end (ONNX calls this SAME_UPPER).
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin, end


def _spatial_out(n: int, k: int, s: int, d: int, pb: int, pe: int) -> int:
    return (n + pb + pe - d * (k - 1) - 1) // s + 1


def _nhwc_check(node: TfNode) -> None:
    fmt = node.attr_str("data_format", "NHWC")
    if fmt != "NHWC":
        raise UnsupportedOpError(node.op, node.name, f"data_format {fmt}")


_FUSED_ACTIVATIONS = {"Relu", "Relu6", "LeakyRelu"}


@_converter("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
def _cv_conv(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    _nhwc_check(node)
    x, w = ins[0], ins[1]
    kernel = _need_const(node, w, "the filter")
    kh, kw, cin, cout = kernel.shape
    n, h, wid, c = x.shape
    depthwise = "Depthwise" in node.op
    if depthwise:
        # TF output channel c*mult+m <-> ONNX group c, member m: same order.
        weight = kernel.transpose(2, 3, 0, 1).reshape(cin * cout, 1, kh, kw)
        group, channels = cin, cin * cout
    else:
        if c != cin:
            raise UnsupportedOpError(node.op, node.name, "grouped Conv2D")
        weight = kernel.transpose(3, 2, 0, 1)
        group, channels = 1, cout
    strides = node.attr_ints("strides") or [1, 1, 1, 1]
    dilations = node.attr_ints("dilations") or [1, 1, 1, 1]
    sh, sw, dh, dw = strides[1], strides[2], dilations[1], dilations[2]
    begin, end = _tf_pads(node, (h, wid), (kh, kw), (sh, sw), (dh, dw))
    inputs = [b.tensor(x, _NCHW), b.initializer(weight.astype(np.float32), f"{node.name}/W")]

    activations: list[str] = []
    if node.op.startswith(("_Fused", "Fused")):
        fused = node.attr_strs("fused_ops")
        if not fused or fused[0] != "BiasAdd" or node.attr_int("num_args", 1) != 1:
            raise UnsupportedOpError(node.op, node.name, f"fused_ops {fused}")
        bias = _need_const(node, ins[2], "the bias")
        inputs.append(b.initializer(bias.astype(np.float32).reshape(-1), f"{node.name}/B"))
        activations = fused[1:]
        if len(activations) > 1 or not set(activations) <= _FUSED_ACTIVATIONS:
            raise UnsupportedOpError(node.op, node.name, f"fused_ops {fused}")

    out = b.node(
        "Conv",
        inputs,
        f"{node.name}/conv" if activations else node.name,
        kernel_shape=[kh, kw],
        strides=[sh, sw],
        dilations=[dh, dw],
        pads=[*begin, *end],
        group=group,
    )[0]
    oh = _spatial_out(h, kh, sh, dh, begin[0], end[0])
    ow = _spatial_out(wid, kw, sw, dw, begin[1], end[1])
    for act in activations:
        if act == "Relu6":
            out = _clip(b, node.name, out, 0.0, 6.0, np.dtype(np.float32))
        elif act == "LeakyRelu":
            out = b.node(
                "LeakyRelu", [out], node.name, alpha=node.attr_float("leakyrelu_alpha", 0.2)
            )[0]
        else:
            out = b.node(act, [out], node.name)[0]
    return [b.dynamic(out, (n, oh, ow, channels), x.dtype, _NCHW)]


@_converter("MaxPool")
def _cv_maxpool(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    _nhwc_check(node)
    x = ins[0]
    n, h, w, c = x.shape
    ksize, strides = node.attr_ints("ksize"), node.attr_ints("strides")
    if ksize[0] != 1 or ksize[3] != 1 or strides[0] != 1 or strides[3] != 1:
        raise UnsupportedOpError(node.op, node.name, "pooling over batch or channels")
    kernel, stride = ksize[1:3], strides[1:3]
    # ONNX MaxPool ignores padded cells, like TF's SAME pooling.
    begin, end = _tf_pads(node, (h, w), kernel, stride, (1, 1))
    name = b.node(
        "MaxPool",
        [b.tensor(x, _NCHW)],
        node.name,
        kernel_shape=kernel,
        strides=stride,
        pads=[*begin, *end],
    )[0]
    oh = _spatial_out(h, kernel[0], stride[0], 1, begin[0], end[0])
    ow = _spatial_out(w, kernel[1], stride[1], 1, begin[1], end[1])
    return [b.dynamic(name, (n, oh, ow, c), x.dtype, _NCHW)]


@_converter("ResizeBilinear")
def _cv_resize(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x = ins[0]
    size = [int(v) for v in _need_const(node, ins[1], "the size")]
    if node.attr_bool("align_corners", False):
        mode = "align_corners"
    elif node.attr_bool("half_pixel_centers", False):
        mode = "half_pixel"
    else:
        mode = "asymmetric"  # TF1's legacy resize: src = dst * in / out
    n, _, _, c = x.shape
    sizes = b.initializer(np.array([n, c, *size], np.int64), f"{node.name}/sizes")
    name = b.node(
        "Resize",
        [b.tensor(x, _NCHW), "", "", sizes],
        node.name,
        mode="linear",
        coordinate_transformation_mode=mode,
    )[0]
    return [b.dynamic(name, (n, size[0], size[1], c), x.dtype, _NCHW)]


# --- shape and layout -----------------------------------------------------------------------


@_converter("Transpose")
def _cv_transpose(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x = ins[0]
    t = tuple(int(v) for v in _need_const(node, ins[1], "the permutation"))
    shape = tuple(x.shape[i] for i in t)
    if b.optimize_layout:
        # Same ONNX tensor, new bookkeeping: onnx = x.transpose(perm) = y.transpose(perm2).
        inv = _inverse(t)
        return [_Value(shape, x.dtype, name=x.name, perm=tuple(inv[p] for p in x.perm))]
    name = b.node("Transpose", [b.tensor(x)], node.name, perm=list(t))[0]
    return [b.dynamic(name, shape, x.dtype)]


@_converter("Pad", "PadV2")
def _cv_pad(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x = ins[0]
    paddings = _need_const(node, ins[1], "the paddings").astype(np.int64)
    value = (
        _need_const(node, ins[2], "the pad value") if node.op == "PadV2" else np.zeros((), x.dtype)
    )
    if node.attr_str("mode", "CONSTANT") != "CONSTANT":
        raise UnsupportedOpError(node.op, node.name, "non-constant padding mode")
    perm = x.perm
    pads = [int(paddings[p, 0]) for p in perm] + [int(paddings[p, 1]) for p in perm]
    inputs = [
        b.tensor(x, perm),
        b.initializer(np.array(pads, np.int64), f"{node.name}/pads"),
        b.initializer(np.asarray(value, x.dtype).reshape(()), f"{node.name}/value"),
    ]
    name = b.node("Pad", inputs, node.name, mode="constant")[0]
    shape = tuple(int(d + paddings[i].sum()) for i, d in enumerate(x.shape))
    return [b.dynamic(name, shape, x.dtype, perm)]


@_converter("ConcatV2")
def _cv_concat(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    parts, rank = ins[:-1], ins[0].rank
    axis = _axis(int(_need_const(node, ins[-1], "the axis")), rank)
    dyn = [v for v in parts if v.const is None]
    perm = dyn[0].perm if dyn and all(v.perm == dyn[0].perm for v in dyn) else _identity(rank)
    names = [b.tensor(v, perm, f"{node.name}/c") for v in parts]
    name = b.node("Concat", names, node.name, axis=perm.index(axis))[0]
    shape = list(parts[0].shape)
    shape[axis] = sum(v.shape[axis] for v in parts)
    return [b.dynamic(name, shape, parts[0].dtype, perm)]


@_converter("SplitV")
def _cv_splitv(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x = ins[0]
    sizes = [int(v) for v in _need_const(node, ins[1], "size_splits")]
    axis = _axis(int(_need_const(node, ins[2], "the axis")), x.rank)
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    split = b.initializer(np.array(sizes, np.int64), f"{node.name}/split")
    names = b.node(
        "Split", [b.tensor(x, x.perm), split], node.name, n_out=len(sizes), axis=x.perm.index(axis)
    )
    outs = []
    for name, size in zip(names, sizes, strict=True):
        shape = list(x.shape)
        shape[axis] = size
        outs.append(b.dynamic(name, shape, x.dtype, x.perm))
    return outs


def _resolve_shape(node: TfNode, total: int, shape: Sequence[int]) -> list[int]:
    dims = [int(d) for d in shape]
    if dims.count(-1) > 1:
        raise ValueError(f"{node.name}: more than one -1 in reshape target {dims}")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = total // known if known else 0
    if math.prod(dims) != total:
        raise ValueError(f"{node.name}: cannot reshape {total} elements to {dims}")
    return dims


@_converter("Reshape")
def _cv_reshape(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x = ins[0]
    dims = _resolve_shape(node, math.prod(x.shape), _need_const(node, ins[1], "the shape"))
    target = b.initializer(np.array(dims, np.int64), f"{node.name}/shape")
    name = b.node("Reshape", [b.tensor(x), target], node.name)[0]
    return [b.dynamic(name, dims, x.dtype)]


@_converter("ExpandDims")
def _cv_expand_dims(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x = ins[0]
    axis = _axis(int(np.asarray(_need_const(node, ins[1], "the axis")).reshape(())), x.rank + 1)
    axes = b.initializer(np.array([axis], np.int64), f"{node.name}/axes")
    name = b.node("Unsqueeze", [b.tensor(x), axes], node.name)[0]
    shape = list(x.shape)
    shape.insert(axis, 1)
    return [b.dynamic(name, shape, x.dtype)]


@_converter("Mean")
def _cv_mean(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x = ins[0]
    axes = sorted(
        {_axis(int(a), x.rank) for a in np.atleast_1d(_need_const(node, ins[1], "the axes"))}
    )
    keep = node.attr_bool("keep_dims", False)
    # Without keep_dims the remaining axes would need a new permutation: use the plain layout.
    perm = x.perm if keep else _identity(x.rank)
    onnx_axes = sorted(perm.index(a) for a in axes)
    (name,) = b.node(
        "ReduceMean", [b.tensor(x, perm)], node.name, axes=onnx_axes, keepdims=int(keep)
    )
    shape = (
        [1 if i in axes else d for i, d in enumerate(x.shape)]
        if keep
        else [d for i, d in enumerate(x.shape) if i not in axes]
    )
    return [b.dynamic(name, shape, x.dtype, perm if keep else None)]


@_converter("GatherV2")
def _cv_gather(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    params, indices = ins[0], ins[1]
    if node.attr_int("batch_dims", 0) != 0:
        raise UnsupportedOpError(node.op, node.name, "batch_dims != 0")
    axis = _axis(int(_need_const(node, ins[2], "the axis")), params.rank)
    name = b.node(
        "Gather",
        [b.tensor(params), b.tensor(indices, base=f"{node.name}/idx")],
        node.name,
        axis=axis,
    )[0]
    shape = params.shape[:axis] + indices.shape + params.shape[axis + 1 :]
    return [b.dynamic(name, shape, params.dtype)]


@_converter("StridedSlice")
def _cv_strided_slice(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x = ins[0]
    if node.attr_int("ellipsis_mask", 0) or node.attr_int("new_axis_mask", 0):
        raise UnsupportedOpError(node.op, node.name, "ellipsis_mask/new_axis_mask")
    begin, end, steps = (
        [int(v) for v in _need_const(node, v, what)]
        for v, what in zip(ins[1:4], ("begin", "end", "strides"), strict=True)
    )
    begin_mask, end_mask = node.attr_int("begin_mask", 0), node.attr_int("end_mask", 0)
    shrink = node.attr_int("shrink_axis_mask", 0)
    starts, stops, axes, strides, squeeze = [], [], [], [], []
    shape = list(x.shape)
    for i, step in enumerate(steps):
        dim = x.shape[i]
        if shrink & (1 << i):
            idx = _axis(begin[i], dim)
            start, stop, step = idx, idx + 1, 1
            squeeze.append(i)
        else:
            bound = slice(
                None if begin_mask & (1 << i) else begin[i],
                None if end_mask & (1 << i) else end[i],
                step,
            )
            start, stop, step = bound.indices(dim)
        shape[i] = len(range(start, stop, step))
        if step < 0 and stop < 0:
            stop = -(2**62)  # "before index 0": a plain -1 would mean the last element in ONNX
        starts.append(start)
        stops.append(stop)
        axes.append(i)
        strides.append(step)
    arrays = [np.array(v, np.int64) for v in (starts, stops, axes, strides)]
    names = [
        b.initializer(a, f"{node.name}/{tag}")
        for a, tag in zip(arrays, ("b", "e", "ax", "st"), strict=True)
    ]
    out = b.node("Slice", [b.tensor(x), *names], f"{node.name}/slice" if squeeze else node.name)[0]
    if squeeze:
        sq = b.initializer(np.array(squeeze, np.int64), f"{node.name}/squeeze")
        out = b.node("Squeeze", [out, sq], node.name)[0]
        shape = [d for i, d in enumerate(shape) if i not in squeeze]
    return [b.dynamic(out, shape, x.dtype)]


@_converter("TopKV2")
def _cv_topk(b: _Builder, node: TfNode, ins: list[_Value]) -> list[_Value]:
    x = ins[0]
    k = int(np.asarray(_need_const(node, ins[1], "k")).reshape(()))
    kname = b.initializer(np.array([k], np.int64), f"{node.name}/k")
    values, indices = b.node(
        "TopK", [b.tensor(x), kname], f"{node.name}/topk", n_out=2, axis=-1, largest=1, sorted=1
    )
    values = b.node("Identity", [values], node.name)[0]
    # TF's TopKV2 yields int32 indices; downstream integer ops expect that type.
    indices = b.node("Cast", [indices], f"{node.name}:1", to=onnx.TensorProto.INT32)[0]
    shape = (*x.shape[:-1], k)
    return [b.dynamic(values, shape, x.dtype), b.dynamic(indices, shape, np.dtype(np.int32))]


# --- constant folding -----------------------------------------------------------------------


def _fold_sparse_to_dense(node: TfNode, args: list[np.ndarray]) -> np.ndarray:
    indices, shape, values, default = (np.asarray(a) for a in args)
    if indices.ndim < 2:
        indices = indices.reshape(-1, 1)  # 0-D/1-D indices address a vector
    values = np.broadcast_to(values, (indices.shape[0],))
    out = np.full(
        tuple(int(s) for s in np.atleast_1d(shape)), default, np.result_type(values, default)
    )
    for row, value in zip(indices, values, strict=True):
        out[tuple(int(i) for i in row)] = value
    return out


def _fold_binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def fold(node: TfNode, args: list[np.ndarray]) -> np.ndarray:
        return np.asarray(fn(args[0], args[1])).astype(np.result_type(args[0], args[1]))

    return fold


_FOLDERS.update(
    {
        "SparseToDense": _fold_sparse_to_dense,
        "Add": _fold_binary(np.add),
        "AddV2": _fold_binary(np.add),
        "Sub": _fold_binary(np.subtract),
        "Mul": _fold_binary(np.multiply),
    }
)

SUPPORTED_OPS: frozenset[str] = frozenset({"Const", "Placeholder", *_CONVERTERS, *_FOLDERS})
"""Every op the converter handles (``SparseToDense`` only with constant inputs)."""


# --- driver ---------------------------------------------------------------------------------


def _onnx_name(ref: str) -> str:
    return ref.replace(":", "_")


def convert_tfjs_to_onnx(
    model_json: str | Path | TfjsGraph,
    *,
    opset: int = DEFAULT_OPSET,
    optimize_layout: bool = True,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    graph_name: str | None = None,
) -> onnx.ModelProto:
    """Convert a TF.js graph model to a checked ONNX model.

    Inputs keep their TF names and layouts; outputs are the signature outputs, named like the
    TF tensors without the ``:0`` suffix. ``input_shapes`` fixes dimensions the model leaves
    open (all shapes must be static for the layout bookkeeping).
    """
    if not 13 <= opset <= DEFAULT_OPSET:
        raise ValueError(f"opset {opset} outside the supported range 13..{DEFAULT_OPSET}")
    graph = model_json if isinstance(model_json, TfjsGraph) else load_tfjs_graph(model_json)
    unsupported = sorted({(n.op, n.name) for n in graph.nodes if n.op not in SUPPORTED_OPS})
    if unsupported:
        raise UnsupportedOpError(
            *unsupported[0], f"{len(unsupported)} unsupported node(s) in total"
        )

    b = _Builder(optimize_layout)
    values: dict[str, _Value] = {}
    graph_inputs: list[onnx.ValueInfoProto] = []
    for node in graph.nodes:
        if node.op == "Const":
            values[node.name] = _const(graph.consts[node.name])
            continue
        if node.op == "Placeholder":
            shape = (
                tuple(input_shapes[node.name])
                if input_shapes and node.name in input_shapes
                else None
            )
            shape = shape or graph.input_shapes.get(node.name, ())
            if not shape or any(int(d) < 0 for d in shape):
                raise ValueError(f"input {node.name!r} has unknown dims {shape}: pass input_shapes")
            dtype = node.attr_dtype("dtype") or np.dtype(np.float32)
            name = b.unique(node.name)
            graph_inputs.append(
                helper.make_tensor_value_info(name, _ONNX_DTYPES[dtype], list(shape))
            )
            values[node.name] = b.dynamic(name, shape, dtype)
            continue
        ins = [values[_canonical(ref)] for ref in node.inputs]
        if all(v.const is not None for v in ins) and node.op in _FOLDERS:
            values[node.name] = _const(_FOLDERS[node.op](node, [v.const for v in ins]))  # type: ignore[misc]
            continue
        if node.op not in _CONVERTERS:
            raise UnsupportedOpError(node.op, node.name, "only supported with constant inputs")
        outs = _CONVERTERS[node.op](b, node, ins)
        for i, out in enumerate(outs):
            if not b.optimize_layout and out.const is None and out.perm != _identity(out.rank):
                # The naive graph keeps every TF tensor in its TF layout.
                out = b.dynamic(b.tensor(out), out.shape, out.dtype)
            values[node.name if i == 0 else f"{node.name}:{i}"] = out

    graph_outputs: list[onnx.ValueInfoProto] = []
    for ref in graph.outputs:
        value = values[_canonical(ref)]
        src = b.tensor(value, base=f"{ref}/const")
        name = b.unique(_onnx_name(_canonical(ref)))
        b.nodes.append(helper.make_node("Identity", [src], [name], name=name))
        graph_outputs.append(
            helper.make_tensor_value_info(name, _ONNX_DTYPES[value.dtype], list(value.shape))
        )

    onnx_graph = helper.make_graph(
        b.nodes, graph_name or "tfjs_graph", graph_inputs, graph_outputs, initializer=b.initializers
    )
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="edge_vision.tfjs_to_onnx",
    )
    model.ir_version = 8  # opset 13..17 need IR >= 7/8; older runtimes reject newer IR versions
    for key, val in graph.meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=val))
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write ``model`` atomically (a reader never sees a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(path)
    return path
