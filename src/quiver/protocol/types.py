"""Protocol-neutral inference request and response. Transports decode into these and encode from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(slots=True)
class InferInput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray  # already shaped as ``shape``


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool  # answer this output in the binary tensor extension


@dataclass(slots=True)
class InferRequest:
    inputs: list[InferInput]
    id: str | None = None
    # None: every output of the model, encoded per ``binary_outputs``.
    outputs: list[RequestedOutput] | None = None
    binary_outputs: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    priority: int = 0  # 0: the model's default; 1 is the highest


@dataclass(slots=True)
class InferOutput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    binary: bool = False


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[InferOutput]
    id: str | None = None
    parameters: dict[str, Any] | None = None
