"""The search space: model variants x max batch size x max queue delay x instances x threads per instance."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class Candidate:
    """One serving configuration. ``cores`` = instances x threads per instance (what it costs)."""

    version: int
    max_batch: int
    delay_ms: float
    instances: int
    threads: int

    def __post_init__(self) -> None:
        if self.version < 1 or self.max_batch < 1 or self.instances < 1 or self.threads < 1 or self.delay_ms < 0:
            raise ValueError(f"invalid candidate {self}: sizes must be >= 1 and delay_ms >= 0")

    @property
    def cores(self) -> int:
        return self.instances * self.threads

    @property
    def hardware(self) -> tuple[int, int, int]:
        """What the latency model is fitted for: (version, instances, threads)."""
        return (self.version, self.instances, self.threads)

    def key(self) -> str:
        return f"v{self.version}/b{self.max_batch}/d{self.delay_ms:g}/i{self.instances}/t{self.threads}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "max_batch_size": self.max_batch,
            "max_queue_delay_ms": self.delay_ms,
            "instances": self.instances,
            "threads_per_instance": self.threads,
            "cores": self.cores,
        }


@dataclass(frozen=True, slots=True)
class Variant:
    """A version of the model; ``accuracy`` is its primary metric from ``variant.json`` (None: unknown)."""

    version: int
    accuracy: float | None = None
    recipe: str = "baseline"


@dataclass(frozen=True, slots=True)
class SearchSpace:
    variants: tuple[Variant, ...]
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    delays_ms: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0)
    instances: tuple[int, ...] = (1, 2)
    threads: tuple[int, ...] = (1, 2)
    max_cores: int = 2

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("the search space needs at least one model variant")
        if not self.batch_sizes or not self.delays_ms or not self.instances or not self.threads:
            raise ValueError("batch_sizes, delays_ms, instances and threads each need at least one value")
        if self.max_cores < 1:
            raise ValueError(f"max_cores must be >= 1, got {self.max_cores}")

    def candidates(self) -> list[Candidate]:
        """Every distinct configuration that fits ``max_cores``. With max batch 1 the queue delay does
        nothing, so only delay 0 is kept for it (no duplicate configurations)."""
        out = []
        for v, b, d, i, t in itertools.product(
            self.variants, self.batch_sizes, self.delays_ms, self.instances, self.threads
        ):
            if i * t > self.max_cores or (b == 1 and d != min(self.delays_ms)):
                continue
            out.append(Candidate(v.version, b, float(d), i, t))
        return sorted(set(out))

    def variant(self, version: int) -> Variant:
        for v in self.variants:
            if v.version == version:
                return v
        raise KeyError(version)


def cost_per_million(cores: int, core_hour_cost: float, goodput_rps: float) -> float:
    """Cost of a million good requests: cores x price per core-hour, spread over the requests it serves."""
    if goodput_rps <= 0:
        return float("inf")
    return cores * core_hour_cost / 3600.0 / goodput_rps * 1e6
