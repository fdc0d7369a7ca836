"""LUSIFER equals the official algorithm (reference forward on peft-built official checkpoints), in both layouts."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pytest
import torch

from lusifer_reference import single_thread, TEXTS, cached_checkpoint, cached_embedder, reference_embed

CASES = [("mistral", 0), ("mistral", 4), ("llama", 0), ("qwen2", 0)]
PROMPTS = [("query", None), ("query", ""), ("document", None), ("document", "Retrieve semantically similar text.")]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread (no OpenMP spin contention on small shared CPUs)."""
    with single_thread():
        yield


@lru_cache(maxsize=None)
def _reference(llm: str, n: int, role: str, instruction: str | None) -> torch.Tensor:
    return reference_embed(cached_checkpoint(llm, n), TEXTS, role, instruction)


def _ours(emb, role: str, instruction: str | None) -> torch.Tensor:
    f = emb.embed_queries if role == "query" else emb.embed_documents
    return torch.from_numpy(f(TEXTS, instruction))


@pytest.mark.parametrize("attention", ["padded", "packed"])
@pytest.mark.parametrize("llm,n", CASES)
def test_matches_official_reference(llm, n, attention):
    emb = cached_embedder(llm, n, attention)
    for role, instruction in PROMPTS:
        cos = torch.nn.functional.cosine_similarity(_ours(emb, role, instruction), _reference(llm, n, role, instruction))
        assert cos.shape == (len(TEXTS),)
        assert cos.min().item() >= 0.99999, (llm, n, attention, role, instruction, cos.tolist())


def test_llama_case_uses_llama3_rope():
    # the llama checkpoint is built with llama3 rope scaling: the reference match above covers it
    assert cached_embedder("llama", 0).model.llm.shape.rope["rope_type"] == "llama3"


def test_over_long_text_is_cut_like_official():
    emb = cached_embedder("mistral", 0)
    ids = emb.tokenize(emb.format_texts(TEXTS, "query", None))
    long_ids = ids[-1]
    assert len(long_ids) == 512 and long_ids[0] == 0 and long_ids[-1] != 2  # loses its closing </s>
    assert emb.count_tokens([TEXTS[-1]], "query")[0] > 512


def test_batched_equals_one_at_a_time():
    emb = cached_embedder("mistral", 0)
    texts = TEXTS + [t[: k] for t, k in zip(TEXTS, (3, 11, 7, 2, 5, 0, 20, 900))]
    together = emb.embed_documents(texts)
    alone = np.stack([emb.embed_documents([t])[0] for t in texts])
    assert np.abs(together - alone).max() <= 1e-5


@pytest.mark.parametrize("n", [0, 4])
def test_packed_equals_padded_raw_outputs(n):
    emb = cached_embedder("mistral", n)
    model = emb.model
    ids = emb.tokenize(emb.format_texts(TEXTS, "query", None))
    lengths = torch.tensor([len(x) for x in ids])
    t = int((lengths.max() + 7) // 8 * 8)
    padded = torch.full((len(ids), t), 1, dtype=torch.long)
    for i, x in enumerate(ids):  # test-side construction, independent of TokenBatch
        padded[i, : len(x)] = torch.tensor(x)
    flat = torch.tensor([tok for x in ids for tok in x])
    cu = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    with torch.inference_mode():
        a = model.forward_padded(padded, lengths)
        b = model.forward_packed(flat, cu, int(lengths.max()))
    assert a.shape == b.shape == (len(ids), emb.dim)
    assert (a - b).abs().max().item() <= 1e-5


def test_added_tokens_do_not_depend_on_the_batch():
    # official output depends on the batch when n > 0; ours equals the batch-of-one output in any batch
    emb = cached_embedder("mistral", 4)
    mixed = emb.embed_queries(TEXTS)
    short_only = emb.embed_queries(TEXTS[:2])
    alone = emb.embed_queries(TEXTS[1:2])
    assert np.abs(mixed[:2] - short_only).max() <= 1e-5
    assert np.abs(mixed[1] - alone[0]).max() <= 1e-5


def test_flex_packed_kernel_matches_on_cpu():
    emb = cached_embedder("mistral", 4, "packed", packed_kernel="flex")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager flex on CPU warns that it is the slow reference
        ours = _ours(emb, "query", None)
    cos = torch.nn.functional.cosine_similarity(ours, _reference("mistral", 4, "query", None))
    assert cos.min().item() >= 0.99999
