"""ONNX export of the shrunk network, with scaling in the graph, checked against torch.

The graph takes the *kept* features in engineering units (float32 [N, k]) and returns the
estimate in the target's unit ([N, 1]). Input standardization is folded into the first layer
of each path (hidden chain and linear path) and output de-standardization into their last, so
the graph is a plain MatMul/Add chain whose removed neurons and inputs are physically gone;
the target transform's inverse (Exp, or Sigmoid and a scale) follows the sum of the paths.
An ensemble arrives here already merged into one network (``training.ensemble``).
A weight matrix is stored sparsely (values and linear indices) when that serializes smaller
than dense. Sparse weights are ``Constant`` nodes
with a ``sparse_value``: ONNX's type system gives a graph-level ``sparse_initializer`` the type
sparse_tensor, which MatMul does not accept, so such a graph fails
``onnx.checker.check_model(full_check=True)``; a sparse Constant yields a dense tensor and passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from service.contracts.arrays import FloatArray
from training.errors import SoftSensorError
from training.scaling import Standardizer
from training.shrink import ShrunkNetwork
from training.target import TargetTransform

OPSET = 17  # widely supported by onnxruntime builds on edge boxes
IR_VERSION = 8
INPUT_NAME = "features"
OUTPUT_NAME = "estimate"


class ExportError(SoftSensorError):
    """The network cannot be exported, or the exported graph disagrees with torch."""


@dataclass(frozen=True)
class ExportedModel:
    """The serialized graph and what the model card says about it."""

    onnx_bytes: bytes
    dense_onnx_bytes: int  # the original architecture exported dense, for comparison
    inputs_kept: list[int]
    sparse_initializers: list[str]
    max_parity_error: float


@dataclass(frozen=True)
class _Layer:
    weight: FloatArray  # (out x in), as torch stores it
    bias: FloatArray


@dataclass(frozen=True)
class _Folded:
    """The graph's layers in engineering units: the hidden chain (empty once pruning left a
    linear model) and the linear path, both ending in the transformed target's unit. Both
    read the centered input ``x - center``."""

    center: FloatArray
    chain: list[_Layer]
    linear: _Layer | None


def fold_scaling(net: ShrunkNetwork, x_scaler: Standardizer, y_scaler: Standardizer) -> _Folded:
    """Fold z = (x - mean) / scale into the first layer of each path, and
    t = out * scale + mean (the transformed target) into each path's output.

    The mean is subtracted by its own node rather than folded into the biases: a tray
    temperature near 80 degC with a spread of 0.1 would otherwise lose four digits of float32
    precision to cancellation between W x and W mean.
    """
    mean = x_scaler.mean_[net.inputs_kept]
    scale = x_scaler.scale_[net.inputs_kept]
    y_scale, y_mean = float(y_scaler.scale_[0]), float(y_scaler.mean_[0])

    def first(w: FloatArray, b: FloatArray) -> _Layer:
        return _Layer(w / scale[None, :], b.copy())

    chain = [_Layer(w.copy(), b.copy()) for w, b in zip(net.weights, net.biases, strict=True)]
    linear = None
    if net.linear is not None and net.linear_bias is not None:
        lin = first(net.linear, net.linear_bias)
        linear = _Layer(lin.weight * y_scale, lin.bias * y_scale)
    if not net.has_chain:  # only the chain's output bias is left: a constant
        constant = chain[-1].bias * y_scale + y_mean
        if linear is None:
            raise ExportError("the pruned network is a constant: no input reaches the output")
        return _Folded(mean, [], _Layer(linear.weight, linear.bias + constant))
    chain[0] = first(chain[0].weight, chain[0].bias)
    last = chain[-1]
    chain[-1] = _Layer(last.weight * y_scale, last.bias * y_scale + y_mean)
    return _Folded(mean, chain, linear)


def _sparse_tensor(name: str, matrix: np.ndarray) -> onnx.SparseTensorProto:
    flat = matrix.ravel()
    idx = np.flatnonzero(flat).astype(np.int64)
    values = numpy_helper.from_array(flat[idx].astype(np.float32), name)
    indices = numpy_helper.from_array(idx, f"{name}_indices")
    return helper.make_sparse_tensor(values, indices, list(matrix.shape))


def _activation_nodes(
    kind: str, x: str, out: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    simple = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid", "elu": "Elu"}
    if kind in simple:
        return [helper.make_node(simple[kind], [x], [out])], []
    if kind == "gelu":  # exact GELU, 0.5 x (1 + erf(x / sqrt 2)); Gelu is only in opset 20
        c = [
            numpy_helper.from_array(np.array(v, np.float32), f"{out}_c{i}")
            for i, v in enumerate((1 / math.sqrt(2), 1.0, 0.5))
        ]
        nodes = [
            helper.make_node("Mul", [x, c[0].name], [f"{out}_s"]),
            helper.make_node("Erf", [f"{out}_s"], [f"{out}_e"]),
            helper.make_node("Add", [f"{out}_e", c[1].name], [f"{out}_p"]),
            helper.make_node("Mul", [x, f"{out}_p"], [f"{out}_m"]),
            helper.make_node("Mul", [f"{out}_m", c[2].name], [out]),
        ]
        return nodes, c
    raise ExportError(f"activation {kind!r} has no ONNX export")


def _inverse_nodes(
    transform: TargetTransform, x: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The target transform's inverse, from the transformed estimate ``x`` to OUTPUT_NAME."""

    def const(name: str, value: float) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array([value], np.float32), name)

    if transform.kind == "log":  # y = exp(z) + low
        if transform.low == 0:
            return [helper.make_node("Exp", [x], [OUTPUT_NAME])], []
        return [
            helper.make_node("Exp", [x], ["exp"]),
            helper.make_node("Add", ["exp", "target_low"], [OUTPUT_NAME]),
        ], [const("target_low", transform.low)]
    if transform.kind == "logit":  # y = low + (high - low) sigmoid(z)
        nodes = [
            helper.make_node("Sigmoid", [x], ["fraction"]),
            helper.make_node(
                "Mul",
                ["fraction", "target_span"],
                [OUTPUT_NAME if transform.low == 0 else "scaled"],
            ),
        ]
        consts = [const("target_span", transform.high - transform.low)]
        if transform.low != 0:
            nodes.append(helper.make_node("Add", ["scaled", "target_low"], [OUTPUT_NAME]))
            consts.append(const("target_low", transform.low))
        return nodes, consts
    raise ExportError(f"no inverse needed for target transform {transform.kind!r}")


class _GraphBuilder:
    """Collects nodes and initializers; weights go sparse where that serializes smaller."""

    def __init__(self, sparse: bool) -> None:
        self.sparse = sparse
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.sparse_names: list[str] = []

    def affine(self, x: str, layer: _Layer, w_name: str, b_name: str, out: str) -> None:
        """out = x @ W + b, with W stored dense or sparse."""
        w = layer.weight.T.astype(np.float32)  # (in x out) for MatMul(h, W)
        dense_w = numpy_helper.from_array(w, w_name)
        sparse_w = _sparse_tensor(w_name, w) if self.sparse else None
        if sparse_w is not None and sparse_w.ByteSize() < dense_w.ByteSize():
            self.nodes.append(helper.make_node("Constant", [], [w_name], sparse_value=sparse_w))
            self.sparse_names.append(w_name)
        else:
            self.inits.append(dense_w)
        self.inits.append(numpy_helper.from_array(layer.bias.astype(np.float32), b_name))
        self.nodes.append(helper.make_node("MatMul", [x, w_name], [f"{out}_m"]))
        self.nodes.append(helper.make_node("Add", [f"{out}_m", b_name], [out]))


def build_graph(
    folded: _Folded,
    activation: str,
    n_inputs: int,
    *,
    sparse: bool,
    name: str,
    transform: TargetTransform | None = None,
) -> tuple[onnx.ModelProto, list[str]]:
    """MatMul + Add per layer, activation between, plus the linear path added at the output
    and the target transform's inverse; returns the model and its sparse weights."""
    transform = transform or TargetTransform()
    pre = OUTPUT_NAME if transform.kind == "none" else "transformed"
    both = bool(folded.chain) and folded.linear is not None
    g = _GraphBuilder(sparse)
    g.inits.append(numpy_helper.from_array(folded.center.astype(np.float32), "input_center"))
    g.nodes.append(helper.make_node("Sub", [INPUT_NAME, "input_center"], ["centered"]))
    h = "centered"
    for i, layer in enumerate(folded.chain):
        last = i == len(folded.chain) - 1
        z = ("chain_out" if both else pre) if last else f"z{i}"
        g.affine(h, layer, f"W{i}", f"b{i}", z)
        if not last:
            act_nodes, consts = _activation_nodes(activation, z, f"h{i}")
            g.nodes += act_nodes
            g.inits += consts
            h = f"h{i}"
    if folded.linear is not None:
        g.affine("centered", folded.linear, "W_linear", "b_linear", "linear_out" if both else pre)
    if both:
        g.nodes.append(helper.make_node("Add", ["chain_out", "linear_out"], [pre]))
    if transform.kind != "none":
        nodes, consts = _inverse_nodes(transform, pre)
        g.nodes += nodes
        g.inits += consts
    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", n_inputs])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 1])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="softsensor"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model, g.sparse_names


def run_onnx(model_bytes: bytes, x: FloatArray) -> FloatArray:
    """Score rows with onnxruntime (one thread: the same engine the service uses)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    out = session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(x, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float64).ravel()


def export_onnx(
    net: ShrunkNetwork,
    dense: ShrunkNetwork,
    x_scaler: Standardizer,
    y_scaler: Standardizer,
    check_rows: FloatArray,
    reference: FloatArray,
    tolerance: float,
    name: str = "softsensor",
    transform: TargetTransform | None = None,
) -> ExportedModel:
    """Export ``net`` and verify: onnxruntime on ``check_rows`` (all features, raw units) must
    match ``reference`` (the torch estimate) within ``tolerance``, or nothing is returned.
    ``dense`` is the same model unpruned, exported only to report what pruning saved.
    """
    if not net.inputs_kept:
        raise ExportError(
            "the pruned network no longer connects any input to the output: it would be a "
            "constant; retrain with a lower tau or a minimum density"
        )
    folded = fold_scaling(net, x_scaler, y_scaler)
    graph, sparse_names = build_graph(
        folded, net.activation, len(net.inputs_kept), sparse=True, name=name, transform=transform
    )
    model_bytes = graph.SerializeToString()
    dense_graph, _ = build_graph(
        fold_scaling(dense, x_scaler, y_scaler),
        dense.activation,
        len(dense.inputs_kept),
        sparse=False,
        name=name,
        transform=transform,
    )
    estimate = run_onnx(model_bytes, np.asarray(check_rows)[:, net.inputs_kept])
    error = float(np.max(np.abs(estimate - np.asarray(reference).ravel())))
    if not np.all(np.isfinite(estimate)) or not error <= tolerance:
        raise ExportError(
            f"exported graph disagrees with torch: max abs difference {error:.3g} over "
            f"{len(estimate)} rows exceeds the tolerance {tolerance:.3g}; nothing written"
        )
    return ExportedModel(
        onnx_bytes=model_bytes,
        dense_onnx_bytes=len(dense_graph.SerializeToString()),
        inputs_kept=list(net.inputs_kept),
        sparse_initializers=sparse_names,
        max_parity_error=error,
    )
