"""Where models come from: an ONNX file, a PyTorch module, a Hugging Face folder, or a scikit-learn /
XGBoost / LightGBM model. Each source becomes an ``Artifact`` whose ONNX file is the fp32 baseline."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from quiver.errors import InvalidInput, ModelLoadError
from quiver.optimize import _onnx
from quiver.optimize.types import Artifact, Family, Feeds, Task

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
_TREE_OPS = {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"}


def from_onnx(path: Path, workdir: Path, task: Task | None = None) -> Artifact:
    proto = _onnx.load(path)
    inputs, outputs = _onnx.io_specs(proto)
    ops = {n.op_type for n in proto.graph.node}
    family: Family = "tree" if ops & _TREE_OPS else "generic"
    dst = workdir / "baseline.onnx"
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dst)
    out = _pick_output([o.name for o in outputs])
    return Artifact(
        onnx=dst,
        family=family,
        task=task or _guess_task(proto, out),
        meta={"input_names": [i.name for i in inputs], "output": out, "source": f"onnx:{path}"},
    )


def from_torch(
    module: Any,
    example: Feeds,
    workdir: Path,
    task: Task,
    output_names: tuple[str, ...] = ("output",),
    source: str = "torch",
) -> Artifact:
    """Export ``module`` (called with ``example``'s arrays in order) with a dynamic batch dimension."""
    from torch import nn

    from quiver.optimize import _torch

    names = list(example)
    family: Family = "mlp" if isinstance(module, nn.Sequential) else "generic"
    export = functools.partial(_torch.export, example=example, input_names=names, output_names=list(output_names))
    path = workdir / "baseline.onnx"
    try:
        export(module, path)
    except Exception as exc:
        raise ModelLoadError(f"cannot export the PyTorch model to ONNX: {exc}") from None
    return Artifact(
        onnx=path,
        family=family,
        task=task,
        torch=module.eval(),
        export=export,
        meta={"input_names": names, "output": output_names[0], "source": source},
    )


def from_hf(folder: Path, workdir: Path, seq_len: int = 128) -> Artifact:
    """A local Hugging Face encoder folder. Sentence-transformers folders export with their pooling
    (mean by default) and L2 normalization; ``*ForSequenceClassification`` folders export logits."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from quiver.optimize import _torch

    if not (folder / "config.json").exists():
        raise ModelLoadError(f"{folder} has no config.json: not a Hugging Face model folder")
    config = AutoConfig.from_pretrained(folder)
    classify = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    loader = AutoModelForSequenceClassification if classify else AutoModel
    try:
        encoder = loader.from_pretrained(folder, attn_implementation="eager").eval()
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model in {folder}: {exc}") from None
    names = ["input_ids", "attention_mask"]
    if getattr(config, "type_vocab_size", 0):
        names.append("token_type_ids")
    pooling = "none" if classify else _pooling(folder)
    module = _torch.SentenceEncoder(encoder, names, pooling).eval()
    example = {n: np.ones((2, seq_len), np.int64) for n in names}
    output = "logits" if classify else "sentence_embedding"
    art = from_torch(module, example, workdir, "classification" if classify else "embedding", (output,), f"hf:{folder}")
    tokenizer_dir = workdir / "tokenizer"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (folder / name).exists():
            shutil.copyfile(folder / name, tokenizer_dir / name)
    meta = {
        **art.meta,
        "num_heads": config.num_attention_heads,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_hidden_layers,
        "seq_len": seq_len,
        "pooling": pooling,
        "tokenizer_dir": str(tokenizer_dir) if (tokenizer_dir / "tokenizer.json").exists() else None,
    }
    return art.replace(family="transformer", meta=meta)


def from_estimator(model: Any, n_features: int, workdir: Path, source: str = "estimator") -> Artifact:
    """scikit-learn, XGBoost or LightGBM. A scikit-learn MLP becomes a torch MLP (so it can be pruned);
    everything else converts to ONNX-ML with probabilities as a plain tensor (no ZipMap)."""
    kind = type(model).__module__.split(".")[0]
    cls = type(model).__name__
    if cls in ("MLPClassifier", "MLPRegressor"):
        return _from_sklearn_mlp(model, n_features, workdir, source)
    try:
        if kind in ("xgboost", "lightgbm"):
            from onnxmltools.convert.common.data_types import FloatTensorType as MLFloat

            ml_types = [("input", MLFloat([None, n_features]))]
        else:
            from skl2onnx.common.data_types import FloatTensorType

            types = [("input", FloatTensorType([None, n_features]))]
        if kind == "xgboost":
            import onnxmltools

            proto = onnxmltools.convert_xgboost(model, initial_types=ml_types, target_opset=15)
        elif kind == "lightgbm":
            import onnxmltools

            proto = onnxmltools.convert_lightgbm(model, initial_types=ml_types, zipmap=False, target_opset=15)
        elif kind == "sklearn":
            from skl2onnx import convert_sklearn

            proto = convert_sklearn(model, initial_types=types, options={id(model): {"zipmap": False}}, target_opset=17)
        else:
            raise InvalidInput(f"unsupported model type {type(model).__module__}.{cls}")
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput(f"cannot convert {cls} to ONNX: {exc}") from None
    path = _onnx.save(proto, workdir / "converted.onnx")
    art = from_onnx(path, workdir, "regression" if _is_regressor(model) else "classification")
    return art.replace(meta={**art.meta, "source": source})


def load_path(
    path: Path, workdir: Path, task: Task | None = None, seq_len: int = 128, n_features: int | None = None
) -> Artifact:
    """Dispatch on what ``path`` is: folder (Hugging Face), .onnx, .pkl/.joblib, .json/.ubj (XGBoost),
    .txt (LightGBM)."""
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist")
    if path.is_dir():
        return from_hf(path, workdir, seq_len)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return from_onnx(path, workdir, task)
    if suffix in (".pkl", ".pickle", ".joblib", ".json", ".ubj", ".txt"):
        model = _load_estimator(path)
        n = n_features or _n_features(model)
        if n is None:
            raise InvalidInput(f"{path.name}: cannot tell the number of input features; pass --features N")
        return from_estimator(model, n, workdir, f"file:{path}")
    raise InvalidInput(
        f"{path.name}: unsupported model file; expected a Hugging Face folder, .onnx, .pkl/.joblib, "
        ".json/.ubj (XGBoost) or .txt (LightGBM)"
    )


def _load_estimator(path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix in (".json", ".ubj"):
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(str(path))
            return booster
        if suffix == ".txt":
            import lightgbm

            return lightgbm.Booster(model_file=str(path))
        import joblib

        return joblib.load(path)  # pickles run code: only load files you trust (documented in --help)
    except Exception as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc}") from None


def _n_features(model: Any) -> int | None:
    for attr in ("n_features_in_", "n_features_", "num_features"):
        value = getattr(model, attr, None)
        value = value() if callable(value) else value
        if isinstance(value, (int, np.integer)):
            return int(value)
    return None


def _is_regressor(model: Any) -> bool:
    return "Regressor" in type(model).__name__ or getattr(model, "_estimator_type", "") == "regressor"


def _from_sklearn_mlp(model: Any, n_features: int, workdir: Path, source: str) -> Artifact:
    import torch
    from torch import nn

    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid, "identity": nn.Identity}
    layers: list[nn.Module] = []
    for k, (w, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        lin = nn.Linear(w.shape[0], w.shape[1])
        lin.weight.data = torch.tensor(w.T, dtype=torch.float32)
        lin.bias.data = torch.tensor(b, dtype=torch.float32)
        layers.append(lin)
        if k < len(model.coefs_) - 1:
            layers.append(acts[model.activation]())
    regress = _is_regressor(model)
    if not regress:
        layers.append(_Probabilities(binary=model.coefs_[-1].shape[1] == 1))
    example = {"input": np.zeros((2, n_features), np.float32)}
    out = ("output",) if regress else ("probabilities",)
    return from_torch(
        nn.Sequential(*layers), example, workdir, "regression" if regress else "classification", out, source
    )


def _probabilities_module() -> Any:
    from torch import nn

    class Probabilities(nn.Module):
        """Logits -> class probabilities; one logit (binary) -> [1 - p, p]."""

        def __init__(self, binary: bool) -> None:
            super().__init__()
            self.binary = binary

        def forward(self, x: Any) -> Any:
            import torch

            if self.binary:
                p = torch.sigmoid(x)  # [batch, 1]
                return torch.cat([1 - p, p], dim=1)  # [batch, 2]
            return torch.softmax(x, dim=1)

    return Probabilities


def _Probabilities(binary: bool) -> Any:
    return _probabilities_module()(binary)


def _pooling(folder: Path) -> str:
    cfg = folder / "1_Pooling" / "config.json"
    if cfg.exists():
        data = json.loads(cfg.read_text())
        if data.get("pooling_mode_cls_token"):
            return "cls"
    return "mean"


def _pick_output(names: list[str]) -> str:
    for preferred in ("probabilities", "output_probability", "probability"):
        if preferred in names:
            return preferred
    return names[0]


def _guess_task(proto: Any, output: str) -> Task:
    ops = {n.op_type for n in proto.graph.node}
    if "TreeEnsembleRegressor" in ops:
        return "regression"
    if ops & {"Softmax", "Sigmoid", "TreeEnsembleClassifier", "LinearClassifier"} or "prob" in output:
        return "classification"
    raise InvalidInput("cannot tell the model's task from the graph; pass --task classification|regression|embedding")
