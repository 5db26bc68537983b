"""Sampling from the logits of one step: greedy, temperature, top-k, top-p, per-request seeds, logprobs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from quiver.generate.sequence import Sequence


@dataclass(slots=True)
class Sample:
    token: int
    logprob: float | None  # of the chosen token under the model's distribution (before temperature)
    top: list[tuple[int, float]]  # the best alternatives, when asked for


class Sampler:
    """A generator per seeded sequence (the same seed gives the same text), one shared for the others."""

    def __init__(self, seed: int = 0) -> None:
        self._shared = torch.Generator().manual_seed(seed)
        self._generators: dict[int, torch.Generator] = {}

    def forget(self, seq: Sequence) -> None:
        self._generators.pop(seq.seq_id, None)

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[Sample]:
        """logits: [S, V] float32, one row per sequence in ``seqs``."""
        if not seqs:
            return []
        tokens = logits.argmax(dim=-1).tolist()  # greedy for all; sampled rows are replaced below
        for i, seq in enumerate(seqs):
            if not seq.params.greedy:
                tokens[i] = self._sample_row(logits[i], seq)
        want = [i for i, s in enumerate(seqs) if s.params.logprobs is not None]
        out = [Sample(t, None, []) for t in tokens]
        if want:
            logprobs = torch.log_softmax(logits[want], dim=-1)  # [W, V]
            for j, i in enumerate(want):
                row = logprobs[j]
                out[i].logprob = float(row[tokens[i]])
                k = seqs[i].params.logprobs or 0
                if k:
                    values, ids = row.topk(k)
                    out[i].top = list(zip(ids.tolist(), values.tolist(), strict=True))
        return out

    def _sample_row(self, row: torch.Tensor, seq: Sequence) -> int:
        p = seq.params
        row = row / p.temperature  # [V]
        if p.top_k > 0 and p.top_k < row.shape[0]:
            kth = torch.topk(row, p.top_k).values[-1]
            row = row.masked_fill(row < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_logits, order = row.sort(descending=True)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            drop = cumulative - sorted_logits.softmax(-1) >= p.top_p  # keep the smallest set reaching top_p
            row = row.scatter(0, order[drop], float("-inf"))
        probs = row.softmax(-1)
        return int(torch.multinomial(probs, 1, generator=self._generator(seq)))

    def _generator(self, seq: Sequence) -> torch.Generator:
        if seq.params.seed is None:
            return self._shared
        g = self._generators.get(seq.seq_id)
        if g is None:
            g = self._generators[seq.seq_id] = torch.Generator().manual_seed(seq.params.seed + seq.index)
        return g
