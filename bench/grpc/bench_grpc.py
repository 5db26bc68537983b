"""gRPC vs HTTP (binary tensor extension) on one `quiver serve` process, same MLP, concurrency 1 and 16.

    flock /tmp/quiver-bench.lock .venv/bin/python bench/grpc/bench_grpc.py [--seconds 5]

Both transports are driven by the same lean asyncio client in one process (uvloop): gRPC sends a
pre-serialized ``ModelInferRequest`` with raw_input_contents through grpc.aio; HTTP sends a pre-built
keep-alive POST with the binary tensor extension. Each response is decoded and checked against ONNX Runtime
once before timing; during timing only the status is checked. Server CPU per request comes from
/proc/<pid>/stat. Prints a table and writes bench/grpc/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np
import onnx
import onnxruntime as ort

from quiver.grpc import grpc_predict_v2_pb2 as pb
from quiver.zoo.tabular import random_mlp_onnx

ROOT = Path(__file__).resolve().parents[2]
ROWS = 1  # one row per request: per-request overhead is what differs between transports
INFER = "/inference.GRPCInferenceService/ModelInfer"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(repo: Path, port: int, grpc_port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "quiver.cli", "serve", str(repo), "--port", str(port)]
    command += ["--grpc-port", str(grpc_port), "--log-level", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server not ready after 60 s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


# ----------------------------------------------------------------------------------------- clients


class GrpcClient:
    def __init__(self, port: int, x: np.ndarray) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.call = self.channel.unary_unary(INFER)  # bytes in, bytes out: no client-side protobuf work
        request = pb.ModelInferRequest(model_name="mlp", raw_input_contents=[x.tobytes()])
        request.inputs.add(name="features", datatype="FP32", shape=x.shape)
        self.body = request.SerializeToString()

    async def once(self) -> bytes:
        return await self.call(self.body)

    def decode(self, raw: bytes) -> np.ndarray:
        response = pb.ModelInferResponse.FromString(raw)
        index = [o.name for o in response.outputs].index("probabilities")
        return np.frombuffer(response.raw_output_contents[index], np.float32).reshape(ROWS, 2)

    async def close(self) -> None:
        await self.channel.close()


class HttpConnection:
    """One keep-alive HTTP/1.1 connection sending one pre-built request."""

    def __init__(self, port: int, x: np.ndarray) -> None:
        self.port = port
        header = json.dumps(
            {
                "inputs": [
                    {"name": "features", "shape": list(x.shape), "datatype": "FP32"}
                    | {"parameters": {"binary_data_size": x.nbytes}}
                ],
                "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
            }
        ).encode()
        body = header + x.tobytes()
        self.request = (
            f"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def once(self) -> bytes:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        return head + await self.reader.readexactly(length)

    def decode(self, raw: bytes) -> np.ndarray:
        head, body = raw.split(b"\r\n\r\n", 1)
        json_length = int(head.lower().split(b"inference-header-content-length:")[1].split(b"\r\n")[0])
        return np.frombuffer(body[json_length:], np.float32).reshape(ROWS, 2)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ----------------------------------------------------------------------------------------- load


async def run_load(once: Callable[[int], Awaitable[bytes]], concurrency: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        while (start := time.perf_counter()) < stop_at:
            await once(index)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies


async def measure(
    transport: str, port: int, x: np.ndarray, expected: np.ndarray, concurrency: int, seconds: float, pid: int
) -> dict[str, float]:
    if transport == "grpc":
        grpc_client = GrpcClient(port, x)
        clients: list[GrpcClient | HttpConnection] = [grpc_client]  # one HTTP/2 channel multiplexes every stream

        async def once(i: int) -> bytes:
            return await grpc_client.once()
    else:
        clients = [HttpConnection(port, x) for _ in range(concurrency)]  # one connection per in-flight request

        async def once(i: int) -> bytes:
            return await clients[i].once()

    np.testing.assert_allclose(clients[0].decode(await once(0)), expected, rtol=1e-5)
    await run_load(once, concurrency, min(1.0, seconds / 4))  # warm up
    cpu0 = cpu_seconds(pid)
    start = time.perf_counter()
    latencies = await run_load(once, concurrency, seconds)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu0
    for client in clients:
        await client.close()
    ms = np.array(latencies) * 1e3
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "server_cpu_us": 1e6 * cpu / len(latencies),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="quiver-bench-grpc-") as tmp:
        repo = Path(tmp)
        (repo / "mlp" / "1").mkdir(parents=True)
        model = random_mlp_onnx((30, 256, 256, 2), seed=0)
        onnx.save(model, str(repo / "mlp" / "1" / "model.onnx"))
        x = np.random.default_rng(0).standard_normal((ROWS, 30)).astype(np.float32)
        expected = ort.InferenceSession(model.SerializeToString()).run(["probabilities"], {"features": x})[0]
        http_port, grpc_port = free_port(), free_port()
        server = start_server(repo, http_port, grpc_port)
        rows = []
        try:
            for concurrency in args.concurrency:
                for transport, port in (("http", http_port), ("grpc", grpc_port)):
                    result = asyncio.run(measure(transport, port, x, expected, concurrency, args.seconds, server.pid))
                    rows.append({"transport": transport, "concurrency": concurrency, **result})
                    print(
                        f"{transport:5} c={concurrency:<3} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:.3f} ms"
                        f"  p99 {result['p99_ms']:.3f} ms  server CPU {result['server_cpu_us']:.0f} us/req",
                        flush=True,
                    )
        finally:
            server.terminate()
            server.wait(30)
    write_results(args, rows)
    return 0


def write_results(args: argparse.Namespace, rows: list[dict[str, float | str]]) -> None:
    import google.protobuf

    versions = (
        f"Python {platform.python_version()}, grpcio {grpc.__version__}, protobuf {google.protobuf.__version__}, "
        f"onnxruntime {ort.__version__}, numpy {np.__version__}; {os.cpu_count()} CPUs ({platform.machine()}), "
        "client and server on the same machine"
    )
    table = [
        "| transport | concurrency | req/s | p50 ms | p99 ms | server CPU us/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    table += [
        f"| {r['transport']} | {r['concurrency']} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
        f"| {r['server_cpu_us']:.0f} |"
        for r in rows
    ]
    command = "flock /tmp/quiver-bench.lock .venv/bin/python bench/grpc/bench_grpc.py " + " ".join(
        [f"--seconds {args.seconds:g}", "--concurrency", *map(str, args.concurrency)]
    )
    text = "\n".join(
        [
            "# gRPC vs HTTP binary: MLP 30 -> 256 -> 256 -> 2, one row per request",
            "",
            f"Command: `{command}`",
            "",
            f"Date: {time.strftime('%Y-%m-%d %H:%M')}. {versions}.",
            "",
            *table,
            "",
            "One `quiver serve` process serves both transports (same event loop, data plane and batcher). The client",
            "is one asyncio process: gRPC multiplexes all streams over one channel; HTTP uses one keep-alive",
            "connection per concurrent request.",
            "",
        ]
    )
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
