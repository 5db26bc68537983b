from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from quiver.errors import ConfigError, Unavailable
from quiver.generate.params import SamplingParams
from quiver.generate.service import engine_config, load_llm


def test_parameters_table_maps_to_the_engine_config() -> None:
    cfg = engine_config({"kv_cache_blocks": 100, "block_size": 8, "dtype": "bfloat16", "max_waiting": 3})
    assert (cfg.num_kv_blocks, cfg.block_size, cfg.dtype, cfg.max_waiting) == (100, 8, "bfloat16", 3)
    with pytest.raises(ConfigError, match="'kv_blocks' is not an llm parameter"):
        engine_config({"kv_blocks": 1}, "repo/m/config.toml")
    with pytest.raises(ConfigError, match="block_size: expected a power of two"):
        engine_config({"block_size": 12})


def test_stop_without_drain_fails_requests_in_flight_and_drain_waits(gpt2_dir: Path) -> None:
    async def main() -> None:
        service = load_llm(gpt2_dir, {"name": "m", "parameters": {"num_threads": 2}})
        await service.start()
        long = service.submit([1, 2, 3], SamplingParams(max_tokens=200, ignore_eos=True))
        await long.__anext__()
        await service.stop(drain=False)
        with pytest.raises(Unavailable):
            async for _ in long:
                pass
        assert service.engine.block_manager.num_free == service.engine.config.num_kv_blocks

        service = load_llm(gpt2_dir, {"name": "m", "parameters": {"num_threads": 2}})
        await service.start()
        short = service.submit([1, 2, 3], SamplingParams(max_tokens=5, ignore_eos=True))
        await service.stop(drain=True)
        outs = [o async for o in short]
        assert outs[-1].finished and outs[-1].num_output_tokens == 5

    asyncio.run(main())
