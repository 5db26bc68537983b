"""``quiver bench``: a cheap load generator for V2 and OpenAI-compatible endpoints.

>>> from quiver.loadtest import Endpoint, LoadSpec, WindowSpec, measure, v2_workload
>>> endpoint = Endpoint.parse("http://127.0.0.1:8000")  # doctest: +SKIP
>>> m = measure(endpoint, v2_workload(endpoint, "fraud"), LoadSpec(concurrency=8))  # doctest: +SKIP
>>> m.summary.latency_ms["p99"]  # doctest: +SKIP
"""

from __future__ import annotations

from quiver.loadtest.arrivals import Arrivals
from quiver.loadtest.client import Endpoint
from quiver.loadtest.engine import LoadSpec
from quiver.loadtest.payload import Workload, file_workload, openai_workload, v2_workload
from quiver.loadtest.runner import Measurement, WindowSpec, measure
from quiver.loadtest.stats import Records, Summary, is_stable, summarize

__all__ = [
    "Arrivals",
    "Endpoint",
    "LoadSpec",
    "Measurement",
    "Records",
    "Summary",
    "WindowSpec",
    "Workload",
    "file_workload",
    "is_stable",
    "measure",
    "openai_workload",
    "summarize",
    "v2_workload",
]
