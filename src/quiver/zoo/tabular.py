"""A fraud-detection style tabular classifier, trained offline and deterministically with numpy.

The data mimics card-transaction fraud sets: 30 features (a time, 28 anonymised components, an amount),
about 2% positives whose signal lives in a few components. The model is an MLP exported to ONNX with two
outputs, class probabilities and the predicted label.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_FEATURES = 30


@dataclass(frozen=True, slots=True)
class FraudData:
    x: np.ndarray  # [n, 30] float32, standardised
    y: np.ndarray  # [n] int64, 1 = fraud


def make_fraud_data(n: int = 20000, seed: int = 0, positive_rate: float = 0.02) -> FraudData:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    # x: [n, 30]; fraud depends non-linearly on a few components and the amount.
    w = np.zeros(N_FEATURES, dtype=np.float32)
    w[[1, 3, 4, 10, 12, 14, 17]] = [1.2, -1.5, 1.0, -0.8, -1.3, -1.1, -0.9]
    score = x @ w + 0.8 * x[:, 29] * x[:, 14] + 0.5 * np.square(x[:, 4])
    threshold = np.quantile(score, 1.0 - positive_rate)
    noise = rng.standard_normal(n).astype(np.float32) * 0.5
    y = (score + noise > threshold).astype(np.int64)
    return FraudData(x, y)


def train_mlp(
    data: FraudData, hidden: tuple[int, ...] = (64, 32), epochs: int = 8, seed: int = 0, lr: float = 3e-3
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train a ReLU MLP with Adam on class-weighted cross-entropy. Returns [(W [in, out], b [out]), ...]."""
    rng = np.random.default_rng(seed)
    sizes = (N_FEATURES, *hidden, 2)
    params = [
        (
            (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32),
            np.zeros(b, dtype=np.float32),
        )
        for a, b in itertools.pairwise(sizes)
    ]
    m = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    v = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    class_weight = np.array([1.0, 0.5 / max(data.y.mean(), 1e-3)], dtype=np.float32)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(data.y))
        for start in range(0, len(order), 256):
            idx = order[start : start + 256]
            xb, yb = data.x[idx], data.y[idx]
            # forward: keep each layer's input for the backward pass
            acts = [xb]
            for i, (w, b) in enumerate(params):
                z = acts[-1] @ w + b
                acts.append(np.maximum(z, 0) if i < len(params) - 1 else z)
            logits = acts[-1]  # [B, 2]
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            weights = class_weight[yb][:, None]
            grad = (p - np.eye(2, dtype=np.float32)[yb]) * weights / weights.sum()
            step += 1
            for i in range(len(params) - 1, -1, -1):
                w, b = params[i]
                gw, gb = acts[i].T @ grad, grad.sum(0)
                if i:
                    grad = (grad @ w.T) * (acts[i] > 0)
                updated = []
                for j, (param, g) in enumerate(((w, gw), (b, gb))):
                    m_i, v_i = m[i][j], v[i][j]
                    m_i *= 0.9
                    m_i += 0.1 * g
                    v_i *= 0.999
                    v_i += 0.001 * g * g
                    m_hat = m_i / (1 - 0.9**step)
                    v_hat = v_i / (1 - 0.999**step)
                    updated.append(param - lr * m_hat / (np.sqrt(v_hat) + 1e-8))
                params[i] = (updated[0].astype(np.float32), updated[1].astype(np.float32))
    return params


def mlp_to_onnx(params: list[tuple[np.ndarray, np.ndarray]], name: str = "fraud_mlp") -> onnx.ModelProto:
    """Inputs ``features`` FP32 [-1, 30]; outputs ``probabilities`` FP32 [-1, 2] and ``label`` INT64 [-1]."""
    nodes, inits = [], []
    current = "features"
    for i, (w, b) in enumerate(params):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = f"h{i}" if i < len(params) - 1 else "logits"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [out + ("_pre" if out != "logits" else "")]))
        if out != "logits":
            nodes.append(helper.make_node("Relu", [out + "_pre"], [out]))
        current = out
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    nodes.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="quiver")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def random_mlp_onnx(sizes: tuple[int, ...] = (30, 256, 256, 2), seed: int = 0) -> onnx.ModelProto:
    """An untrained MLP of the given layer sizes (the serving benchmark's 30 -> 256 -> 256 -> 2 model)."""
    rng = np.random.default_rng(seed)
    params = [
        ((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), np.zeros(b, dtype=np.float32))
        for a, b in itertools.pairwise(sizes)
    ]
    return mlp_to_onnx(params, name="mlp")


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank statistic (ties averaged)."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    positives = y == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
