"""Closed-loop load with wrk, and the server's CPU time over the same window.

``measure`` runs a warm-up, then snapshots the CPU time (utime + stime from ``/proc/<pid>/stat``) of the
server process and all its descendants, runs the measured window, snapshots again, and divides by the
requests completed. Latency percentiles come from the Lua ``done`` hook (exact microseconds); the
``--latency`` text distribution is kept in the raw log.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).with_name("post.lua")
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors + non-2xx answers + timeouts
    cpu_us_per_req: float | None  # server process tree CPU / requests; None without a pid
    other_cpu_pct: float  # CPU used by neither the server nor wrk during the window, % of one core
    thread_cpu_us_per_req: dict[str, float]  # the server tree's CPU: main thread vs others (µs/request)

    def as_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def process_tree_cpu_seconds(root_pid: int) -> float:
    """utime + stime of ``root_pid`` and every live descendant (all threads), in seconds."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after the parenthesized command name (which may contain spaces): state ppid ... utime stime
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    total, stack = 0.0, [root_pid]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, ()))
    return total


def thread_cpu_seconds(root_pid: int) -> dict[tuple[int, int, str], float]:
    """CPU seconds of every thread of ``root_pid`` and its live descendants, keyed by (pid, tid, name)."""
    out: dict[tuple[int, int, str], float] = {}
    pids, seen = [root_pid], set()
    while pids:
        pid = pids.pop()
        seen.add(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            out[(pid, int(tid), name)] = (int(fields[11]) + int(fields[12])) / _TICK
            pids.extend(int(k) for k in kids if int(k) not in seen)
    return out


def _split(
    root: int, before: dict[tuple[int, int, str], float], after: dict[tuple[int, int, str], float]
) -> dict[str, float]:
    """CPU seconds spent between two snapshots: each process's main thread apart from its other threads.

    Python does not name OS threads, so names cannot tell an executor from an ONNX Runtime pool thread;
    the main thread (tid == pid: the event loop in asyncio servers) against all the rest is what is left.
    """
    spent: dict[str, float] = {}
    for key, seconds in after.items():
        pid, tid, _ = key
        who = "server" if pid == root else "children"
        name = f"{who} main thread" if tid == pid else f"{who} other threads"
        spent[name] = spent.get(name, 0.0) + seconds - before.get(key, 0.0)
    return spent


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat: everything but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for children: wrk runs, not live servers
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(max_wait_s: float = 120.0, busy_cores: float = 0.3, sample_s: float = 1.0) -> float:
    """Wait until the machine is nearly idle (other people share it); returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < max_wait_s:
        before = machine_busy_seconds()
        time.sleep(sample_s)
        if (machine_busy_seconds() - before) / sample_s < busy_cores:
            break
    return time.monotonic() - start


def run_wrk(url: str, body: Path, concurrency: int, seconds: float, log: Path | None = None) -> dict[str, int]:
    """One wrk run (one thread: the server needs the other core); returns the ``done`` hook's numbers."""
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "--timeout", "30s", "-s", str(LUA), url]
    proc = subprocess.run(
        cmd, env={**os.environ, "BENCH_BODY": str(body)}, capture_output=True, text=True, timeout=seconds + 60
    )
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    match = re.search(r"^BENCH_JSON (\{.*\})$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    stats: dict[str, int] = json.loads(match.group(1))
    return stats


def measure(
    url: str,
    body: Path,
    concurrency: int,
    seconds: float,
    warmup_s: float,
    server_pid: int | None,
    log: Path | None = None,
) -> LoadResult:
    if warmup_s > 0:
        run_wrk(url, body, concurrency, warmup_s, log)
    cpu_before = process_tree_cpu_seconds(server_pid) if server_pid else 0.0
    threads_before = thread_cpu_seconds(server_pid) if server_pid else {}
    busy_before, wrk_before = machine_busy_seconds(), children_cpu_seconds()
    stats = run_wrk(url, body, concurrency, seconds, log)
    cpu_after = process_tree_cpu_seconds(server_pid) if server_pid else 0.0
    threads = _split(server_pid, threads_before, thread_cpu_seconds(server_pid)) if server_pid else {}
    busy, wrk_cpu = machine_busy_seconds() - busy_before, children_cpu_seconds() - wrk_before
    requests = stats["requests"]
    elapsed = stats["duration_us"] / 1e6
    # "status" counts answers >= 400 (what wrk prints as "Non-2xx or 3xx responses").
    errors = stats["connect"] + stats["read"] + stats["write"] + stats["timeout"] + stats["status"]
    cpu = (cpu_after - cpu_before) / requests * 1e6 if server_pid and requests else None
    return LoadResult(
        concurrency=concurrency,
        requests=requests,
        seconds=elapsed,
        rps=requests / elapsed if elapsed else 0.0,
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        errors=errors,
        cpu_us_per_req=cpu,
        other_cpu_pct=max(0.0, busy - wrk_cpu - (cpu_after - cpu_before)) / elapsed * 100 if elapsed else 0.0,
        thread_cpu_us_per_req={k: v / requests * 1e6 for k, v in threads.items() if v > 0} if requests else {},
    )
