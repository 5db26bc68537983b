"""One loaded model version: runtime instances behind a dynamic batcher, plus request validation.

Validation happens on the event loop before a request joins a batch, so one bad request never fails
another's batch. The batch function (``_run_batch``) runs on an instance's thread: merge along the batch
dimension, one runtime call, split back.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quiver.batching import BatcherConfig, DynamicBatcher, Pending
from quiver.batching.threads import DEFAULT_NICENESS, compute_executors
from quiver.errors import InternalError, InvalidInput
from quiver.protocol.types import InferOutput, InferRequest, InferResponse, RequestedOutput
from quiver.repository.config import ModelConfig, TensorSpec
from quiver.runtimes.base import Runtime, get_runtime
from quiver.server.metrics import ModelMetrics


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(slots=True)
class _Job:
    """What travels through the batcher: validated inputs in the model's input order."""

    arrays: list[np.ndarray]
    rows: int


class ServedModel:
    """A ready model version. Lifecycle: ``await ServedModel.load(...)`` -> ``infer`` -> ``await close()``."""

    def __init__(
        self,
        name: str,
        version: int,
        config: ModelConfig,
        instances: list[Runtime],
        executors: list[ThreadPoolExecutor] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.version_text = str(version)
        self.config = config
        self.instances = instances
        first = instances[0]
        self.platform = first.platform
        self.inputs: tuple[TensorSpec, ...] = first.inputs
        self.outputs: tuple[TensorSpec, ...] = first.outputs
        self._input_index = {spec.name: i for i, spec in enumerate(self.inputs)}
        self._input_names = [spec.name for spec in self.inputs]
        self._output_names = [spec.name for spec in self.outputs]
        self._output_datatypes = {spec.name: spec.datatype for spec in self.outputs}
        self.max_batch_size = self._batch_size(config)
        self.metrics = ModelMetrics(name, self.version_text)
        self.batcher = DynamicBatcher(
            self._run_batch,
            BatcherConfig(
                max_batch_size=self.max_batch_size,
                max_queue_delay_s=config.max_queue_delay_ms / 1e3,
                queue_capacity=config.queue_capacity,
                priority_levels=config.priority_levels,
                default_priority=config.effective_default_priority,
                default_timeout_s=config.default_timeout_ms / 1e3 or None,
                instances=len(instances),
                slo_s=config.slo_p99_ms / 1e3 if config.slo_p99_ms else None,
            ),
            name=f"{name}:{version}",
            observer=self._observe_batch,
            executors=executors,
        )
        self.metrics.watch_queue(lambda: self.batcher.queue_depth)
        if self.batcher.slo is not None:
            self.metrics.watch_slo(self.batcher.slo)

    @classmethod
    async def load(cls, name: str, version: int, version_dir: Path, config: ModelConfig) -> ServedModel:
        runtime_cls = get_runtime(config.runtime)
        loop = asyncio.get_running_loop()
        niceness = int(config.parameters.get("compute_niceness", DEFAULT_NICENESS))
        executors = compute_executors(f"{name}-{version}", config.instances, niceness)
        # each instance loads on its own thread, so the runtime's threads inherit that thread's priority
        instances = [await loop.run_in_executor(ex, runtime_cls.load, version_dir, config) for ex in executors]
        model = cls(name, version, config, instances, executors)
        await model.batcher.start()
        return model

    def _batch_size(self, config: ModelConfig) -> int:
        batchable = all(spec.shape and spec.shape[0] == -1 for spec in (*self.inputs, *self.outputs))
        if config.max_batch_size is None:
            return 64 if batchable else 0
        if config.max_batch_size > 0 and not batchable:
            dims = ", ".join(f"{s.name} {_shape_text(s.shape)}" for s in (*self.inputs, *self.outputs))
            raise InvalidInput(
                f"{config.source}: max_batch_size is {config.max_batch_size} but not every tensor has a dynamic "
                f"first (batch) dimension: {dims}"
            )
        return config.max_batch_size

    async def close(self, drain: bool = True) -> None:
        await self.batcher.close(drain)
        for instance in self.instances:
            instance.close()

    # ------------------------------------------------------------------------------- request path

    async def infer(self, request: InferRequest) -> InferResponse:
        started = time.perf_counter()
        try:
            job, outputs = self._validate(request)
            key = tuple(a.shape[1:] for a in job.arrays) if self.max_batch_size else None
            results: dict[str, np.ndarray] = await self.batcher.submit(
                job, job.rows, key, request.priority, request.timeout_s
            )
        except Exception:
            self.metrics.failure.inc()
            raise
        response = InferResponse(
            self.name,
            self.version_text,
            [
                InferOutput(o.name, self._output_datatypes[o.name], results[o.name].shape, results[o.name], o.binary)
                for o in outputs
            ],
            request.id,
        )
        self.metrics.success.inc()
        self.metrics.request_duration.observe(time.perf_counter() - started)
        return response

    def _validate(self, request: InferRequest) -> tuple[_Job, list[RequestedOutput]]:
        arrays: list[np.ndarray | None] = [None] * len(self.inputs)
        for given in request.inputs:
            index = self._input_index.get(given.name)
            if index is None:
                expected = ", ".join(self._input_index)
                raise InvalidInput(f"model '{self.name}' has no input '{given.name}'; its inputs are: {expected}")
            if arrays[index] is not None:
                raise InvalidInput(f"input '{given.name}' is given more than once")
            spec = self.inputs[index]
            if given.datatype != spec.datatype:
                raise InvalidInput(f"input '{given.name}': expected datatype {spec.datatype}, got {given.datatype}")
            if len(given.shape) != len(spec.shape) or any(
                want not in (-1, got) for want, got in zip(spec.shape, given.shape, strict=True)
            ):
                raise InvalidInput(
                    f"input '{given.name}': expected shape {_shape_text(spec.shape)}, got {_shape_text(given.shape)}"
                )
            arrays[index] = given.data
        missing = [spec.name for spec, a in zip(self.inputs, arrays, strict=True) if a is None]
        if missing:
            raise InvalidInput(f"model '{self.name}' needs inputs {missing} which the request does not have")
        rows = 1
        if self.max_batch_size:
            batch_dims = {a.shape[0] for a in arrays if a is not None}
            if len(batch_dims) != 1:
                raise InvalidInput(f"all inputs must have the same batch (first) dimension, got {sorted(batch_dims)}")
            rows = batch_dims.pop()
            if rows < 1:
                raise InvalidInput("the batch (first) dimension must be at least 1")
        return _Job(arrays, rows), self._requested_outputs(request)  # type: ignore[arg-type]

    def _requested_outputs(self, request: InferRequest) -> list[RequestedOutput]:
        if request.outputs is None:
            return [RequestedOutput(name, request.binary_outputs) for name in self._output_names]
        for out in request.outputs:
            if out.name not in self._output_datatypes:
                raise InvalidInput(
                    f"model '{self.name}' has no output '{out.name}'; its outputs are: {', '.join(self._output_names)}"
                )
        return request.outputs

    # ------------------------------------------------------------------------------- batch path

    def _run_batch(self, instance: int, jobs: list[_Job]) -> list[dict[str, np.ndarray]]:
        """Runs on the instance's thread: merge -> run -> split."""
        runtime = self.instances[instance]
        names = self._input_names
        if len(jobs) == 1:
            feeds = dict(zip(names, jobs[0].arrays, strict=True))
        else:
            # each input: [sum(rows), ...] from [rows_i, ...]
            feeds = {n: np.concatenate([job.arrays[i] for job in jobs]) for i, n in enumerate(names)}
        results = runtime.infer(feeds, self._output_names)
        if len(jobs) == 1:
            return [results]
        total = sum(job.rows for job in jobs)
        for name, array in results.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise InternalError(
                    f"model '{self.name}': output '{name}' has shape {list(array.shape)}, "
                    f"which does not keep the batch dimension {total}"
                )
        bounds = np.cumsum([0] + [job.rows for job in jobs])
        return [
            {name: array[start:end] for name, array in results.items()} for start, end in itertools.pairwise(bounds)
        ]

    def _observe_batch(self, batch: list[Pending], compute_s: float) -> None:
        now = asyncio.get_running_loop().time()
        metrics = self.metrics
        metrics.compute_duration.observe(compute_s)
        metrics.batch_size.observe(sum(item.rows for item in batch))
        queue_observe = metrics.queue_duration.observe
        for item in batch:
            queue_observe(max(0.0, now - compute_s - item.enqueued))

    # ------------------------------------------------------------------------------- descriptions

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [self.version_text],
            "platform": self.platform,
            "inputs": [spec.as_dict() for spec in self.inputs],
            "outputs": [spec.as_dict() for spec in self.outputs],
        }

    def triton_config(self) -> dict[str, Any]:
        """Triton's model configuration shape, for clients that call ``get_model_config``."""
        strip = 1 if self.max_batch_size else 0

        def dims(spec: TensorSpec) -> list[int]:
            return list(spec.shape[strip:])

        config = self.config
        return {
            "name": self.name,
            "platform": self.platform,
            "backend": config.runtime,
            "max_batch_size": self.max_batch_size,
            "input": [{"name": s.name, "data_type": _triton_type(s.datatype), "dims": dims(s)} for s in self.inputs],
            "output": [{"name": s.name, "data_type": _triton_type(s.datatype), "dims": dims(s)} for s in self.outputs],
            "dynamic_batching": {
                "max_queue_delay_microseconds": int(config.max_queue_delay_ms * 1000),
                "priority_levels": config.priority_levels,
                "default_priority_level": config.effective_default_priority,
                "default_queue_policy": {
                    "max_queue_size": config.queue_capacity,
                    "default_timeout_microseconds": int(config.default_timeout_ms * 1000),
                },
            }
            if self.max_batch_size
            else None,
            "instance_group": [{"count": len(self.instances), "kind": "KIND_CPU"}],
            "version_policy": {config.version_policy.kind: _policy_detail(config)},
            "parameters": {k: {"string_value": str(v)} for k, v in config.parameters.items()},
        }

    def statistics(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "name": self.name,
            "version": self.version_text,
            "inference_count": m.success.value,
            "execution_count": m.batch_size.count,
            "success_count": m.success.value,
            "failure_count": m.failure.value,
            "queue_depth": self.batcher.queue_depth,
            "mean_batch_size": m.batch_size.sum / m.batch_size.count if m.batch_size.count else 0.0,
            "mean_queue_ms": 1e3 * m.queue_duration.sum / max(1, m.queue_duration.count),
            "mean_compute_ms": 1e3 * m.compute_duration.sum / max(1, m.compute_duration.count),
            "mean_request_ms": 1e3 * m.request_duration.sum / max(1, m.request_duration.count),
        }


def _triton_type(datatype: str) -> str:
    """Triton's config names BYTES tensors TYPE_STRING; every other datatype keeps its name."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def _policy_detail(config: ModelConfig) -> dict[str, Any]:
    policy = config.version_policy
    if policy.kind == "latest":
        return {"num_versions": policy.latest}
    if policy.kind == "specific":
        return {"versions": list(policy.versions)}
    return {}
