"""Evaluation data: ``.npz``, ``.csv``, ``.parquet`` (inputs, and labels when the task has them) or a text
file of one example per line (text models, tokenized with the tokenizer beside the model).

Everything is checked against the model's inputs up front, so a mismatch is one clear error
(``input 'input': expected shape [-1, 30], got [200, 29]``) instead of a failure deep in a pass.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quiver.errors import InvalidInput
from quiver.optimize._onnx import IOSpec
from quiver.optimize.types import Feeds

LABEL_NAMES = ("label", "labels", "y", "target")


@dataclass(frozen=True)
class Dataset:
    """Model inputs (all with the same number of rows) and optional labels."""

    inputs: Feeds
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, size: int, by_length: bool = False) -> list[Feeds]:
        """Consecutive batches; ``by_length`` groups texts of similar length (by attention mask) so that
        training batches carry little padding (torch passes trim it)."""
        data = self
        mask = self.inputs.get("attention_mask")
        if by_length and mask is not None and mask.ndim == 2:
            data = self.take(np.argsort(mask.sum(axis=1), kind="stable"))
        return [{k: v[i : i + size] for k, v in data.inputs.items()} for i in range(0, len(data), size)]

    def take(self, idx: np.ndarray) -> Dataset:
        return Dataset({k: v[idx] for k, v in self.inputs.items()}, None if self.labels is None else self.labels[idx])

    def split(self, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """(train, held-out) by a seeded shuffle; the held-out part gets ``1 - fraction`` of the rows."""
        order = np.random.default_rng(seed).permutation(len(self))
        cut = round(len(self) * fraction)
        return self.take(order[:cut]), self.take(order[cut:])


def load(
    path: Path, specs: list[IOSpec], tokenizer_dir: str | None = None, seq_len: int = 128, label: str | None = None
) -> Dataset:
    if not path.exists():
        raise InvalidInput(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        data = _from_npz(path, specs, label)
    elif suffix in (".csv", ".parquet"):
        data = _from_table(path, specs, label)
    elif suffix in (".txt", ".text"):
        if tokenizer_dir is None:
            raise InvalidInput(f"{path.name}: text data needs a text model with a tokenizer (a Hugging Face folder)")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        data = Dataset(tokenize(lines, Path(tokenizer_dir), specs, seq_len))
    else:
        raise InvalidInput(f"{path.name}: unsupported data file; expected .npz, .csv, .parquet or .txt")
    check(data, specs, path.name)
    return data


def tokenize(texts: list[str], tokenizer_dir: Path, specs: list[IOSpec], seq_len: int) -> Feeds:
    from tokenizers import Tokenizer

    if not texts:
        raise InvalidInput("no text lines to evaluate on")
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tok.enable_truncation(seq_len)
    tok.enable_padding(length=seq_len)
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], np.int64)  # [rows, seq_len]
    columns = {
        "input_ids": ids,
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
    }
    return {s.name: columns[s.name] for s in specs if s.name in columns}


def check(data: Dataset, specs: list[IOSpec], source: str) -> None:
    names = {s.name for s in specs}
    missing = sorted(names - set(data.inputs))
    if missing:
        raise InvalidInput(f"{source}: no data for model input(s) {', '.join(missing)}; found {', '.join(data.inputs)}")
    rows = {len(v) for v in data.inputs.values()}
    if len(rows) != 1 or 0 in rows:
        raise InvalidInput(f"{source}: inputs must have the same, non-zero number of rows; got {sorted(rows)}")
    for spec in specs:
        arr = data.inputs[spec.name]
        ok = len(arr.shape) == len(spec.shape) and all(
            want in (-1, got) for want, got in zip(spec.shape[1:], arr.shape[1:], strict=True)
        )
        if not ok:
            raise InvalidInput(
                f"{source}: input {spec.name!r}: expected shape {list(spec.shape)}, got {list(arr.shape)}"
            )
        if arr.dtype != spec.dtype:
            if not np.can_cast(arr.dtype, spec.dtype, "same_kind"):
                raise InvalidInput(f"{source}: input {spec.name!r}: expected {spec.datatype}, got {arr.dtype}")
            data.inputs[spec.name] = arr.astype(spec.dtype)
    if data.labels is not None and len(data.labels) != rows.pop():
        raise InvalidInput(f"{source}: {len(data.labels)} labels for {len(data)} rows")


def _from_npz(path: Path, specs: list[IOSpec], label: str | None) -> Dataset:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    labels = _pop_label(arrays, label, path.name)
    if len(specs) == 1 and specs[0].name not in arrays:
        features = [k for k in arrays if k not in LABEL_NAMES]
        if len(features) == 1:  # one unnamed array ("x", "arr_0") for a one-input model
            arrays = {specs[0].name: arrays[features[0]]}
    return Dataset({s.name: arrays[s.name] for s in specs if s.name in arrays}, labels)


def _from_table(path: Path, specs: list[IOSpec], label: str | None) -> Dataset:
    if len(specs) != 1:
        raise InvalidInput(f"{path.name}: tables feed one-input models; this model has {len(specs)} inputs (use .npz)")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InvalidInput("reading .parquet needs pyarrow (pip install pyarrow), or give .csv/.npz") from None
        table = pq.read_table(path)
        columns = {n: np.asarray(table.column(n)) for n in table.column_names}
    else:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if len(rows) < 2:
            raise InvalidInput(f"{path.name}: expected a header line and at least one row")
        header, body = rows[0], rows[1:]
        try:
            matrix = np.array(body, dtype=np.float64)
        except ValueError:
            raise InvalidInput(f"{path.name}: every cell must be a number") from None
        columns = {name: matrix[:, i] for i, name in enumerate(header)}
    labels = _pop_label(columns, label, path.name)
    x = np.stack([np.asarray(c, np.float64) for c in columns.values()], axis=1)  # [rows, features]
    return Dataset({specs[0].name: x.astype(specs[0].dtype)}, labels)


def _pop_label(columns: dict[str, np.ndarray], label: str | None, source: str) -> np.ndarray | None:
    if label is not None:
        if label not in columns:
            raise InvalidInput(f"{source}: no label column {label!r}; found {', '.join(columns)}")
        return np.asarray(columns.pop(label))
    for name in LABEL_NAMES:
        if name in columns:
            return np.asarray(columns.pop(name))
    return None
