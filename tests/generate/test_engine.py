"""The engine against Hugging Face transformers on the same weights: greedy output token for token."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from quiver.errors import InvalidInput, Overloaded
from quiver.generate.engine import LLMEngine
from quiver.generate.params import EngineConfig, SamplingParams

PROMPTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. Quiver serves language models with",
    "a",
    "Prefix caching reuses the blocks of a shared system prompt. 0123456789",
]
GREEDY = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)


def hf_greedy(model_dir: Path, prompt: list[int], n: int, dtype: torch.dtype = torch.float32) -> list[int]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    model.generation_config.eos_token_id = None  # ignore EOS (min_new_tokens would mask it instead)
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, pad_token_id=0)
    return list(out[0, len(prompt) :].tolist())


@pytest.fixture(scope="module")
def references(gpt2_dir: Path, llama_dir: Path) -> dict[str, list[list[int]]]:
    refs = {}
    for name, d in (("gpt2", gpt2_dir), ("llama", llama_dir)):
        eng = LLMEngine(d, EngineConfig(num_kv_blocks=8))
        refs[name] = [hf_greedy(d, eng.tokenizer.encode(p), GREEDY.max_tokens) for p in PROMPTS]
    return refs


def model_dir(name: str, gpt2_dir: Path, llama_dir: Path) -> Path:
    return gpt2_dir if name == "gpt2" else llama_dir


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.parametrize(
    "config",
    [
        EngineConfig(num_kv_blocks=128, block_size=16),  # all prompts in one step
        EngineConfig(num_kv_blocks=128, block_size=4, max_num_batched_tokens=8, max_num_seqs=4),  # chunked
        EngineConfig(num_kv_blocks=20, block_size=4, max_num_batched_tokens=64, max_num_seqs=4),  # preempts
    ],
    ids=["batched", "chunked-prefill", "preemption"],
)
def test_greedy_matches_transformers_token_for_token(
    name: str, config: EngineConfig, gpt2_dir: Path, llama_dir: Path, references: dict[str, list[list[int]]]
) -> None:
    engine = LLMEngine(model_dir(name, gpt2_dir, llama_dir), config)
    prompts = [engine.tokenizer.encode(p) for p in PROMPTS]
    results = engine.generate(prompts, GREEDY)
    assert [r[0].output_token_ids for r in results] == references[name]
    if config.num_kv_blocks == 20:
        assert engine.scheduler.num_preemptions > 0
    assert engine.block_manager.num_free == config.num_kv_blocks  # every block came back


def test_fragmented_block_tables_give_the_same_output(gpt2_dir: Path, references: dict[str, list[list[int]]]) -> None:
    engine = LLMEngine(gpt2_dir, EngineConfig(num_kv_blocks=256, block_size=4))
    # interleave allocations so sequences' blocks are not consecutive (attention reads several runs)
    engine.block_manager._take_for = _scattered(engine.block_manager._take)  # type: ignore[method-assign]
    seqs = [engine.add_request(str(i), engine.tokenizer.encode(p), GREEDY)[0] for i, p in enumerate(PROMPTS)]
    engine.step()
    table = seqs[1].block_table
    assert any(b != a + 1 for a, b in itertools.pairwise(table))  # really fragmented
    while engine.has_work:
        engine.step()
    assert [s.output_token_ids for s in seqs] == references["gpt2"]


def _scattered(take):  # type: ignore[no-untyped-def]
    def scattered(seq: object) -> int:
        block = take(None)
        take(None)  # leave a hole
        return int(block)

    return scattered


def test_prefix_cache_hits_give_the_same_output(llama_dir: Path, references: dict[str, list[list[int]]]) -> None:
    engine = LLMEngine(llama_dir, EngineConfig(num_kv_blocks=128, block_size=4))
    prompt = engine.tokenizer.encode(PROMPTS[1])
    first = engine.generate([prompt], GREEDY)[0][0]
    second = engine.generate([prompt], GREEDY)[0][0]
    assert second.num_cached_prompt_tokens == (len(prompt) - 1) // 4 * 4 > 0
    assert first.output_token_ids == second.output_token_ids == references["llama"][1]


def test_bfloat16_runs_close_to_transformers(llama_dir: Path) -> None:
    engine = LLMEngine(llama_dir, EngineConfig(num_kv_blocks=64, dtype="bfloat16"))
    prompt = engine.tokenizer.encode(PROMPTS[1])
    ours = engine.generate([prompt], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))[0][0]
    ref = hf_greedy(llama_dir, prompt, 8, torch.bfloat16)
    assert ours.output_token_ids[:4] == ref[:4]  # bf16 rounding may tip a later near-tie


@pytest.mark.parametrize("kv_cache_dtype", ["auto", "bfloat16"])
def test_bfloat16_weights_with_either_cache_dtype_run_close_to_transformers(
    gpt2_dir: Path, kv_cache_dtype: str
) -> None:
    config = EngineConfig(num_kv_blocks=64, dtype="bfloat16", kv_cache_dtype=kv_cache_dtype)
    engine = LLMEngine(gpt2_dir, config)
    want = torch.float32 if kv_cache_dtype == "auto" else torch.bfloat16  # auto: float32 attention on CPU
    assert engine.runner.kv_caches[0][0].dtype == want
    prompt = engine.tokenizer.encode(PROMPTS[0])
    ours = engine.generate([prompt], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))[0][0]
    assert ours.output_token_ids[:4] == hf_greedy(gpt2_dir, prompt, 8, torch.bfloat16)[:4]


def test_kv_cache_dtype_is_validated() -> None:
    with pytest.raises(ValueError, match="kv_cache_dtype: expected auto"):
        EngineConfig(kv_cache_dtype="int8")


def test_seeded_sampling_is_reproducible_and_n_gives_distinct_choices(gpt2_dir: Path) -> None:
    engine = LLMEngine(gpt2_dir, EngineConfig(num_kv_blocks=128))
    prompt = engine.tokenizer.encode(PROMPTS[0])
    params = SamplingParams(n=3, max_tokens=16, temperature=1.0, top_k=50, top_p=0.9, seed=7, ignore_eos=True)
    a = [s.output_token_ids for s in engine.generate([prompt], params)[0]]
    b = [s.output_token_ids for s in engine.generate([prompt], params)[0]]
    assert a == b and len(a) == 3 and len({tuple(x) for x in a}) > 1


def test_top_k_1_is_greedy(gpt2_dir: Path, references: dict[str, list[list[int]]]) -> None:
    engine = LLMEngine(gpt2_dir, EngineConfig(num_kv_blocks=128))
    prompt = engine.tokenizer.encode(PROMPTS[0])
    out = engine.generate([prompt], SamplingParams(max_tokens=24, temperature=1.5, top_k=1, ignore_eos=True))
    assert out[0][0].output_token_ids == references["gpt2"][0]


def test_stop_tokens_max_tokens_and_logprobs(gpt2_dir: Path, references: dict[str, list[list[int]]]) -> None:
    engine = LLMEngine(gpt2_dir, EngineConfig(num_kv_blocks=128))
    prompt = engine.tokenizer.encode(PROMPTS[1])
    ref = references["gpt2"][1]
    stop_at = ref[5]
    seq = engine.generate([prompt], SamplingParams(max_tokens=24, temperature=0, stop_token_ids=(stop_at,)))[0][0]
    assert seq.output_token_ids == ref[: ref.index(stop_at) + 1] and seq.finish_reason == "stop"
    seq = engine.generate([prompt], SamplingParams(max_tokens=3, temperature=0, logprobs=2, ignore_eos=True))[0][0]
    assert seq.finish_reason == "length" and len(seq.logprobs) == 3
    token, logprob, top = seq.logprobs[0]
    assert token == ref[0] and top[0][0] == token and top[0][1] == pytest.approx(logprob) and logprob <= 0


def test_stop_strings_cut_the_text(gpt2_dir: Path) -> None:
    engine = LLMEngine(gpt2_dir, EngineConfig(num_kv_blocks=128))
    prompt = engine.tokenizer.encode(PROMPTS[1])
    engine.add_request("full", prompt, SamplingParams(max_tokens=24, temperature=0, ignore_eos=True))
    text = ""
    while engine.has_work:
        text += "".join(o.text for o in engine.step())
    stop = text[10:13]
    engine.add_request("cut", prompt, SamplingParams(max_tokens=24, temperature=0, stop=(stop,)))
    pieces, reason = [], None
    while engine.has_work:
        for o in engine.step():
            pieces.append(o.text)
            reason = o.finish_reason
    assert "".join(pieces) == text[: text.index(stop)] and reason == "stop"


def test_invalid_requests_and_a_full_queue_are_refused(gpt2_dir: Path) -> None:
    engine = LLMEngine(gpt2_dir, EngineConfig(num_kv_blocks=128, max_waiting=1, max_model_len=64))
    with pytest.raises(InvalidInput, match="maximum context length is 64"):
        engine.add_request("r", [1] * 60, SamplingParams(max_tokens=5))
    with pytest.raises(InvalidInput):
        engine.add_request("r", [], SamplingParams())
    with pytest.raises(InvalidInput):
        engine.add_request("r", [10**6], SamplingParams())
    engine.add_request("a", [1, 2], SamplingParams())
    with pytest.raises(Overloaded):
        engine.add_request("b", [1, 2], SamplingParams())


def test_abort_frees_blocks(gpt2_dir: Path) -> None:
    engine = LLMEngine(gpt2_dir, EngineConfig(num_kv_blocks=64))
    engine.add_request("r", [1, 2, 3], SamplingParams(max_tokens=50, ignore_eos=True))
    engine.step()
    engine.step()
    assert engine.block_manager.num_free < 64
    engine.abort("r")
    assert engine.block_manager.num_free == 64 and not engine.has_work
