"""GradCache (lusifer_rag.train.gradcache) gives the one-big-batch gradient of the NT-Xent loss, on tiny real
models in float64: chunked vs. full batch, dropout replay, the sync callback and the returned loss."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from functools import partial

import pytest
import torch
from torch import nn

from lusifer_rag.errors import ConfigError
from lusifer_rag.train.gradcache import GradCache
from lusifer_rag.train.losses.ntxent import contrastive_labels, ntxent_loss

B, P, N = 2, 1, 2  # 2 examples, 1 positive and 2 negatives each: 8 rows
LABELS, GROUPS = contrastive_labels(B, P, N)


class MeanPooledEncoder(nn.Module):
    """One transformer encoder layer (attention + FFN dropout) over (m, L, d) tokens, mean-pooled to (m, d)."""

    def __init__(self, d: int = 8, dropout: float = 0.3):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=16, dropout=dropout, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layer(tokens).mean(dim=1)  # (m, d)


def make_model(kind: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    n = len(LABELS)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 8))
        inputs = torch.randn(n, 5, dtype=torch.float64)  # (n, 5)
    else:
        model = MeanPooledEncoder()
        inputs = torch.randn(n, 4, 8, dtype=torch.float64)  # (n, L, d)
    return model.double(), inputs


def grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def loss_fns():
    return {
        "all pairs": partial(ntxent_loss, labels=LABELS, miner_epsilon=None),
        "mined": partial(ntxent_loss, labels=LABELS, miner_epsilon=0.25),
        "grouped": partial(ntxent_loss, labels=LABELS, miner_epsilon=None, groups=GROUPS),
    }


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
@pytest.mark.parametrize("chunk_size", [1, 2, 3])
@pytest.mark.parametrize("loss_name", list(loss_fns()))
def test_eval_mode_gradients_equal_the_full_batch(kind, chunk_size, loss_name):
    model, inputs = make_model(kind)
    model.eval()
    loss_fn = loss_fns()[loss_name]
    full_loss = loss_fn(model(inputs))
    full_loss.backward()
    expected = grads(model)
    model.zero_grad()

    loss = GradCache(model).step(list(inputs.split(chunk_size)), loss_fn)
    assert not loss.requires_grad and loss.shape == ()
    torch.testing.assert_close(loss, full_loss.detach(), rtol=0, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in expected)
    for got, want in zip(grads(model), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)  # in fact to rounding


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_dropout_is_replayed_so_gradients_match_one_backward(kind, chunk_size):
    """Train mode: the reference encodes the chunks one after another from the same seed, WITH graphs, and
    does one backward of the loss on their concatenation: the gradient GradCache must reproduce."""
    model, inputs = make_model(kind)
    model.train()
    chunks = list(inputs.split(chunk_size))

    def loss_fn(reps):  # draws from the RNG, as the official trainer's shuffle does; the loss is order-free
        perm = torch.randperm(len(LABELS))
        return ntxent_loss(reps[perm], LABELS[perm], miner_epsilon=None)

    torch.manual_seed(123)
    ref_loss = loss_fn(torch.cat([model(c) for c in chunks]))
    ref_loss.backward()
    rng_after_reference = torch.get_rng_state()
    expected = grads(model)
    model.zero_grad()

    seen = []

    def encode(chunk):
        reps = model(chunk)
        seen.append(reps.detach().clone())
        return reps

    torch.manual_seed(123)
    loss = GradCache(encode).step(chunks, loss_fn)
    k = len(chunks)
    assert len(seen) == 2 * k
    for first, second in zip(seen[:k], seen[k:]):  # pass 2 reproduces pass 1 bit for bit
        assert torch.equal(first, second)
    # the global RNG is where a plain step leaves it: pass 2's draws discarded, pass 1's and loss_fn's kept
    assert torch.equal(torch.get_rng_state(), rng_after_reference)
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=0, atol=1e-12)
    for got, want in zip(grads(model), expected):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)

    # dropout really was active: the eval-mode gradient differs
    model.zero_grad()
    model.eval()
    GradCache(model).step(chunks, loss_fn)
    assert any(not torch.allclose(g, w) for g, w in zip(grads(model), expected))


def test_sync_is_true_only_for_the_last_chunk_and_wraps_forward_and_backward():
    model, inputs = make_model("mlp")
    weight = model[0].weight
    calls, inside, encoded_inside = [], [False], []

    @contextmanager
    def sync(is_last: bool):
        before = None if weight.grad is None else weight.grad.clone()
        inside[0] = True
        yield
        inside[0] = False
        changed = before is None or not torch.equal(before, weight.grad)
        calls.append((is_last, changed))

    def encode(chunk):
        encoded_inside.append(inside[0])
        return model(chunk)

    GradCache(encode).step(list(inputs.split(3)), loss_fns()["mined"], sync=sync)  # chunks of 3, 3, 2
    assert calls == [(False, True), (False, True), (True, True)]  # the backward ran inside each context
    assert encoded_inside == [False] * 3 + [True] * 3  # pass 1 outside, pass 2's forwards inside (DDP needs it)


def test_works_with_ddp_no_sync(tmp_path):
    """A real (one-process, gloo) DDP: no_sync on all but the last chunk, gradients equal the plain model's."""
    dist = torch.distributed
    if not dist.is_available():
        pytest.skip("torch.distributed not built")
    model, inputs = make_model("mlp")
    model.eval()
    loss_fn = loss_fns()["all pairs"]
    chunks = list(inputs.split(3))
    GradCache(model).step(chunks, loss_fn)
    expected = grads(model)
    model.zero_grad()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        sync = lambda is_last: nullcontext() if is_last else ddp.no_sync()  # noqa: E731
        for _ in range(2):  # a second step: the reducer finished the first one cleanly
            model.zero_grad()
            GradCache(ddp).step(chunks, loss_fn, sync=sync)
            for got, want in zip(grads(model), expected):
                torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    finally:
        dist.destroy_process_group()


def test_gradients_accumulate_like_backward():
    model, inputs = make_model("mlp")
    model.eval()
    cache = GradCache(model)
    chunks, loss_fn = list(inputs.split(2)), loss_fns()["all pairs"]
    cache.step(chunks, loss_fn)
    once = grads(model)
    cache.step(chunks, loss_fn)
    for twice, g in zip(grads(model), once):
        torch.testing.assert_close(twice, 2 * g, rtol=1e-12, atol=1e-15)


def test_loss_fn_parameters_get_their_gradient_once():
    model, inputs = make_model("mlp")
    model.eval()
    log_scale = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def loss_fn(reps):
        return ntxent_loss(reps * log_scale.exp(), LABELS, miner_epsilon=None) + log_scale ** 2

    loss_fn(model(inputs)).backward()
    expected = log_scale.grad.clone()
    log_scale.grad = None
    GradCache(model).step(list(inputs.split(3)), loss_fn)
    torch.testing.assert_close(log_scale.grad, expected, rtol=1e-9, atol=1e-12)


def test_invalid_use_raises_config_error():
    model, inputs = make_model("mlp")
    loss_fn = loss_fns()["all pairs"]
    with pytest.raises(ConfigError, match="non-empty"):
        GradCache(model).step([], loss_fn)
    with pytest.raises(ConfigError, match="one floating"):
        GradCache(lambda c: (model(c), model(c))).step([inputs], loss_fn)
    with pytest.raises(ConfigError, match="one-element"):
        GradCache(model).step([inputs], lambda reps: reps.sum(dim=1))
    with pytest.raises(ConfigError, match="trainable"):
        GradCache(lambda c: model(c).detach()).step([inputs], loss_fn)
    with pytest.raises(ConfigError, match="callable"):
        GradCache("model")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_dropout_is_replayed():
    model, inputs = make_model("transformer")
    model, inputs = model.cuda().train(), inputs.cuda()
    chunks, loss_fn = list(inputs.split(3)), loss_fns()["all pairs"]
    torch.cuda.manual_seed_all(7)
    ref_loss = loss_fn(torch.cat([model(c) for c in chunks]))
    ref_loss.backward()
    cuda_after_reference = torch.cuda.get_rng_state()
    expected = grads(model)
    model.zero_grad()
    torch.cuda.manual_seed_all(7)
    loss = GradCache(model).step(chunks, loss_fn)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_after_reference)
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=0, atol=1e-12)
    for got, want in zip(grads(model), expected):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
