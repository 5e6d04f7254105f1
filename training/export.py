"""ONNX export of the shrunk network, with scaling in the graph, checked against torch.

The graph takes the *kept* features in engineering units (float32 [N, k]) and returns the
estimate in the target's unit ([N, 1]). Input standardization is folded into the first layer
and output de-standardization into the last, so the graph is a plain MatMul/Add chain whose
removed neurons and inputs are physically gone. A weight matrix is stored sparsely (values and
linear indices) when that serializes smaller than dense. Sparse weights are ``Constant`` nodes
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

from service.features import FloatArray
from training.errors import SoftSensorError
from training.network import MaskedMLP
from training.scaling import Standardizer
from training.shrink import ShrunkNetwork

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


def fold_scaling(
    net: ShrunkNetwork, x_scaler: Standardizer, y_scaler: Standardizer
) -> list[_Layer]:
    """Fold z = (x - mean) / scale into layer 0 and y = z * scale + mean into the last layer."""
    mean = x_scaler.mean_[net.inputs_kept]
    scale = x_scaler.scale_[net.inputs_kept]
    layers = [_Layer(w.copy(), b.copy()) for w, b in zip(net.weights, net.biases, strict=True)]
    first = layers[0]
    w0 = first.weight / scale[None, :]
    layers[0] = _Layer(w0, first.bias - w0 @ mean)
    last = layers[-1]
    y_scale, y_mean = float(y_scaler.scale_[0]), float(y_scaler.mean_[0])
    layers[-1] = _Layer(last.weight * y_scale, last.bias * y_scale + y_mean)
    return layers


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


def build_graph(
    layers: list[_Layer], activation: str, n_inputs: int, *, sparse: bool, name: str
) -> tuple[onnx.ModelProto, list[str]]:
    """MatMul + Add per layer, activation between; returns the model and its sparse weights."""
    nodes: list[onnx.NodeProto] = []
    dense_inits: list[onnx.TensorProto] = []
    sparse_names: list[str] = []
    h = INPUT_NAME
    for i, layer in enumerate(layers):
        w_name, b_name = f"W{i}", f"b{i}"
        w = layer.weight.T.astype(np.float32)  # (in x out) for MatMul(h, W)
        dense_w = numpy_helper.from_array(w, w_name)
        sparse_w = _sparse_tensor(w_name, w) if sparse else None
        if sparse_w is not None and sparse_w.ByteSize() < dense_w.ByteSize():
            nodes.append(helper.make_node("Constant", [], [w_name], sparse_value=sparse_w))
            sparse_names.append(w_name)
        else:
            dense_inits.append(dense_w)
        dense_inits.append(numpy_helper.from_array(layer.bias.astype(np.float32), b_name))
        last = i == len(layers) - 1
        z = OUTPUT_NAME if last else f"z{i}"
        nodes.append(helper.make_node("MatMul", [h, w_name], [f"m{i}"]))
        nodes.append(helper.make_node("Add", [f"m{i}", b_name], [z]))
        if not last:
            act_nodes, consts = _activation_nodes(activation, z, f"h{i}")
            nodes += act_nodes
            dense_inits += consts
            h = f"h{i}"
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", n_inputs])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 1])],
        initializer=dense_inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="softsensor"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model, sparse_names


def run_onnx(model_bytes: bytes, x: FloatArray) -> FloatArray:
    """Score rows with onnxruntime (one thread: the same engine the service uses)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    out = session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(x, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float64).ravel()


def _dense_architecture(model: MaskedMLP) -> ShrunkNetwork:
    """The unpruned shape (every neuron and input) with the trained weights, for sizing."""
    layers = model.masked_layers()
    weights = [(layer.weight * layer.mask).detach().double().numpy() for layer in layers]
    biases = [layer.bias.detach().double().numpy() for layer in layers]
    n_in = layers[0].in_features
    hidden = [list(range(layer.out_features)) for layer in layers[:-1]]
    return ShrunkNetwork(weights, biases, model.config.activation, list(range(n_in)), hidden)


def export_onnx(
    model: MaskedMLP,
    net: ShrunkNetwork,
    x_scaler: Standardizer,
    y_scaler: Standardizer,
    check_rows: FloatArray,
    reference: FloatArray,
    tolerance: float,
    name: str = "softsensor",
) -> ExportedModel:
    """Export and verify: onnxruntime on ``check_rows`` (all features, raw units) must match
    ``reference`` (the torch estimate) within ``tolerance``, or nothing is returned.
    """
    if not net.inputs_kept or any(len(k) == 0 for k in net.hidden_kept):
        raise ExportError(
            "the pruned network no longer connects any input to the output: it would be a "
            "constant; retrain with a lower tau or a minimum density"
        )
    layers = fold_scaling(net, x_scaler, y_scaler)
    graph, sparse_names = build_graph(
        layers, net.activation, len(net.inputs_kept), sparse=True, name=name
    )
    model_bytes = graph.SerializeToString()
    dense_net = _dense_architecture(model)
    dense_graph, _ = build_graph(
        fold_scaling(dense_net, x_scaler, y_scaler),
        dense_net.activation,
        len(dense_net.inputs_kept),
        sparse=False,
        name=name,
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
