"""Per-request sampling parameters and the engine's configuration (plain Python, no torch)."""

from __future__ import annotations

from dataclasses import dataclass

_MAX_LOGPROBS = 20


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to sample one request. ``temperature == 0`` is greedy.

    >>> SamplingParams(max_tokens=32, temperature=0.7, top_p=0.9, seed=1, stop=("\\n\\n",))  # doctest: +ELLIPSIS
    SamplingParams(...)
    """

    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None  # None: off; 0: the chosen token's; k: the chosen one's plus the k best
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.n <= 16:
            raise ValueError(f"n: expected 1..16, got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens: expected >= 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature: expected 0..2, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p: expected a value in (0, 1], got {self.top_p}")
        if self.top_k < -1:
            raise ValueError(f"top_k: expected -1, 0 (off) or a positive count, got {self.top_k}")
        if self.logprobs is not None and not 0 <= self.logprobs <= _MAX_LOGPROBS:
            raise ValueError(f"logprobs: expected 0..{_MAX_LOGPROBS}, got {self.logprobs}")
        if len(self.stop) > 4 or any(not s for s in self.stop):
            raise ValueError(f"stop: expected at most 4 non-empty strings, got {list(self.stop)}")
        if any(t < 0 for t in self.stop_token_ids):
            raise ValueError(f"stop_token_ids: expected token ids >= 0, got {list(self.stop_token_ids)}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Internal engine parameters; the model's ``[parameters]`` table maps onto these (see ``service``).

    ``num_kv_blocks`` x ``block_size`` tokens of KV cache are preallocated per layer at load.
    """

    block_size: int = 16
    num_kv_blocks: int = 2048
    max_num_seqs: int = 64  # running sequences per step (the decode batch)
    max_num_batched_tokens: int = 512  # token budget per step (decodes + prefill chunks)
    max_waiting: int = 256  # waiting sequences before new requests get 429
    max_model_len: int | None = None  # None: the model's context length
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    dtype: str = "float32"
    kv_cache_dtype: str = "auto"  # auto: float32 on CPU (fast attention kernels), else the model's dtype
    num_threads: int | None = None  # torch intra-op threads; None: leave torch's default
    device: str = "cpu"
    seed: int = 0  # for requests without their own seed

    def __post_init__(self) -> None:
        if self.block_size < 1 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block_size: expected a power of two >= 1, got {self.block_size}")
        if self.num_kv_blocks < 1:
            raise ValueError(f"num_kv_blocks: expected >= 1, got {self.num_kv_blocks}")
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs: expected >= 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens: expected >= max_num_seqs ({self.max_num_seqs}), "
                f"got {self.max_num_batched_tokens}"
            )
        if self.max_waiting < 1:
            raise ValueError(f"max_waiting: expected >= 1, got {self.max_waiting}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype: expected float32, bfloat16 or float16, got {self.dtype!r}")
        if self.kv_cache_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(
                f"kv_cache_dtype: expected auto, float32, bfloat16 or float16, got {self.kv_cache_dtype!r}"
            )
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len: expected >= 2, got {self.max_model_len}")
