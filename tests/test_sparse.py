"""BM25 sparse vectors over the real XLM-R vocabulary: which pieces count as terms, and the BM25 weights."""

from __future__ import annotations

import numpy as np
import pytest

from lusifer_rag.embedder.sparse import BM25SparseEncoder


@pytest.fixture(scope="module")
def tokenizer(xlmr_tokenizer_file):
    from transformers import XLMRobertaTokenizerFast

    return XLMRobertaTokenizerFast(tokenizer_file=str(xlmr_tokenizer_file))


def _pieces(tokenizer, vec) -> list[str]:
    return tokenizer.convert_ids_to_tokens([int(i) for i in vec.indices])


def test_terms_drop_special_and_punctuation_pieces_keep_words_in_every_script(tokenizer):
    enc = BM25SparseEncoder(tokenizer)
    vocab = tokenizer.get_vocab()
    for piece in ("▁", ",", "!!", "。", "؟", "।", "▁«", "▁(", "▁-", "..."):
        assert not enc._keep[vocab[piece]], piece
    for special in tokenizer.all_special_ids:
        assert not enc._keep[special]
    for piece in ("▁haki", "▁elimu", "▁Paris", "教育", "haki"):
        assert enc._keep[vocab[piece]], piece
    # documents: no punctuation term survives, every word does
    vec = enc.encode_documents(["Kila mtu, ana haki ya elimu!!"])[0]
    pieces = _pieces(tokenizer, vec)
    assert "▁haki" in pieces and "▁elimu" in pieces
    assert not {",", "!!", "!"} & set(pieces)
    assert np.all(np.diff(vec.indices.astype(np.int64)) > 0)  # sorted, distinct


def test_the_term_mask_is_built_once_per_tokenizer(tokenizer):
    a, b = BM25SparseEncoder(tokenizer), BM25SparseEncoder(tokenizer, k1=2.0)
    assert a._keep is b._keep
    assert not a._keep.flags.writeable


def test_bm25_weights_saturate_with_term_frequency_and_shrink_with_length(tokenizer):
    enc = BM25SparseEncoder(tokenizer, k1=1.2, b=0.75, avg_len=4.0)
    once, thrice, long = enc.encode_documents(["haki", "haki haki haki", "haki " + "mtu " * 15])
    w1, w3, wl = (float(v.values[list(_pieces(tokenizer, v)).index("▁haki")]) for v in (once, thrice, long))
    # tf=1, len=1: 2.2 / (1 + 1.2·(0.25 + 0.75/4))
    assert w1 == pytest.approx(2.2 / (1 + 1.2 * (0.25 + 0.75 * 1 / 4)), rel=1e-6)
    assert w1 < w3 < 2.2  # more occurrences weigh more, never past k1 + 1
    assert wl < w1  # the same single occurrence in a longer text weighs less
    q = enc.encode_queries(["haki haki elimu"])[0]
    assert sorted(q.values.tolist()) == [1.0, 1.0]  # queries: one per distinct term


def test_term_sets_are_the_sparse_indices(tokenizer):
    enc = BM25SparseEncoder(tokenizer)
    texts = ["Kila mtu ana haki ya kupata elimu.", "", "すべて人は、教育を受ける権利を有する。 教育"]
    sets = enc.term_sets(texts)
    assert [s.tolist() for s in sets] == [v.indices.tolist() for v in enc.encode_documents(texts)]
    assert sets[1].size == 0 and np.all(np.diff(sets[2]) > 0)  # distinct, sorted
