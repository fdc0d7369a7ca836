"""NT-Xent of lusifer_rag.train.losses.ntxent against pytorch-metric-learning 2.9.0, the official trainer's loss.

Loss and gradient are compared in float64 on random embeddings; pml is only a test dependency.
"""

from __future__ import annotations

import math

import pytest
import torch

from lusifer_rag.errors import ConfigError
from lusifer_rag.train.losses.ntxent import NTXentLoss, contrastive_labels, gathered_labels, ntxent_loss

pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import distances, losses, miners  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-12)


def pml_pieces(temperature: float = 0.05, epsilon: float = 0.25):
    distance = distances.LpDistance(normalize_embeddings=True)
    return (losses.NTXentLoss(temperature=temperature, distance=distance),
            miners.MultiSimilarityMiner(epsilon=epsilon, distance=distance))


def loss_and_grad(fn, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    emb = emb.detach().clone().requires_grad_(True)
    loss = fn(emb)
    (grad,) = torch.autograd.grad(loss, emb)
    return loss.detach(), grad


def layout_embeddings(b: int, p: int, n: int, d: int, seed: int, noise: float = 0.6) -> torch.Tensor:
    """Queries, positives near their query, negatives scattered: distances spread, so mining selects."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=g, dtype=torch.float64)  # (B, d)
    pos = q.repeat_interleave(p, dim=0) + noise * torch.randn(b * p, d, generator=g, dtype=torch.float64)
    neg = torch.randn(b * n, d, generator=g, dtype=torch.float64)  # (B·N, d)
    return torch.cat([q, pos, neg])  # (B(1+P+N), d)


def test_pml_version_is_the_pinned_one():
    # the official trainer's numbers (and this file's reference) are those of this exact release
    assert pml.__version__ == "2.9.0"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n,num_labels", [(6, 3), (16, 5), (40, 40 // 3), (40, 40)])  # 40 > 25: cdist's mm path
@pytest.mark.parametrize("epsilon", [None, 0.25, 0.05])
def test_matches_pml_on_random_labels(seed, n, num_labels, epsilon):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, 7, generator=g, dtype=torch.float64)
    labels = torch.randint(0, num_labels, (n,), generator=g)
    if num_labels == n:  # with repeats still: half the rows share labels pairwise
        labels = torch.arange(n) // 2
    loss_fn, miner = pml_pieces(epsilon=epsilon if epsilon is not None else 0.25)

    def reference(e):
        return loss_fn(e, labels, miner(e, labels) if epsilon is not None else None)

    ref, ref_grad = loss_and_grad(reference, emb)
    ours, grad = loss_and_grad(lambda e: ntxent_loss(e, labels, 0.05, epsilon), emb)
    assert ref.item() > 0, "degenerate case: nothing compared"
    torch.testing.assert_close(ours, ref, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)


@pytest.mark.parametrize("seed", [0, 2])
@pytest.mark.parametrize("b,p,n", [(3, 1, 2), (4, 2, 3), (8, 1, 3)])
def test_matches_pml_on_the_contrastive_layout(seed, b, p, n):
    emb = layout_embeddings(b, p, n, 16, seed, noise=1.2)
    labels, _ = contrastive_labels(b, p, n)
    loss_fn, miner = pml_pieces()
    mined = miner(emb, labels)
    all_neg = int((labels[:, None] != labels[None, :]).sum())
    # the miner really drops pairs here, so the mined path is exercised, not just the all-pairs one
    assert len(mined[0]) >= 2 and 0 < len(mined[2]) < all_neg
    ref, ref_grad = loss_and_grad(lambda e: loss_fn(e, labels, miner(e, labels)), emb)
    ours, grad = loss_and_grad(lambda e: NTXentLoss()(e, labels), emb)
    torch.testing.assert_close(ours, ref, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)


def pml_grouped(emb, labels, groups, epsilon):
    """The official non-cross-batch computation: one pml call on the pairs inside each group (mined per group)."""
    loss_fn, miner = pml_pieces(epsilon=epsilon if epsilon is not None else 0.25)
    parts = [[], [], [], []]
    for g in groups.unique():
        idx = (groups == g).nonzero().squeeze(1)  # (m,)
        if epsilon is None:
            same = labels[idx, None] == labels[None, idx]  # (m, m)
            a1, p = (same & ~torch.eye(len(idx), dtype=torch.bool)).nonzero(as_tuple=True)
            a2, n = (~same).nonzero(as_tuple=True)
            local = (a1, p, a2, n)
        else:
            local = miner(emb[idx], labels[idx])
        for acc, t in zip(parts, local):
            acc.append(idx[t])
    return loss_fn(emb, labels, tuple(torch.cat(t) for t in parts))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("epsilon", [None, 0.25])
def test_groups_match_the_per_group_pml_computation(seed, epsilon):
    b, p, n = 5, 2, 3
    emb = layout_embeddings(b, p, n, 8, seed)
    labels, groups = contrastive_labels(b, p, n)
    ref, ref_grad = loss_and_grad(lambda e: pml_grouped(e, labels, groups, epsilon), emb)
    ours, grad = loss_and_grad(lambda e: ntxent_loss(e, labels, miner_epsilon=epsilon, groups=groups), emb)
    torch.testing.assert_close(ours, ref, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)
    # groups do change the loss: cross-example negatives are gone
    assert not torch.allclose(ours, ntxent_loss(emb, labels, miner_epsilon=epsilon))


def test_groups_with_equal_pair_counts_average_the_per_group_losses():
    b, p, n = 4, 1, 2
    emb = layout_embeddings(b, p, n, 8, seed=5)
    labels, groups = contrastive_labels(b, p, n)
    per_group = [ntxent_loss(emb[groups == g], labels[groups == g], miner_epsilon=None) for g in range(b)]
    grouped = ntxent_loss(emb, labels, miner_epsilon=None, groups=groups)
    torch.testing.assert_close(grouped, torch.stack(per_group).mean(), **TOL)


def test_zero_pair_cases_give_zero_and_keep_the_graph():
    emb = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    loss_fn, miner = pml_pieces()
    cases = {
        "all labels distinct": (torch.arange(5), None),
        "one label (no negatives)": (torch.zeros(5, dtype=torch.long), None),
        "every row its own group": (torch.tensor([0, 0, 1, 1, 2]), torch.arange(5)),
    }
    for name, (labels, groups) in cases.items():
        loss = ntxent_loss(emb, labels, groups=groups)
        assert loss.item() == 0.0, name
        (grad,) = torch.autograd.grad(loss, emb)  # the graph is kept: backward works, all-zero gradient
        assert torch.count_nonzero(grad) == 0, name
        if groups is None:
            assert loss_fn(emb, labels, miner(emb, labels)).item() == 0.0, name
    one = torch.randn(1, 4, requires_grad=True)
    assert ntxent_loss(one, torch.zeros(1, dtype=torch.long)).requires_grad


def test_mining_that_keeps_no_pair_gives_zero():
    # positives on their query, negatives orthogonal: with ε = 0 no positive is harder than a negative
    emb = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2])
    loss_fn, miner = pml_pieces(epsilon=0.0)
    assert len(miner(emb, labels)[0]) == 0
    assert ntxent_loss(emb, labels, miner_epsilon=0.0).item() == 0.0
    assert ntxent_loss(emb, labels, miner_epsilon=None).item() > 0


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def chord(deg: float) -> float:
    return 2 * math.sin(math.radians(deg) / 2)


@pytest.mark.parametrize("temperature", [0.02, 0.05, 0.5, 3.0])
def test_temperature_divides_the_negative_l2_distances(temperature):
    # anchor a at 0°, its positive at 40°, negatives at 90° and 180°: logits are −chord/τ (not cosine/τ)
    emb = torch.tensor([unit(0), unit(40), unit(90), unit(180)], dtype=torch.float64) * 3.0  # norms don't matter
    labels = torch.tensor([0, 0, 1, 2])
    d_ap = chord(40)

    def pair_loss(*d_negatives):  # ℓ = log(1 + Σ exp((d_ap − d_an) / τ))
        return math.log1p(sum(math.exp((d_ap - d) / temperature) for d in d_negatives))

    # pairs (a, p) and (p, a); each anchor's negatives are both negatives
    expected = 0.5 * (pair_loss(chord(90), chord(180)) + pair_loss(chord(50), chord(140)))
    ours = ntxent_loss(emb, labels, temperature=temperature, miner_epsilon=None)
    assert ours.item() == pytest.approx(expected, rel=1e-12)
    ref = pml_pieces(temperature=temperature)[0](emb, labels)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)


def test_large_temperature_tends_to_log_of_candidates():
    emb = layout_embeddings(3, 1, 2, 8, seed=1)
    labels, _ = contrastive_labels(3, 1, 2)
    # τ → ∞: every logit → 0, so ℓ = log(1 + #negatives of the anchor); all anchors here have 10 negatives
    assert ntxent_loss(emb, labels, temperature=1e9, miner_epsilon=None).item() == pytest.approx(math.log(11))


def test_single_mined_pair_is_kept_where_pml_returns_zero():
    # a at 0°, its positive at 90°, a negative at −60°, ε = 0: the miner keeps exactly (a, p) and (a, n);
    # pml's GenericPairLoss returns 0 for a tuple with ≤ 1 positive and ≤ 1 negative pair, this loss does not
    emb = torch.tensor([unit(0), unit(90), unit(-60)], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    loss_fn, miner = pml_pieces(epsilon=0.0)
    mined = miner(emb, labels)
    assert [t.tolist() for t in mined] == [[0], [1], [0], [2]]
    assert loss_fn(emb, labels, mined).item() == 0.0
    expected = math.log1p(math.exp((chord(90) - chord(60)) / 0.05))
    assert ntxent_loss(emb, labels, miner_epsilon=0.0).item() == pytest.approx(expected, rel=1e-12)


def test_duplicate_embeddings_have_finite_gradients():
    # zero distance between different rows (duplicate texts): cdist's backward gives 0 there, not NaN
    emb = torch.randn(6, 5, dtype=torch.float64)
    emb[3] = emb[0]
    emb[4] = emb[1]
    labels = torch.tensor([0, 0, 1, 0, 2, 1])
    for epsilon in (None, 0.25):
        _, grad = loss_and_grad(lambda e: ntxent_loss(e, labels, miner_epsilon=epsilon), emb)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_half_precision_is_computed_in_float32():
    emb = layout_embeddings(3, 1, 2, 8, seed=2)
    labels, _ = contrastive_labels(3, 1, 2)
    low = ntxent_loss(emb.to(torch.bfloat16), labels)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(ntxent_loss(emb, labels).item(), rel=0.05)


def test_contrastive_labels_layout():
    labels, groups = contrastive_labels(3, 2, 2)
    #                          queries | positives (2 each) | negatives (2 each, unique labels)
    assert labels.tolist() == [0, 1, 2, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8]
    assert groups.tolist() == [0, 1, 2, 0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
    assert labels.dtype == groups.dtype == torch.int64
    labels, groups = contrastive_labels(2, 1, 1, example_offset=10, label_offset=100)
    assert labels.tolist() == [100, 101, 100, 101, 102, 103]
    assert groups.tolist() == [10, 11, 10, 11, 10, 11]
    labels, groups = contrastive_labels(2, 0, 0)
    assert labels.tolist() == [0, 1] and groups.tolist() == [0, 1]


@pytest.mark.parametrize("b,p,n,world", [(3, 1, 2, 4), (2, 2, 0, 3), (1, 1, 5, 2)])
def test_gathered_labels_are_unique_across_ranks(b, p, n, world):
    labels, groups = gathered_labels(b, p, n, world)
    rows = b * (1 + p + n)
    assert labels.shape == groups.shape == (world * rows,)
    for r in range(world):  # rank r's block is its own layout with the documented offsets
        lab, grp = contrastive_labels(b, p, n, example_offset=r * b, label_offset=r * b * (1 + n))
        assert torch.equal(labels[r * rows:(r + 1) * rows], lab) and torch.equal(groups[r * rows:(r + 1) * rows], grp)
    # a label is shared exactly by one query and its P positives, within one example; negatives are alone
    for value in labels.unique():
        members = (labels == value).nonzero().squeeze(1)
        assert len(members) in (1, 1 + p)
        assert len(groups[members].unique()) == 1
    assert len(labels.unique()) == world * b * (1 + n)
    assert groups.unique().tolist() == list(range(world * b))


def test_invalid_inputs_raise_config_error():
    emb, labels = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    bad_calls = [
        lambda: ntxent_loss(emb[0], labels),
        lambda: ntxent_loss(emb, labels[:3]),
        lambda: ntxent_loss(emb, labels.float()),
        lambda: ntxent_loss(emb, labels, temperature=0.0),
        lambda: ntxent_loss(emb, labels, temperature=float("nan")),
        lambda: ntxent_loss(emb, labels, miner_epsilon=-0.1),
        lambda: ntxent_loss(emb, labels, groups=torch.zeros(3, dtype=torch.long)),
        lambda: NTXentLoss(temperature=-1),
        lambda: contrastive_labels(0, 1, 1),
        lambda: contrastive_labels(2, -1, 1),
        lambda: contrastive_labels(2, 1, 1, label_offset=-2),
        lambda: gathered_labels(2, 1, 1, world_size=0),
    ]
    for call in bad_calls:
        with pytest.raises(ConfigError, match="got"):
            call()


def test_module_attributes_and_forward():
    module = NTXentLoss(temperature=0.1, miner_epsilon=None)
    assert (module.temperature, module.miner_epsilon) == (0.1, None)
    assert "temperature=0.1" in repr(module)
    emb = layout_embeddings(2, 1, 2, 6, seed=4)
    labels, groups = contrastive_labels(2, 1, 2)
    assert module(emb, labels, groups).item() == ntxent_loss(emb, labels, 0.1, None, groups).item()
