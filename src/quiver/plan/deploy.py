"""Running a candidate and measuring it: deployers start a server for a configuration, ``BenchMeasurer``
measures it with the load generator.

- ``QuiverDeployer``: a fresh ``quiver serve`` process per candidate on a scratch repository (the model's
  version folder linked, the candidate's config.toml written), pinned to ``cores`` CPUs so a 1-core
  configuration really has one core.
- ``SimDeployer``: the simulated batching responder (``quiver.loadtest.responder``) with a compute profile
  per variant -- for tests and for checking the search itself without a model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from quiver.errors import Unavailable
from quiver.loadtest import Arrivals, Endpoint, LoadSpec, WindowSpec, Workload, measure, v2_workload
from quiver.loadtest.runner import Measurement
from quiver.plan.repo import planned_config, read_config, to_toml
from quiver.plan.search import LoadPoint, ProbeResult
from quiver.plan.space import Candidate


class Deployer(Protocol):
    model: str

    def start(self, candidate: Candidate) -> Endpoint: ...

    def stop(self) -> None: ...

    def workload(self, endpoint: Endpoint, candidate: Candidate) -> Workload: ...


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unavailable(f"the server exited with code {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise Unavailable(f"{url} was not ready within {timeout_s:g} s")


class QuiverDeployer:
    """One ``quiver serve`` per candidate. Lifecycle: ``start(c)`` -> measure -> ``stop()``."""

    def __init__(self, repo: Path, model: str, shapes: dict[str, list[int]] | None = None, ready_s: float = 60) -> None:
        self.repo, self.model, self.shapes, self.ready_s = repo, model, shapes or {}, ready_s
        self.base = read_config(repo, model)
        self.proc: subprocess.Popen[bytes] | None = None
        self.scratch: Path | None = None

    def start(self, candidate: Candidate) -> Endpoint:
        self.stop()
        self.scratch = Path(tempfile.mkdtemp(prefix="quiver-plan-"))
        model_dir = self.scratch / self.model
        model_dir.mkdir()
        (model_dir / str(candidate.version)).symlink_to((self.repo / self.model / str(candidate.version)).resolve())
        (model_dir / "config.toml").write_text(to_toml(planned_config(self.base, candidate)))
        port = _free_port()
        cpus = sorted(os.sched_getaffinity(0))
        pinned = set(cpus[-candidate.cores :]) if candidate.cores <= len(cpus) else set(cpus)
        cmd = [
            sys.executable,
            "-m",
            "quiver.cli",
            "serve",
            str(self.scratch),
            "--port",
            str(port),
            "--grpc-port",
            "-1",
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(cmd, preexec_fn=lambda: os.sched_setaffinity(0, pinned))
        endpoint = Endpoint("127.0.0.1", port)
        _wait_ready(
            f"http://{endpoint.authority}/v2/models/{self.model}/versions/{candidate.version}/ready",
            self.proc,
            self.ready_s,
        )
        return endpoint

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def workload(self, endpoint: Endpoint, candidate: Candidate) -> Workload:
        return v2_workload(endpoint, self.model, str(candidate.version), shapes=self.shapes)


@dataclass(frozen=True, slots=True)
class SimProfile:
    """A simulated variant: compute(b) = (base_ms + per_item_ms * b) * thread_factor[threads]."""

    base_ms: float
    per_item_ms: float
    thread_factor: tuple[float, ...] = (1.0, 0.6, 0.45, 0.4)
    jitter_sigma: float = 0.15

    def sim_config(self, c: Candidate) -> dict[str, Any]:
        f = self.thread_factor[min(c.threads, len(self.thread_factor)) - 1]
        return {
            "base_ms": self.base_ms * f,
            "per_item_ms": self.per_item_ms * f,
            "instances": c.instances,
            "max_batch": c.max_batch,
            "max_queue_delay_ms": c.delay_ms,
            "jitter_sigma": self.jitter_sigma,
        }


class SimDeployer:
    """The simulated batching responder per candidate (a child process)."""

    def __init__(self, profiles: dict[int, SimProfile], model: str = "model") -> None:
        self.profiles, self.model = profiles, model
        self.proc: subprocess.Popen[str] | None = None

    def start(self, candidate: Candidate) -> Endpoint:
        self.stop()
        sim = self.profiles[candidate.version].sim_config(candidate)
        cmd = [
            sys.executable,
            "-m",
            "quiver.loadtest.responder",
            "--port",
            "0",
            "--model",
            self.model,
            "--sim",
            json.dumps(sim),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise Unavailable("the simulated responder did not start")
        return Endpoint("127.0.0.1", int(json.loads(line)["port"]))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def workload(self, endpoint: Endpoint, candidate: Candidate) -> Workload:
        return v2_workload(endpoint, self.model, shapes={"x": [1, 4]})


@dataclass(frozen=True, slots=True)
class Windows:
    """Measurement lengths for planning: short, since many configurations are measured; ``confirm`` is the
    longer measurement that settles a verdict near the SLO (about 3x the requests of ``load``)."""

    probe: WindowSpec = field(default_factory=lambda: WindowSpec(0.5, 1.0, 2, 3, 2))
    load: WindowSpec = field(default_factory=lambda: WindowSpec(1.0, 2.0, 2, 4, 2))
    confirm: WindowSpec = field(default_factory=lambda: WindowSpec(1.0, 3.0, 4, 4, 4))


class BenchMeasurer:
    """Measures candidates with ``quiver bench``'s engine (``measure``) on servers from ``deployer``."""

    def __init__(
        self,
        deployer: Deployer,
        windows: Windows = Windows(),
        slo_ms: float | None = None,
        pattern: str = "poisson",
        seed: int = 0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.deployer, self.windows, self.slo_ms, self.pattern, self.seed = deployer, windows, slo_ms, pattern, seed
        self.current: tuple[Candidate, Endpoint, Workload] | None = None
        self.log = log or (lambda _: None)

    def _ensure(self, candidate: Candidate) -> tuple[Endpoint, Workload]:
        if self.current is None or self.current[0] != candidate:
            endpoint = self.deployer.start(candidate)
            self.current = (candidate, endpoint, self.deployer.workload(endpoint, candidate))
        return self.current[1], self.current[2]

    def close(self) -> None:
        self.deployer.stop()
        self.current = None

    def _measure(self, candidate: Candidate, load: LoadSpec, windows: WindowSpec) -> Measurement:
        endpoint, workload = self._ensure(candidate)
        return measure(
            endpoint,
            workload,
            load,
            windows,
            slo_ms=self.slo_ms,
            metrics_model=self.deployer.model,
            metrics_version=None,
        )

    def probe(self, candidate: Candidate) -> ProbeResult:
        single = self._measure(candidate, LoadSpec(concurrency=1), self.windows.probe)
        many = 2 * candidate.instances * candidate.max_batch
        saturated = self._measure(candidate, LoadSpec(concurrency=many), self.windows.probe)
        s1, s2 = single.server or {}, saturated.server or {}
        return ProbeResult(
            single_p50_ms=single.summary.latency_ms.get("p50", float("inf")),
            single_p99_ms=single.summary.latency_ms.get("p99", float("inf")),
            single_rps=single.summary.throughput_rps,
            saturated_rps=saturated.summary.throughput_rps,
            saturated_p99_ms=saturated.summary.latency_ms.get("p99", float("inf")),
            batch=candidate.max_batch,
            single_compute_ms=s1["compute"]["mean"] if "compute" in s1 else None,
            batch_compute_ms=s2["compute"]["mean"] if "compute" in s2 else None,
            batch_mean=s2["batch_size"]["mean"] if "batch_size" in s2 else None,
        )

    def load(self, candidate: Candidate, rate: float, confirm: bool = False) -> LoadPoint:
        arrivals = Arrivals(rate, self.pattern, self.seed + 1 if confirm else self.seed)  # a fresh sample
        windows = self.windows.confirm if confirm else self.windows.load
        m = self._measure(candidate, LoadSpec(arrivals=arrivals, timeout_s=10.0), windows)
        s = m.summary
        return LoadPoint(
            rate=rate,
            throughput_rps=s.throughput_rps,
            goodput_rps=s.goodput_rps if s.goodput_rps is not None else s.throughput_rps,
            p50_ms=s.latency_ms.get("p50", float("inf")),
            p99_ms=s.latency_ms.get("p99", float("inf")),
            error_rate=s.error_rate if s.requests else 1.0,
            server=m.server,
        )
