"""Token-budget batching: sort by length, cut batches by a budget that counts padding, restore order.

Token ids live in one flat int64 array with offsets, so building a padded or packed batch is a few
vectorised numpy operations, whatever the batch size (no per-text Python loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch


@dataclass(frozen=True)
class TokenizedTexts:
    """Token ids of n texts, flattened: text i is ``flat[offsets[i]:offsets[i] + lengths[i]]``."""

    flat: np.ndarray  # (total,) int64
    lengths: np.ndarray  # (n,) int64
    offsets: np.ndarray  # (n,) int64

    @classmethod
    def from_lists(cls, ids: list[list[int]]) -> "TokenizedTexts":
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        offsets = np.zeros(len(ids), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        return cls(flat, lengths, offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def gather(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat ids and lengths of the texts ``index``, concatenated in that order."""
        lens = self.lengths[index]
        starts = self.offsets[index]
        total = int(lens.sum())
        # position of each output token in ``flat``: its text's start + its rank inside the text
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
        return self.flat[np.repeat(starts, lens) + within], lens


@dataclass(frozen=True)
class TokenBatch:
    """One batch of token sequences, available padded (b, T) or packed (total,) + cu_seqlens."""

    ids: np.ndarray  # (total,) int64, sequences concatenated
    lengths: np.ndarray  # (b,) int64
    pad_id: int
    pad_to_multiple_of: int = 1

    @property
    def size(self) -> int:
        return len(self.lengths)

    @property
    def padded_length(self) -> int:
        m = self.pad_to_multiple_of
        longest = int(self.lengths.max()) if self.size else 0
        return -(-longest // m) * m

    def padded(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), both (b, T), right-padded with ``pad_id``."""
        b, t = self.size, self.padded_length
        mask = np.arange(t)[None, :] < self.lengths[:, None]  # (b, T) bool
        ids = np.full((b, t), self.pad_id, dtype=np.int64)
        ids[mask] = self.ids  # row-major order of the mask == concatenation order
        return torch.from_numpy(ids).to(device), torch.from_numpy(mask.astype(np.int64)).to(device)

    def packed(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, int]:
        """(input_ids (total,), cu_seqlens (b+1,) int32, max_seqlen)."""
        cu = np.zeros(self.size + 1, dtype=np.int32)
        np.cumsum(self.lengths, out=cu[1:])
        return (
            torch.from_numpy(self.ids).to(device),
            torch.from_numpy(cu).to(device),
            int(self.lengths.max()) if self.size else 0,
        )


def plan_batches(
    lengths: np.ndarray,
    max_batch_tokens: int,
    max_batch_size: int,
    pad_to_multiple_of: int = 1,
    count_padding: bool = True,
) -> list[np.ndarray]:
    """Indices of each batch, longest texts first.

    ``count_padding``: the budget bounds ``batch size × padded length`` (padded kernels); otherwise it
    bounds the sum of real lengths (packed kernels). A text longer than the budget gets a batch alone.
    """
    n = len(lengths)
    if n == 0:
        return []
    order = np.argsort(-lengths, kind="stable")
    sorted_lens = lengths[order]
    m = max(1, pad_to_multiple_of)
    batches: list[np.ndarray] = []
    start = 0
    if count_padding:
        while start < n:
            longest = -(-int(sorted_lens[start]) // m) * m
            take = max(1, min(max_batch_size, max_batch_tokens // max(longest, 1), n - start))
            batches.append(order[start : start + take])
            start += take
    else:
        csum = np.concatenate([[0], np.cumsum(sorted_lens)])
        while start < n:
            end = int(np.searchsorted(csum, csum[start] + max_batch_tokens, side="right")) - 1
            end = min(max(end, start + 1), start + max_batch_size, n)
            batches.append(order[start:end])
            start = end
    return batches
