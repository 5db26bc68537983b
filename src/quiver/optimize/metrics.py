"""Accuracy gate: task metrics against the original model's outputs and against labels when given.

Every task has one primary metric in points (0-100, higher is better) and the gate compares the variant's
primary metric with the baseline's: ``drop = baseline - variant <= max_drop``.

- classification: ROC-AUC (binary, with labels), else accuracy (labels), else agreement with the original
- regression: 100 - RMSE as a percentage of the labels' (or original outputs') standard deviation
- embedding: mean cosine similarity to the original embeddings x 100; plus retrieval agreement
  (overlap of each row's top-k neighbours, original vs variant)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quiver.optimize.types import Task


@dataclass(frozen=True)
class Scores:
    primary: str
    values: dict[str, float]

    @property
    def value(self) -> float:
        return self.values[self.primary]


def score(task: Task, outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None = None) -> Scores:
    if task == "embedding":
        return _embedding(outputs, reference)
    if task == "regression":
        return _regression(outputs, reference, labels)
    return _classification(outputs, reference, labels)


def _classification(out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> Scores:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    prob, ref_prob = _as_probabilities(out), _as_probabilities(ref)
    pred, ref_pred = prob.argmax(1), ref_prob.argmax(1)
    values = {"agreement": 100.0 * float(np.mean(pred == ref_pred))}
    primary = "agreement"
    if labels is not None:
        y = labels.astype(np.int64).ravel()
        values["accuracy"] = 100.0 * accuracy_score(y, pred)
        values["f1"] = 100.0 * f1_score(y, pred, average="binary" if prob.shape[1] == 2 else "macro")
        primary = "accuracy"
        if len(np.unique(y)) == prob.shape[1] >= 2:
            if prob.shape[1] == 2:
                values["roc_auc"] = 100.0 * roc_auc_score(y, prob[:, 1])
            else:
                values["roc_auc"] = 100.0 * roc_auc_score(y, prob, multi_class="ovr")
            primary = "roc_auc"
    return Scores(primary, values)


def _as_probabilities(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[1] == 1:  # one score: a positive-class probability or logit
        p = x if (x.min() >= 0 and x.max() <= 1) else 1 / (1 + np.exp(-x))
        return np.concatenate([1 - p, p], axis=1)
    if x.min() >= 0 and np.allclose(x.sum(1), 1, atol=1e-3):
        return x
    e = np.exp(x - x.max(1, keepdims=True))  # logits -> softmax
    return e / e.sum(1, keepdims=True)


def _regression(out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> Scores:
    out, ref = out.reshape(len(out), -1), ref.reshape(len(ref), -1)
    truth = ref if labels is None else labels.reshape(len(labels), -1).astype(np.float64)
    rmse = float(np.sqrt(np.mean((out - truth) ** 2)))
    spread = float(np.std(truth)) or 1.0
    values = {
        "rmse": rmse,
        "rmse_vs_original": float(np.sqrt(np.mean((out - ref) ** 2))),
        "fit": 100.0 * (1 - rmse / spread),
    }
    return Scores("fit", values)


def _embedding(out: np.ndarray, ref: np.ndarray, k: int = 10) -> Scores:
    a = _normalize(out.reshape(len(out), -1))
    b = _normalize(ref.reshape(len(ref), -1))
    cos = np.sum(a * b, axis=1)  # [rows]
    values = {"cosine": 100.0 * float(cos.mean()), "cosine_min": 100.0 * float(cos.min())}
    if len(a) > k + 1:
        values[f"retrieval@{k}"] = 100.0 * retrieval_agreement(a, b, k)
    return Scores("cosine", values)


def retrieval_agreement(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean overlap of each row's k nearest neighbours (by cosine, itself excluded) under a and under b."""

    def top(x: np.ndarray) -> np.ndarray:
        sim = x @ x.T  # [rows, rows]
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1)[:, :k]

    ta, tb = top(_normalize(a)), top(_normalize(b))
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta, tb, strict=True)]))


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
