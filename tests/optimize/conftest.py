"""Tiny models built in the test: a trained torch MLP on breast-cancer data and a random-weight BERT folder
(with a word-level tokenizer) from a config. Everything seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "model",
    "server",
    "batch",
    "queue",
    "tensor",
    "fast",
    "slow",
    "small",
    "large",
    "cat",
    "runs",
    "walks",
    "reads",
    "writes",
    "data",
    "token",
    "word",
    "text",
    "line",
    "number",
    "vector",
]


@pytest.fixture(scope="session")
def tabular() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(x).astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="session")
def mlp(tabular: tuple[np.ndarray, np.ndarray]) -> object:
    """nn.Sequential 30 -> 64 -> 32 -> 2 (softmax), trained for a second."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(2)
    x, y = tabular
    model = nn.Sequential(
        nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2), nn.Softmax(dim=1)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x[:400]), torch.from_numpy(y[:400])
    for _ in range(100):
        loss = nn.functional.nll_loss(torch.log(model(xt) + 1e-9), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 12)))) for _ in range(n)]


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 4-head, hidden-32 BERT with random weights, saved as a Hugging Face folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="session")
def text_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("text")
    (folder / "eval.txt").write_text("\n".join(sentences(40, 1)) + "\n")
    (folder / "train.txt").write_text("\n".join(sentences(96, 2)) + "\n")
    return folder / "eval.txt", folder / "train.txt"
