from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from quiver.generate.engine import LLMEngine
from quiver.generate.params import SamplingParams
from quiver.generate.service import load_llm
from quiver.generate.torch_thread import TORCH_THREAD, TorchThread


def test_jobs_run_in_order_on_one_thread_and_results_and_errors_come_back() -> None:
    worker = TorchThread("test-torch")
    seen: list[tuple[int, str]] = []
    for i in range(5):
        worker.post(lambda i=i: seen.append((i, threading.current_thread().name)))
    assert worker.call(lambda a, b: a + b, 2, 3) == 5
    assert seen == [(i, "test-torch") for i in range(5)]
    with pytest.raises(ValueError, match="bad"):
        worker.call(_raise, ValueError("bad"))
    # a job that calls back into its own thread runs inline instead of waiting for itself
    assert worker.call(lambda: worker.call(lambda: threading.current_thread().name)) == "test-torch"
    worker.post(_raise_plain)  # a failing posted job is logged; the thread keeps serving
    assert worker.call(lambda: 7) == 7


def test_the_service_builds_and_steps_its_engine_on_the_torch_thread(
    gpt2_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    init, step = LLMEngine.__init__, LLMEngine.step

    def recording_init(self: LLMEngine, *args: object) -> None:
        threads.add(threading.current_thread().name)
        init(self, *args)  # type: ignore[arg-type]

    def recording_step(self: LLMEngine) -> list:  # type: ignore[type-arg]
        threads.add(threading.current_thread().name)
        return step(self)

    monkeypatch.setattr(LLMEngine, "__init__", recording_init)
    monkeypatch.setattr(LLMEngine, "step", recording_step)

    async def main() -> list[int]:
        service = load_llm(gpt2_dir, {"name": "m", "parameters": {"num_threads": 2}})
        await service.start()
        outs = [o async for o in service.generate([1, 2, 3], SamplingParams(max_tokens=4, ignore_eos=True))]
        await service.stop()
        return [o.token_ids[0] for o in outs]

    assert len(asyncio.run(main())) == 4
    assert threads == {TORCH_THREAD.name}


def _raise(exc: Exception) -> None:
    raise exc


def _raise_plain() -> None:
    raise RuntimeError("a bug in a job")
