"""Generative serving benchmark (issue 5): Quiver's engine vs Hugging Face ``generate`` on this CPU.

One command (writes bench/generate/RESULTS.md and bench/generate/workload.json):

    flock /tmp/quiver-bench.lock .venv/bin/python bench/generate/bench_generate.py

Model: GPT-2-124M-shaped random weights built from ``GPT2Config()`` (no download), 2 threads, in bfloat16
by default (``--dtype float32`` for the float32 run, written to another file with ``--out``). The engine and
the HF baselines always run in the same dtype. bfloat16 is how one serves on a CPU with AVX512-BF16 (this
one): its matmuls run 3-4x faster than float32 ones; the engine keeps its KV cache and attention in float32
(``kv_cache_dtype = "auto"``), where torch's CPU attention kernels are fast.
Workload (seeded, saved): 64 requests, prompt lengths U[16, 512], output lengths U[16, 256], EOS ignored,
Poisson arrivals at 0.9x the engine's measured capacity (all-at-once throughput).
Baselines, same run: HF ``generate`` one request at a time; HF ``generate`` on static batches of 8 in
arrival order (left-padded, a batch runs until its longest output is done). Both baselines ignore
arrival times (they start each request as soon as they can), which favours them.
The served numbers come from ``LLMService`` in a fresh process, as ``quiver serve`` runs it (see
``in_server_process``); "in-process" feeds the same arrivals to the bare engine between its steps.
Also: batch-1 decode tokens/s (ours vs HF), prefix caching TTFT on/off (16 requests sharing a 512-token
system prompt, sent one after another), TTFT / inter-token latency percentiles, and decode throughput as
achieved memory bandwidth vs the machine's measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from quiver.generate.engine import LLMEngine  # noqa: E402
from quiver.generate.model_runner import DTYPES, kv_cache_dtype  # noqa: E402
from quiver.generate.params import EngineConfig, SamplingParams  # noqa: E402
from quiver.generate.service import LLMService  # noqa: E402
from quiver.generate.torch_thread import TORCH_THREAD  # noqa: E402

THREADS = 2
DTYPE = "bfloat16"  # --dtype; engine and HF baselines always run in the same dtype
CACHE = ROOT / "bench" / ".cache" / "gpt2-124m"
OUT = Path(__file__).resolve().parent


@dataclass
class Req:
    prompt: list[int]
    max_tokens: int
    gap: float  # exponential(1) inter-arrival gap; scaled by 1 / rate


def build_model(path: Path) -> Path:
    """GPT-2 124M shape with random weights, and a word-level tokenizer over its 50257 ids."""
    if (path / "model.safetensors").exists():
        return path
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).eval().save_pretrained(path)
    vocab = {f"t{i}": i for i in range(50257)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "t50256"}))
    return path


def make_workload(seed: int, n: int) -> list[Req]:
    rng = np.random.default_rng(seed)
    reqs = []
    for _ in range(n):
        plen = int(rng.integers(16, 513))
        reqs.append(
            Req(
                prompt=rng.integers(0, 50257, size=plen).tolist(),
                max_tokens=int(rng.integers(16, 257)),
                gap=float(rng.exponential(1.0)),
            )
        )
    return reqs


def engine_config(**kw: Any) -> EngineConfig:
    base = dict(
        num_kv_blocks=2048,
        block_size=16,
        max_num_seqs=64,
        max_num_batched_tokens=512,
        num_threads=THREADS,
        dtype=DTYPE,
    )
    base.update(kw)
    return EngineConfig(**base)  # type: ignore[arg-type]


def params(r: Req) -> SamplingParams:
    return SamplingParams(max_tokens=r.max_tokens, temperature=0.0, ignore_eos=True)


# -- machine ----------------------------------------------------------------------------------------------
def copy_bandwidth_gbs() -> float:
    """Best of 5 copies of 1 GiB (bytes read + bytes written per second)."""
    a = torch.empty(256 * 1024 * 1024, dtype=torch.float32).fill_(1.0)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.numel() * 4 / best / 1e9


# -- ours -------------------------------------------------------------------------------------------------
def engine_offline(model_dir: Path, reqs: list[Req]) -> dict[str, float]:
    engine = LLMEngine(model_dir, engine_config())
    t = time.perf_counter()
    for i, r in enumerate(reqs):
        engine.add_request(str(i), r.prompt, params(r))
    while engine.has_work:
        engine.step()
    dt = time.perf_counter() - t
    out = sum(r.max_tokens for r in reqs)
    return {"seconds": dt, "output_tokens": out, "tok_s": out / dt, "req_s": len(reqs) / dt}


def engine_poisson_inprocess(model_dir: Path, reqs: list[Req], rate: float) -> dict[str, float]:
    """The same arrivals, fed to the engine between steps in this thread (no service, no event loop):
    what the engine itself sustains, measured like the in-process HF baselines."""
    engine = LLMEngine(model_dir, engine_config())
    arrivals = np.cumsum([r.gap for r in reqs]) / rate
    arrivals -= arrivals[0]
    start = time.perf_counter()
    added = 0
    while added < len(reqs) or engine.has_work:
        now = time.perf_counter() - start
        while added < len(reqs) and arrivals[added] <= now:
            engine.add_request(str(added), reqs[added].prompt, params(reqs[added]))
            added += 1
        if engine.has_work:
            engine.step()
        elif added < len(reqs):
            time.sleep(max(0.0, arrivals[added] - now))
    dt = time.perf_counter() - start
    out = sum(r.max_tokens for r in reqs)
    return {"seconds": dt, "output_tokens": out, "tok_s": out / dt}


def in_server_process(fn: Any, *args: Any) -> Any:
    """``asyncio.run(fn(*args))`` in a fresh process, the way ``quiver serve`` runs an LLM: there torch only
    ever runs on the torch thread. Here the main thread has run the baselines, and libgomp gives each thread
    that ran torch its own worker pool; with more OpenMP threads than cores every kernel pays a futex wake-up
    (see ``quiver.generate.torch_thread``), which would slow the service's steps about 2x."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=_set_dtype, initargs=(DTYPE,)) as pool:
        return pool.submit(_run_async, fn, *args).result()


def _set_dtype(dtype: str) -> None:
    global DTYPE
    DTYPE = dtype


def _run_async(fn: Any, *args: Any) -> Any:
    return asyncio.run(fn(*args))


async def _engine_poisson(model_dir: Path, reqs: list[Req], rate: float) -> dict[str, Any]:
    engine = TORCH_THREAD.call(LLMEngine, model_dir, engine_config())
    service = LLMService("bench", engine)
    await service.start()
    records: list[dict[str, Any]] = []
    start = time.perf_counter()

    async def one(r: Req, at: float) -> None:
        await asyncio.sleep(max(0.0, at - (time.perf_counter() - start)))
        sent = time.perf_counter()
        times = []
        async for out in service.generate(r.prompt, params(r)):
            times.append(time.perf_counter())
            assert not out.finished or out.num_output_tokens == r.max_tokens
        records.append({"sent": sent, "times": times})

    arrivals = np.cumsum([r.gap for r in reqs]) / rate
    arrivals -= arrivals[0]
    await asyncio.gather(*(one(r, float(a)) for r, a in zip(reqs, arrivals, strict=True)))
    end = max(rec["times"][-1] for rec in records)
    await service.stop(drain=True)
    ttft = [rec["times"][0] - rec["sent"] for rec in records]
    itl = [b - a for rec in records for a, b in zip(rec["times"], rec["times"][1:], strict=False)]
    out = sum(r.max_tokens for r in reqs)
    s = engine.stats
    return {
        "seconds": end - start,
        "output_tokens": out,
        "tok_s": out / (end - start),
        "rate_req_s": rate,
        "ttft": _pct(ttft),
        "itl": _pct(itl),
        "steps": s.steps,
        "context_tokens": s.context_tokens,
        "preemptions": engine.scheduler.num_preemptions,
    }


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.array(xs)
    return {f"p{p}": float(np.percentile(a, p)) for p in (50, 90, 99)} | {"mean": float(a.mean())}


def engine_batch1_decode(model_dir: Path, prompt: list[int], n: int) -> float:
    """Decode tokens/s at batch 1: time(n + 1 tokens) - time(1 token) removes the prefill."""
    engine = LLMEngine(model_dir, engine_config(enable_prefix_caching=False))

    def run(k: int) -> float:
        t = time.perf_counter()
        engine.generate([prompt], SamplingParams(max_tokens=k, temperature=0.0, ignore_eos=True))
        return time.perf_counter() - t

    run(8)  # warm up
    best = min(run(n + 1) - run(1) for _ in range(2))
    return n / best


async def _prefix_ttft(model_dir: Path, system: list[int], suffixes: list[list[int]], caching: bool) -> list[float]:
    engine = TORCH_THREAD.call(LLMEngine, model_dir, engine_config(enable_prefix_caching=caching))
    service = LLMService("prefix", engine)
    await service.start()
    ttfts = []
    for suffix in suffixes:  # one after another: TTFT is the prefill, not queueing
        sent = time.perf_counter()
        first = None
        async for _ in service.generate(system + suffix, SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)):
            if first is None:
                first = time.perf_counter() - sent
        ttfts.append(first or 0.0)
    await service.stop(drain=True)
    return ttfts


# -- Hugging Face baselines -------------------------------------------------------------------------------
def hf_model(model_dir: Path) -> Any:
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=getattr(torch, DTYPE)).eval()
    model.generation_config.eos_token_id = None  # ignore EOS, like the engine's ignore_eos
    model.generation_config.pad_token_id = 0
    return model


@torch.inference_mode()
def hf_sequential(model: Any, reqs: list[Req]) -> dict[str, float]:
    t = time.perf_counter()
    for r in reqs:
        model.generate(torch.tensor([r.prompt]), max_new_tokens=r.max_tokens, do_sample=False)
    dt = time.perf_counter() - t
    out = sum(r.max_tokens for r in reqs)
    return {"seconds": dt, "output_tokens": out, "tok_s": out / dt}


@torch.inference_mode()
def hf_static8(model: Any, reqs: list[Req]) -> dict[str, float]:
    t = time.perf_counter()
    generated = 0
    for i in range(0, len(reqs), 8):
        batch = reqs[i : i + 8]
        width = max(len(r.prompt) for r in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for j, r in enumerate(batch):  # left padding
            ids[j, width - len(r.prompt) :] = torch.tensor(r.prompt)
            mask[j, width - len(r.prompt) :] = 1
        longest = max(r.max_tokens for r in batch)
        model.generate(ids, attention_mask=mask, max_new_tokens=longest, do_sample=False)
        generated += longest * len(batch)
    dt = time.perf_counter() - t
    out = sum(r.max_tokens for r in reqs)  # useful tokens: what the requests asked for
    return {"seconds": dt, "output_tokens": out, "tok_s": out / dt, "generated_tokens": generated}


@torch.inference_mode()
def hf_batch1_decode(model: Any, prompt: list[int], n: int) -> float:
    ids = torch.tensor([prompt])

    def run(k: int) -> float:
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=k, do_sample=False)
        return time.perf_counter() - t

    run(8)
    best = min(run(n + 1) - run(1) for _ in range(2))
    return n / best


# -- main -------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--skip-hf-sequential", action="store_true", help="(for quick checks only)")
    ap.add_argument("--out", default="RESULTS.md", help="report file name in bench/generate/")
    args = ap.parse_args()
    global DTYPE
    DTYPE = args.dtype
    torch.set_num_threads(THREADS)
    model_dir = build_model(CACHE)
    reqs = make_workload(args.seed, args.requests)
    (OUT / "workload.json").write_text(
        json.dumps({"seed": args.seed, "requests": [asdict(r) for r in reqs]}, separators=(",", ":"))
    )
    results: dict[str, Any] = {}
    wall = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - wall:7.1f}s] {msg}", flush=True)

    results["bandwidth_gbs"] = copy_bandwidth_gbs()
    log(f"copy bandwidth {results['bandwidth_gbs']:.1f} GB/s")
    hf = hf_model(model_dir)
    weight_bytes = sum(p.numel() * p.element_size() for p in hf.parameters())  # tied LM head counted once
    kv_dtype = kv_cache_dtype("auto", DTYPES[DTYPE], torch.device("cpu"))  # the engine's cache (float32 on CPU)
    kv_bytes_per_token = 2 * 12 * 768 * kv_dtype.itemsize
    results["kv_dtype"] = str(kv_dtype).removeprefix("torch.")

    prompt = reqs[0].prompt[:128]
    results["b1_engine"] = engine_batch1_decode(model_dir, prompt, 128)
    results["b1_hf"] = hf_batch1_decode(hf, prompt, 128)
    log(f"batch-1 decode: engine {results['b1_engine']:.1f} tok/s, HF {results['b1_hf']:.1f} tok/s")

    results["offline"] = engine_offline(model_dir, reqs)
    log(f"engine, all at once: {results['offline']['tok_s']:.1f} tok/s ({results['offline']['seconds']:.1f}s)")
    rate = 0.9 * results["offline"]["req_s"]
    results["poisson"] = in_server_process(_engine_poisson, model_dir, reqs, rate)
    log(f"engine, Poisson {rate:.2f} req/s: {results['poisson']['tok_s']:.1f} tok/s")
    results["poisson_inprocess"] = engine_poisson_inprocess(model_dir, reqs, rate)
    log(f"engine in-process, Poisson {rate:.2f} req/s: {results['poisson_inprocess']['tok_s']:.1f} tok/s")

    results["hf_static8"] = hf_static8(hf, reqs)
    log(f"HF static batches of 8: {results['hf_static8']['tok_s']:.1f} tok/s")
    if not args.skip_hf_sequential:
        results["hf_sequential"] = hf_sequential(hf, reqs)
        log(f"HF one at a time: {results['hf_sequential']['tok_s']:.1f} tok/s")

    rng = np.random.default_rng(args.seed + 1)
    system = rng.integers(0, 50257, size=512).tolist()
    suffixes = [rng.integers(0, 50257, size=int(rng.integers(16, 65))).tolist() for _ in range(16)]
    off = in_server_process(_prefix_ttft, model_dir, system, suffixes, False)
    on = in_server_process(_prefix_ttft, model_dir, system, suffixes, True)
    results["prefix"] = {"off": _pct(off), "on": _pct(on)}
    log(f"prefix caching median TTFT: off {np.median(off) * 1e3:.0f} ms, on {np.median(on) * 1e3:.0f} ms")

    results["weight_bytes"] = weight_bytes
    results["kv_bytes_per_token"] = kv_bytes_per_token
    results["wall_s"] = time.perf_counter() - wall
    (OUT / f"results-{DTYPE}.json").write_text(json.dumps(results, indent=1))
    report = render(results, args)
    (OUT / args.out).write_text(report)
    print(report)


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    p, off = r["poisson"], r["offline"]
    seq, st8 = r.get("hf_sequential"), r["hf_static8"]
    wb, kvb, bw = r["weight_bytes"], r["kv_bytes_per_token"], r["bandwidth_gbs"]
    # Decode at batch 1 reads every weight once per token, plus the KV of ~128-256 context tokens.
    b1_bytes = wb + 192 * kvb
    serving_bytes = p["steps"] * wb + p["context_tokens"] * kvb
    prefix_ratio = r["prefix"]["off"]["p50"] / r["prefix"]["on"]["p50"]
    inproc = r["poisson_inprocess"]
    rows = [
        ("Output tokens/s, engine through LLMService (Poisson near capacity)", f"{p['tok_s']:.1f}", ""),
        ("Output tokens/s, engine in-process (same Poisson arrivals)", f"{inproc['tok_s']:.1f}", ""),
        ("Output tokens/s, engine (all requests at t=0)", f"{off['tok_s']:.1f}", ""),
        (
            "Output tokens/s, HF generate one at a time",
            f"{seq['tok_s']:.1f}" if seq else "skipped",
            f"engine = {p['tok_s'] / seq['tok_s']:.2f}x via the service, {inproc['tok_s'] / seq['tok_s']:.2f}x "
            "in-process (target >= 6x)"
            if seq
            else "",
        ),
        (
            "Output tokens/s, HF generate static batches of 8",
            f"{st8['tok_s']:.1f}",
            f"engine = {p['tok_s'] / st8['tok_s']:.2f}x via the service, {inproc['tok_s'] / st8['tok_s']:.2f}x "
            "in-process (target >= 2x)",
        ),
        (
            "Batch-1 decode tokens/s, engine",
            f"{r['b1_engine']:.1f}",
            f"{r['b1_engine'] / r['b1_hf']:.2f}x HF (target >= 0.9x)",
        ),
        ("Batch-1 decode tokens/s, HF generate", f"{r['b1_hf']:.1f}", ""),
        ("Median TTFT, 512-token shared prefix, caching off", f"{r['prefix']['off']['p50'] * 1e3:.0f} ms", ""),
        (
            "Median TTFT, 512-token shared prefix, caching on",
            f"{r['prefix']['on']['p50'] * 1e3:.0f} ms",
            f"{prefix_ratio:.1f}x lower (target >= 3x)",
        ),
    ]
    lat = [
        ("TTFT (Poisson run)", p["ttft"]),
        ("Inter-token latency (Poisson run)", p["itl"]),
    ]
    cpu = _cpu_name()
    lines = [
        "# Generative serving benchmark (issue 5)",
        "",
        "Command (from the repository root):",
        "",
        "    flock /tmp/quiver-bench.lock .venv/bin/python bench/generate/bench_generate.py"
        + (f" --dtype {DTYPE} --out {args.out}" if DTYPE != "bfloat16" else ""),
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, torch threads {THREADS}. Python {platform.python_version()}, "
        f"torch {torch.__version__}, transformers {_version('transformers')}. Wall time {r['wall_s']:.0f} s.",
        "",
        f"Model: GPT-2 124M shape, random weights from `GPT2Config()`, {DTYPE} weights for the engine and for HF "
        f"({wb / 1e6:.0f} MB of weights; the engine's KV cache in {r['kv_dtype']}). "
        f"Workload: {args.requests} requests, seed {args.seed} (saved in `workload.json`), prompts U[16, 512], "
        f"outputs U[16, 256] (EOS ignored), {p['output_tokens']} output tokens in all; Poisson arrivals at "
        f"{p['rate_req_s']:.2f} req/s = 0.9x the engine's all-at-once throughput. Engine: 2048 blocks of 16 "
        "tokens, max 64 sequences, 512-token step budget, chunked prefill and prefix caching on "
        f"({p['preemptions']} preemptions). HF baselines ignore arrival times (favours them).",
        "",
        "| metric | value | vs target |",
        "| --- | ---: | --- |",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "| latency | p50 | p90 | p99 | mean |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[
            f"| {name} | {d['p50'] * 1e3:.0f} ms | {d['p90'] * 1e3:.0f} ms | {d['p99'] * 1e3:.0f} ms | "
            f"{d['mean'] * 1e3:.0f} ms |"
            for name, d in lat
        ],
        "",
        "Memory bandwidth (decode is bound by reading the weights and the KV cache once per step):",
        "",
        f"- measured machine copy bandwidth (read + write, 1 GiB, `torch.Tensor.copy_`): {bw:.1f} GB/s",
        f"- batch-1 decode, engine: {r['b1_engine'] * b1_bytes / 1e9:.1f} GB/s achieved "
        f"({r['b1_engine'] * b1_bytes / 1e9 / bw:.0%} of measured); HF: {r['b1_hf'] * b1_bytes / 1e9:.1f} GB/s",
        f"- serving run (Poisson): {serving_bytes / p['seconds'] / 1e9:.1f} GB/s of weights + KV read on average "
        f"({p['steps']} steps; batching amortizes each weight read over the batch, so serving is compute-bound "
        "on this CPU, not bandwidth-bound)",
        "",
    ]
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
