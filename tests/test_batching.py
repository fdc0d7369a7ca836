"""Token-budget batching: pure logic on numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lusifer_rag.embedder.batching import TokenBatch, TokenizedTexts, plan_batches


def _random_ids(n: int, seed: int = 0, max_len: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 1000, size=int(rng.integers(0, max_len))).tolist() for _ in range(n)]


def _padded_cost(lengths: np.ndarray, index: np.ndarray, m: int) -> int:
    longest = int(lengths[index].max())
    return len(index) * (-(-longest // m) * m)


@pytest.mark.parametrize("m", [1, 8])
def test_padded_budget_respected_and_every_text_once(m):
    lengths = np.random.default_rng(1).integers(1, 200, size=500)
    budget = 1024
    batches = plan_batches(lengths, budget, max_batch_size=64, pad_to_multiple_of=m)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(lengths)))  # each text exactly once
    for b in batches:
        assert len(b) <= 64
        assert _padded_cost(lengths, b, m) <= budget
    # longest first: a batch's longest text is never shorter than the next batch's
    firsts = [int(lengths[b].max()) for b in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_batches_are_full_when_budget_allows():
    lengths = np.full(10, 16)
    assert [len(b) for b in plan_batches(lengths, 64, 100)] == [4, 4, 2]
    assert [len(b) for b in plan_batches(lengths, 10_000, 3)] == [3, 3, 3, 1]  # max_batch_size caps


def test_overlong_text_gets_a_batch_alone():
    lengths = np.array([5, 500, 7, 6])
    batches = plan_batches(lengths, 100, 32)
    assert batches[0].tolist() == [1]
    assert sorted(np.concatenate(batches[1:]).tolist()) == [0, 2, 3]


def test_packed_budget_counts_real_tokens_only():
    lengths = np.array([60, 10, 50, 30, 5, 45])
    budget = 100
    batches = plan_batches(lengths, budget, 32, count_padding=False)
    for b in batches:
        assert lengths[b].sum() <= budget or len(b) == 1
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    # padding-free packing fits more than padded batching would under the same budget
    padded = plan_batches(lengths, budget, 32, count_padding=True)
    assert len(batches) <= len(padded)


def test_empty_inputs():
    assert plan_batches(np.zeros(0, dtype=np.int64), 100, 10) == []
    tok = TokenizedTexts.from_lists([[], [5, 6], []])
    assert tok.lengths.tolist() == [0, 2, 0]
    assert plan_batches(tok.lengths, 100, 10)  # zero-length texts still get batched


def test_order_restored_through_gather():
    ids = _random_ids(50)
    tok = TokenizedTexts.from_lists(ids)
    batches = plan_batches(tok.lengths, 128, 8)
    rebuilt: list[list[int] | None] = [None] * len(ids)
    for index in batches:
        flat, lens = tok.gather(index)
        parts = np.split(flat, np.cumsum(lens)[:-1])
        for i, part in zip(index.tolist(), parts):
            rebuilt[i] = part.tolist()
    assert rebuilt == ids


def test_gather_arbitrary_order():
    ids = [[1, 2, 3], [], [4], [5, 6]]
    tok = TokenizedTexts.from_lists(ids)
    flat, lens = tok.gather(np.array([3, 0, 1, 2]))
    assert flat.tolist() == [5, 6, 1, 2, 3, 4]
    assert lens.tolist() == [2, 3, 0, 1]


@pytest.mark.parametrize("m", [1, 8])
def test_padded_batch(m):
    ids = [[7, 8, 9], [1], [4, 5]]
    batch = TokenBatch(np.array(sum(ids, []), dtype=np.int64), np.array([3, 1, 2]), pad_id=0, pad_to_multiple_of=m)
    input_ids, mask = batch.padded()
    t = -(-3 // m) * m
    assert input_ids.shape == mask.shape == (3, t)
    assert input_ids.dtype == torch.int64
    for row, seq in enumerate(ids):
        assert input_ids[row, : len(seq)].tolist() == seq
        assert (input_ids[row, len(seq):] == 0).all()
        assert mask[row].sum().item() == len(seq)
        assert mask[row, : len(seq)].all()


def test_packed_batch():
    ids = [[7, 8, 9], [1], [4, 5]]
    batch = TokenBatch(np.array(sum(ids, []), dtype=np.int64), np.array([3, 1, 2]), pad_id=0)
    flat, cu, longest = batch.packed()
    assert flat.tolist() == [7, 8, 9, 1, 4, 5]
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 3, 4, 6]
    assert longest == 3
    # packed and padded carry the same tokens
    input_ids, mask = batch.padded()
    assert input_ids[mask.bool()].tolist() == flat.tolist()
