"""Every configuration the benchmark runs. Peers get several, so each is measured at its fastest.

MLP (tiny: HTTP + JSON dominate): one ONNX Runtime thread per model instance is fastest.
MiniLM (compute-bound): two threads, or two single-threaded instances/workers; batches up to 8 (the
issue's concurrency). Peers on MiniLM are context only (the target is in-process ONNX Runtime), so they
run at concurrency 8 alone.
"""

from __future__ import annotations

from bench.serving.servers import ServerSpec

_C8 = (8,)

MLP = [
    ServerSpec("quiver", "b64", "mlp",
               {"max_batch_size": 64, "max_queue_delay_ms": 0.0, "instances": 1, "threads_per_instance": 1}),
    ServerSpec("mlserver", "w0", "mlp", {"workers": 0}),
    ServerSpec("mlserver", "w1", "mlp", {"workers": 1}),
    ServerSpec("mlserver", "w2", "mlp", {"workers": 2}),
    ServerSpec("mlserver", "w0+ab32/2ms", "mlp", {"workers": 0, "max_batch_size": 32, "max_batch_time": 0.002}),
    ServerSpec("mlserver", "w1+ab32/2ms", "mlp", {"workers": 1, "max_batch_size": 32, "max_batch_time": 0.002}),
    ServerSpec("litserve", "w1", "mlp", {"workers": 1}),
    ServerSpec("litserve", "w2", "mlp", {"workers": 2}),
    ServerSpec("litserve", "w1+b32/2ms", "mlp", {"workers": 1, "max_batch_size": 32, "batch_timeout": 0.002}),
]  # fmt: skip

MINILM = [
    ServerSpec("quiver", "i1t2-b8/2ms", "minilm",
               {"max_batch_size": 8, "max_queue_delay_ms": 2.0, "instances": 1, "threads_per_instance": 2}),
    ServerSpec("quiver", "i2t1-b4/2ms", "minilm",
               {"max_batch_size": 4, "max_queue_delay_ms": 2.0, "instances": 2, "threads_per_instance": 1}),
    ServerSpec("quiver", "i1t2-b4/2ms", "minilm",
               {"max_batch_size": 4, "max_queue_delay_ms": 2.0, "instances": 1, "threads_per_instance": 2}, _C8),
    ServerSpec("quiver", "i2t1-b4/0ms", "minilm",
               {"max_batch_size": 4, "max_queue_delay_ms": 0.0, "instances": 2, "threads_per_instance": 1}, _C8),
    ServerSpec("quiver", "i2t1-b2/0ms", "minilm",
               {"max_batch_size": 2, "max_queue_delay_ms": 0.0, "instances": 2, "threads_per_instance": 1}, _C8),
    ServerSpec("mlserver", "w0t2", "minilm", {"workers": 0, "threads": 2}, _C8),
    ServerSpec("mlserver", "w0t2+ab8/5ms", "minilm",
               {"workers": 0, "threads": 2, "max_batch_size": 8, "max_batch_time": 0.005}, _C8),
    ServerSpec("litserve", "w1t2", "minilm", {"workers": 1, "threads": 2}, _C8),
    ServerSpec("litserve", "w1t2+b8/5ms", "minilm",
               {"workers": 1, "threads": 2, "max_batch_size": 8, "batch_timeout": 0.005}, _C8),
]  # fmt: skip
