"""NT-Xent on L2 distances with multi-similarity mining: the stage-2 contrastive loss of the official trainer.

The official LUSIFER trainer calls pytorch-metric-learning (pml) 2.9.0::

    distance = LpDistance(normalize_embeddings=True)
    pairs = MultiSimilarityMiner(epsilon=0.25, distance=distance)(embeddings, labels)
    loss = NTXentLoss(temperature=0.05, distance=distance)(embeddings, labels, pairs)

This is the same loss written on (n, n) masks. Logits are −‖â − b̂‖₂ / τ (Euclidean distance between the
L2-normalised embeddings, not their cosine). Every embedding is an anchor; for a positive pair (a, p) with the
negatives N(a) of a,

    ℓ(a, p) = log(exp(s_ap) + Σ_{k ∈ N(a)} exp(s_ak)) − s_ap,

and the loss is the mean of ℓ over the (mined) positive pairs; zero when there is no positive or no negative
pair. Why not call pml: its NT-Xent builds a (positive pairs × negative pairs) matrix, ~n³ entries without
mining (3.6·10⁹ for n = 1536), where this needs a few (n, n) ones.

Known deviation: pml returns zero when the pair tuple has at most one positive AND at most one negative pair
(``GenericPairLoss.compute_loss``); only a mined tuple can be that small. Here such a pair still has its loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lusifer_rag.errors import ConfigError


def _check_inputs(embeddings: Tensor, labels: Tensor, temperature: float, miner_epsilon: float | None,
                  groups: Tensor | None) -> None:
    if not isinstance(embeddings, Tensor) or embeddings.ndim != 2 or not embeddings.is_floating_point():
        got = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings).__name__
        raise ConfigError(f"embeddings must be a floating (n, d) tensor; got {got}")
    n = embeddings.shape[0]
    for name, t in [("labels", labels)] + ([("groups", groups)] if groups is not None else []):
        if not isinstance(t, Tensor) or t.shape != (n,) or t.is_floating_point() or t.dtype == torch.bool:
            got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, Tensor) else type(t).__name__
            raise ConfigError(f"{name} must be an integer tensor of shape ({n},) (one per embedding); got {got}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ConfigError(f"temperature must be a finite number > 0; got {temperature!r}")
    if miner_epsilon is not None and (isinstance(miner_epsilon, bool) or not isinstance(miner_epsilon, (int, float))
                                      or not math.isfinite(miner_epsilon) or miner_epsilon < 0):
        raise ConfigError(f"miner_epsilon must be None (no mining) or a finite number >= 0; got {miner_epsilon!r}")


def _mine(dist: Tensor, pos: Tensor, neg: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """pml's ``MultiSimilarityMiner`` on masks: keep positives farther than the closest negative − ε and
    negatives closer than the farthest positive + ε (same comparisons, same strictness, so the same pairs)."""
    closest_neg = dist.masked_fill(~neg, math.inf).amin(dim=1, keepdim=True)  # (n, 1), +inf: no negative
    farthest_pos = dist.masked_fill(~pos, -math.inf).amax(dim=1, keepdim=True)  # (n, 1), -inf: no positive
    hard_pos = pos & (dist + epsilon > closest_neg)  # (n, n)
    hard_neg = neg & (dist - epsilon < farthest_pos)  # (n, n)
    return hard_pos, hard_neg


def ntxent_loss(embeddings: Tensor, labels: Tensor, temperature: float = 0.05,
                miner_epsilon: float | None = 0.25, groups: Tensor | None = None) -> Tensor:
    """Mean NT-Xent over the positive pairs of ``embeddings`` (n, d) with ``labels`` (n,).

    Pairs: same label (not itself) is positive, different label is negative. ``miner_epsilon`` keeps only the
    pairs ``MultiSimilarityMiner(epsilon)`` mines (on detached distances, as pml); ``None``: every pair.
    ``groups`` (n,): when given, a pair counts (for mining too) only if both members share a group — the
    official "non-cross-batch" datasets, where an example's query sees only its own positives and negatives;
    the mean is then over the pairs of all groups together (as the official code's single pml call).

    Half-precision inputs are computed in float32 (what autocast does to pml's ``cdist``). Returns a scalar;
    ``embeddings.sum() * 0`` when there are no pairs, so the graph (and DDP's gradient hooks) stays intact.
    """
    _check_inputs(embeddings, labels, temperature, miner_epsilon, groups)
    x = embeddings if embeddings.dtype in (torch.float32, torch.float64) else embeddings.float()
    x = F.normalize(x, p=2, dim=1)  # (n, d)
    # cdist, as pml: its backward gives 0 (not NaN) at zero distance, e.g. duplicate texts in a batch
    dist = torch.cdist(x, x, p=2)  # (n, n)
    n = x.shape[0]
    labels = labels.to(x.device)
    same = labels[:, None] == labels[None, :]  # (n, n)
    pos = same & ~torch.eye(n, dtype=torch.bool, device=x.device)  # (n, n)
    neg = ~same  # (n, n)
    if groups is not None:
        groups = groups.to(x.device)
        in_group = groups[:, None] == groups[None, :]  # (n, n)
        pos, neg = pos & in_group, neg & in_group
    if miner_epsilon is not None:
        pos, neg = _mine(dist.detach(), pos, neg, float(miner_epsilon))
    if not (bool(pos.any()) and bool(neg.any())):
        return embeddings.sum() * 0

    logits = -dist / temperature  # (n, n)
    has_neg = neg.any(dim=1, keepdim=True)  # (n, 1)
    # a row of -inf has a NaN logsumexp gradient: rows without negatives get a dummy finite row, then -inf
    neg_logits = torch.where(has_neg, logits.masked_fill(~neg, -math.inf), torch.zeros_like(logits))  # (n, n)
    neg_lse = torch.where(has_neg, torch.logsumexp(neg_logits, dim=1, keepdim=True), -math.inf)  # (n, 1)
    anchor, positive = pos.nonzero(as_tuple=True)  # (k,), (k,)
    s = logits[anchor, positive]  # (k,)
    per_pair = torch.logaddexp(s, neg_lse[anchor, 0]) - s  # (k,)
    return per_pair.mean()


class NTXentLoss(nn.Module):
    """Module form of :func:`ntxent_loss` (defaults: the official trainer's τ = 0.05, ε = 0.25)."""

    def __init__(self, temperature: float = 0.05, miner_epsilon: float | None = 0.25):
        super().__init__()
        _check_inputs(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long), temperature, miner_epsilon, None)
        self.temperature = temperature
        self.miner_epsilon = miner_epsilon

    def forward(self, embeddings: Tensor, labels: Tensor, groups: Tensor | None = None) -> Tensor:
        return ntxent_loss(embeddings, labels, self.temperature, self.miner_epsilon, groups)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, miner_epsilon={self.miner_epsilon}"


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")


def contrastive_labels(num_examples: int, positives: int, negatives: int, example_offset: int = 0,
                       label_offset: int = 0, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Labels and groups for one process's embeddings laid out as

        [queries (B) | positives (B·P, example-major) | negatives (B·N, example-major)]

    i.e. row ``i`` is query i, row ``B + i·P + j`` its j-th positive, row ``B + B·P + i·N + k`` its k-th
    negative. Query i and its positives share label ``label_offset + i``; negative (i, k) gets the unique label
    ``label_offset + B + i·N + k`` (a hard negative is never another example's positive). So one process uses
    the labels ``label_offset … label_offset + B·(1+N) − 1``: pass ``label_offset = rank·B·(1+N)`` and
    ``example_offset = rank·B`` and labels and groups are unique across processes (see :func:`gathered_labels`).
    ``groups`` is ``example_offset + i`` for all rows of example i. Returns (labels, groups), int64 (n,) each.
    """
    for name, value, minimum in (("num_examples", num_examples, 1), ("positives", positives, 0),
                                 ("negatives", negatives, 0), ("example_offset", example_offset, 0),
                                 ("label_offset", label_offset, 0)):
        _check_count(name, value, minimum)
    b, p, m = num_examples, positives, negatives
    example = torch.arange(b, device=device)  # (B,)
    pos_example = example.repeat_interleave(p)  # (B·P,)
    neg_example = example.repeat_interleave(m)  # (B·N,)
    labels = torch.cat([example, pos_example, b + torch.arange(b * m, device=device)]) + label_offset  # (n,)
    groups = torch.cat([example, pos_example, neg_example]) + example_offset  # (n,)
    return labels, groups


def gathered_labels(num_examples: int, positives: int, negatives: int, world_size: int,
                    device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Labels and groups of every rank's :func:`contrastive_labels` layout concatenated in rank order (what
    an all-gather of each rank's (n, d) embeddings gives), each rank with the offsets that keep them unique."""
    _check_count("world_size", world_size, 1)
    _check_count("num_examples", num_examples, 1)
    _check_count("negatives", negatives, 0)
    per_rank = [contrastive_labels(num_examples, positives, negatives, example_offset=r * num_examples,
                                   label_offset=r * num_examples * (1 + negatives), device=device)
                for r in range(world_size)]
    return torch.cat([lab for lab, _ in per_rank]), torch.cat([grp for _, grp in per_rank])
