"""Multi-layer fusion (arXiv 2508.09091): global / per-token transformer softmax over the universal learner's layers."""

from __future__ import annotations

import warnings

import pytest
import torch

from lusifer_rag.embedder.lusifer.fusion import LayerFusion
from lusifer_rag.errors import ConfigError

L, D = 4, 8
LENGTHS = [5, 2, 7]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fusion(mode: str, seed: int = 0) -> LayerFusion:
    torch.manual_seed(seed)
    return LayerFusion(L, D, mode, ffn_size=16).double().eval()


def padded_batch(seed: int = 1):
    """states (L, b, T, d) fp64 with random values in pad slots too, mask (b, T)."""
    g = torch.Generator().manual_seed(seed)
    t = max(LENGTHS)
    states = torch.randn(L, len(LENGTHS), t, D, generator=g, dtype=torch.float64)
    mask = torch.arange(t)[None, :] < torch.tensor(LENGTHS)[:, None]
    return states, mask


def packed(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return states[:, mask]  # (L, total, d), row-major = the sequences one after another


def reference_transformer(f: LayerFusion, h: torch.Tensor) -> torch.Tensor:
    """One token, straight from the paper: h (L, d) → α (L,)."""
    x = torch.cat([f.cls[None], h + f.layer_pos])[None]  # (1, L+1, d)
    return f.to_weights(f.encoder(x)[0, 0]).softmax(-1)


def test_global_starts_uniform_then_follows_logits():
    f = fusion("global")
    states, mask = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(f(states, mask)[mask], states.mean(0)[mask])
        assert torch.allclose(f.weights(states, mask)[mask], torch.full((sum(LENGTHS), L), 1 / L, dtype=torch.float64))
        f.logits.copy_(torch.tensor([2.0, -1.0, 0.5, 0.0]))
        alpha = torch.softmax(f.logits, 0)
        torch.testing.assert_close(f.weights(states, mask)[mask], alpha.expand(sum(LENGTHS), L))
        torch.testing.assert_close(f(states, mask), torch.einsum("l,lbtd->btd", alpha, states) * mask[..., None])


def test_transformer_per_token_weights_match_reference():
    f = fusion("transformer")
    states, mask = padded_batch()
    with torch.no_grad():
        alpha = f.weights(states, mask)  # (b, T, L)
        out = f(states, mask)
        real = alpha[mask]  # (n, L)
        torch.testing.assert_close(real.sum(-1), torch.ones(len(real), dtype=torch.float64))
        assert (real - real[0]).abs().max() > 1e-3  # per-token, not global
        for b, t in [(0, 0), (0, 4), (2, 6)]:
            ref = reference_transformer(f, states[:, b, t])
            torch.testing.assert_close(alpha[b, t], ref)
            torch.testing.assert_close(out[b, t], (ref[:, None] * states[:, b, t]).sum(0))  # RAW layer states


@pytest.mark.parametrize("mode", ["global", "transformer"])
def test_pads_zero_and_inert(mode):
    f = fusion(mode)
    states, mask = padded_batch()
    other = states.clone()
    other[:, ~mask] = torch.randn(L, int((~mask).sum()), D, dtype=torch.float64) * 100
    other[0, 1, 3, 0] = float("nan")  # a pad slot
    with torch.no_grad():
        a, b = f(states, mask), f(other, mask)
        w = f.weights(other, mask)
    assert torch.equal(a[mask], b[mask])
    assert torch.equal(b[~mask], torch.zeros_like(b[~mask]))
    assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))
    torch.testing.assert_close(w[mask].sum(-1), torch.ones(sum(LENGTHS), dtype=torch.float64))


@pytest.mark.parametrize("mode", ["global", "transformer"])
def test_padded_equals_packed_and_chunked(mode):
    f = fusion(mode)
    states, mask = padded_batch()
    flat = packed(states, mask)
    with torch.no_grad():
        pad_out, pad_w = f(states, mask), f.weights(states, mask)
        pk_out, pk_w = f(flat), f.weights(flat)
        f.chunk_tokens = 3
        ch_out = f(states, mask)
    with torch.enable_grad():  # the autograd path (temporary gather, no fast path) agrees too
        f.chunk_tokens = None
        grad_out = f(states.clone().requires_grad_(), mask).detach()
    assert pk_out.shape == (sum(LENGTHS), D) and pk_w.shape == (sum(LENGTHS), L)
    torch.testing.assert_close(pad_out[mask], pk_out)
    torch.testing.assert_close(pad_w[mask], pk_w)
    torch.testing.assert_close(ch_out, pad_out)
    torch.testing.assert_close(grad_out, pad_out)


@pytest.mark.parametrize("states_grad", [False, True])
def test_gradients_reach_every_parameter(states_grad):
    states, mask = padded_batch()
    states.requires_grad_(states_grad)
    target = torch.randn(*mask.shape, D, dtype=torch.float64)
    for mode in ("global", "transformer"):
        f = fusion(mode).train()
        (f(states, mask) * target).sum().backward()
        for name, p in f.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (mode, name)
        names = {n.split(".")[0] for n, _ in f.named_parameters()}
        assert names == ({"logits"} if mode == "global" else {"layer_pos", "cls", "encoder", "to_weights"})
        if states_grad:
            assert states.grad[:, ~mask].abs().max() == 0  # pads get no gradient either
            states.grad = None


def test_bad_mode_raises_config_error():
    with pytest.raises(ConfigError, match=r"'mean'.*global.*transformer"):
        LayerFusion(L, D, "mean")


def test_state_dict_keys_and_parameter_count(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = LayerFusion(24, 1024, "global")
        t = LayerFusion(24, 1024, "transformer")
    assert list(g.state_dict()) == ["logits"] and g.logits.shape == (24,)
    assert set(t.state_dict()) == {"layer_pos", "cls", "to_weights.weight", "to_weights.bias"} | {
        "encoder." + k for k in torch.nn.TransformerEncoderLayer(8, 1, 16).state_dict()}
    d, n, ffn = 1024, 24, 2048
    encoder = (3 * d * d + 3 * d) + (d * d + d) + (d * ffn + ffn) + (ffn * d + d) + 4 * d  # attn, FFN, 2 LN
    assert sum(p.numel() for p in t.parameters()) == encoder + n * d + d + (d * n + n)
    assert sum(p.numel() for p in g.parameters()) == n
    assert torch.equal(t.cls, torch.zeros(d)) and t.layer_pos.std() > 0.5  # CLS zero, P randn
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
