"""LUSIFER stages: bidirectionality, layouts, random-weight models, GPU paths (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from lusifer_rag.embedder.lusifer import LusiferModel
from lusifer_rag.embedder.lusifer.attention import PackedAttention, PaddedAttention
from lusifer_rag.embedder.lusifer.stages import xlmr_positions
from lusifer_reference import single_thread, TEXTS, cached_checkpoint, cached_embedder, llm_config, reference_embed, xlmr_config


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread (no OpenMP spin contention on small shared CPUs)."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def random_model():
    return LusiferModel.random(xlmr_config(vocab_size=1000), llm_config("mistral"), num_added_tokens=2, seed=3)


def test_later_token_changes_first_token_in_llm(random_model):
    llm = random_model.llm
    x = torch.randn(1, 6, 64)
    y = x.clone()
    y[0, -1] += 1.0  # only the LAST token differs
    pos = torch.arange(6)[None]
    full = PaddedAttention(torch.ones(1, 6, dtype=torch.bool))
    with torch.inference_mode():
        a, b = llm(x, pos, full), llm(y, pos, full)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4  # causal attention would leave token 0 unchanged


def test_padding_keys_are_masked(random_model):
    llm = random_model.llm
    x = torch.randn(1, 6, 64)
    y = x.clone()
    y[0, 4:] = torch.randn(2, 64)  # change the padded slots only
    pos = torch.arange(6)[None]
    attn = PaddedAttention(torch.tensor([[True] * 4 + [False] * 2]))
    with torch.inference_mode():
        diff = (llm(x, pos, attn) - llm(y, pos, attn))[0, :4].abs().max()
    assert diff <= 1e-6


def test_xlmr_positions_packed_equal_padded():
    ids = [[0, 5, 9, 2], [0, 7, 2], [0, 3, 3, 3, 2]]
    padded = torch.ones(3, 8, dtype=torch.long)
    for i, x in enumerate(ids):
        padded[i, : len(x)] = torch.tensor(x)
    pos_padded = xlmr_positions(padded, None, 1)
    flat = torch.tensor(sum(ids, []))
    starts = torch.tensor([0] * 4 + [4] * 3 + [7] * 5)
    pos_packed = xlmr_positions(flat, starts, 1)
    assert torch.equal(pos_packed, pos_padded[padded != 1])
    assert pos_padded[0].tolist() == [2, 3, 4, 5, 1, 1, 1, 1]  # HF: padding_idx + 1 + rank; pads at padding_idx


def test_random_model_layouts_agree(random_model):
    lengths = torch.tensor([5, 13, 1, 8])
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 1000, (int(n),), generator=g) for n in lengths]
    padded = torch.ones(4, 16, dtype=torch.long)
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = s
    cu = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    with torch.inference_mode():
        a = random_model.forward_padded(padded, lengths)
        b = random_model.forward_packed(torch.cat(seqs), cu, 13)
        alone = random_model.forward_padded(padded[1:2, :16], lengths[1:2])
    assert a.shape == (4, random_model.dim)
    assert (a - b).abs().max() <= 1e-5
    assert (a[1] - alone[0]).abs().max() <= 1e-5  # added tokens: batch-independent


def test_packed_sdpa_mask_is_block_diagonal():
    cu = torch.tensor([0, 2, 5], dtype=torch.int32)
    attn = PackedAttention(cu, 3, torch.tensor([0, 0, 1, 1, 1]), "sdpa")
    assert attn.kernel == "sdpa"
    assert attn.mask[0, 0].int().tolist() == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1],
                                              [0, 0, 1, 1, 1], [0, 0, 1, 1, 1]]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("kernel", ["auto", "flex", "flash"])
def test_cuda_bf16_packed_matches_fp32_reference(kernel):
    from lusifer_rag.embedder.lusifer.attention import flash_attn_available
    from lusifer_rag.embedder import load_embedder

    if kernel == "flash" and not flash_attn_available():
        pytest.skip("flash-attn not installed")
    ck = cached_checkpoint("mistral", 4)
    emb = load_embedder(f"lusifer:{ck.dir}", device="cuda:0", packed_kernel=kernel)
    assert emb.packs_sequences and emb.dtype == torch.bfloat16
    cos = torch.nn.functional.cosine_similarity(torch.from_numpy(emb.embed_queries(TEXTS)), reference_embed(ck, TEXTS))
    assert cos.min().item() >= 0.99


@pytest.mark.gpu
@cuda
def test_cuda_padded_equals_packed_bf16():
    ck = cached_checkpoint("mistral", 0)
    from lusifer_rag.embedder import load_embedder

    a = load_embedder(f"lusifer:{ck.dir}", device="cuda:0", attention="padded").embed_documents(TEXTS)
    b = load_embedder(f"lusifer:{ck.dir}", device="cuda:0", attention="packed").embed_documents(TEXTS)
    assert (a * b).sum(-1).min() >= 0.999


def test_cpu_default_is_padded_fp32():
    emb = cached_embedder("mistral", 0)
    assert emb.attention == "padded" and not emb.packs_sequences and emb.dtype == torch.float32
    assert len(emb.replicas) == 1 and emb.replicas[0][1].type == "cpu"
