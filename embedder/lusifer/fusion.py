"""Multi-layer fusion of the universal learner's states (arXiv 2508.09091), an optional connector input.

LUSIFER feeds the connector only the universal learner's last layer; lower layers carry lexical and
language-specific signal the last one has partly abstracted away. The paper instead feeds a weighted sum of
all L transformer layer outputs (the embedding output excluded):

* ``"global"`` — α = softmax(w), w ∈ R^L learnable, zero init (uniform): the same weights for every token;
* ``"transformer"`` — per token t: X_t = [h_t^(1) … h_t^(L)] + P (P ∈ R^{L×d}, a layer-position embedding),
  a learnable CLS vector is prepended, ONE TransformerEncoderLayer (1 head) runs over these L+1 "layer
  tokens", and CLS → Linear(d→L) → softmax gives α_t, which weights the RAW layer states h_t^(l).

Either layout: ``states`` (L, b, T, d) with ``mask`` (b, T) True on real tokens, or (L, total, d) packed
with mask None. Pad tokens get zero weights and zero output and never reach the encoder layer, so they
cannot influence real tokens. Memory: the only per-token tensor built is the (real tokens, L+1, d) input the
encoder layer needs (gathered straight into it when no gradient flows to ``states``); set ``chunk_tokens``
to bound even that in inference.
"""

from __future__ import annotations

import torch
from torch import nn

from lusifer_rag.errors import ConfigError

FUSION_MODES = ("global", "transformer")


class LayerFusion(nn.Module):
    def __init__(self, num_layers: int, hidden_size: int, mode: str, ffn_size: int = 2048, dropout: float = 0.1):
        super().__init__()
        if mode not in FUSION_MODES:
            raise ConfigError(f"layer fusion mode {mode!r} unknown; allowed: {list(FUSION_MODES)}")
        self.mode, self.num_layers, self.hidden_size = mode, num_layers, hidden_size
        #: real tokens per pass of the encoder layer (None: all at once); exact, each token is independent
        self.chunk_tokens: int | None = None
        if mode == "global":
            self.logits = nn.Parameter(torch.zeros(num_layers))  # (L,) zero: uniform start
        else:
            self.layer_pos = nn.Parameter(torch.randn(num_layers, hidden_size))  # P (L, d)
            self.cls = nn.Parameter(torch.zeros(hidden_size))  # (d,)
            self.encoder = nn.TransformerEncoderLayer(
                d_model=hidden_size, nhead=1, dim_feedforward=ffn_size, activation="relu", dropout=dropout,
                batch_first=True, norm_first=False)
            self.to_weights = nn.Linear(hidden_size, num_layers)

    # ---- public -----------------------------------------------------------------------------------------
    def weights(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """α: (L, *lead, d) → (*lead, L); rows sum to 1 on real tokens, 0 on pads."""
        flat, keep, lead = self._flatten(states, mask)
        return self._alpha(flat, keep).view(*lead, self.num_layers)

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fused states: (L, *lead, d) → (*lead, d); pads are 0."""
        flat, keep, lead = self._flatten(states, mask)  # flat (L, N, d), keep (N,) | None
        if self.mode == "global":
            out = torch.tensordot(self.logits.softmax(0).to(flat.dtype), flat, dims=1)  # (N, d)
        else:
            alpha = self._alpha(flat, keep)  # (N, L), 0 on pads
            out = alpha[:, 0, None] * flat[0]  # (N, d)
            for l in range(1, self.num_layers):  # Σ_l α_l h^(l), no (N, L, d) temporary
                out = out + alpha[:, l, None] * flat[l]
        if keep is not None:
            out = out.masked_fill(~keep[:, None], 0.0)  # pads exactly 0 (even if their states are inf/nan)
        return out.view(*lead, self.hidden_size)

    # ---- internals --------------------------------------------------------------------------------------
    def _flatten(self, states: torch.Tensor, mask: torch.Tensor | None):
        L, d = self.num_layers, self.hidden_size
        if states.dim() < 3 or states.shape[0] != L or states.shape[-1] != d:
            raise ValueError(f"states must be (L={L}, *lead, d={d}); got {tuple(states.shape)}")
        lead = states.shape[1:-1]
        if mask is not None and tuple(mask.shape) != tuple(lead):
            raise ValueError(f"mask must be {tuple(lead)}; got {tuple(mask.shape)}")
        keep = None if mask is None else mask.reshape(-1).bool()  # (N,)
        return states.reshape(L, -1, d), keep, lead  # (L, N, d)

    def _alpha(self, flat: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        L, N, _ = flat.shape
        if self.mode == "global":
            a = self.logits.softmax(0).to(flat.dtype).expand(N, L)  # (N, L)
            return a if keep is None else a * keep[:, None]
        idx = None if keep is None else keep.nonzero().squeeze(1)  # (n,) real tokens
        n = N if idx is None else idx.numel()
        step = self.chunk_tokens or max(n, 1)
        parts = []
        for s in range(0, n, step):
            sel = slice(s, s + step) if idx is None else idx[s:s + step]
            x = self._layer_tokens(flat, sel)  # (n_c, L+1, d)
            parts.append(self.to_weights(self.encoder(x)[:, 0]).softmax(-1))  # CLS → (n_c, L)
        a = torch.cat(parts) if parts else flat.new_zeros(0, L)  # (n, L)
        return a if idx is None else a.new_zeros(N, L).index_copy(0, idx, a)  # (N, L), pads 0

    def _layer_tokens(self, flat: torch.Tensor, sel: slice | torch.Tensor) -> torch.Tensor:
        """The encoder input [CLS; h^(1)+P_1 … h^(L)+P_L] for the selected tokens: (n, L+1, d)."""
        L, _, d = flat.shape
        n = len(range(flat.shape[1])[sel]) if isinstance(sel, slice) else sel.numel()
        buf = flat.new_empty(L + 1, n, d)  # layer-major, so buf[1:] is contiguous
        if isinstance(sel, slice):
            buf[1:] = flat[:, sel]  # (L, n, d) copy from a view
        elif torch.is_grad_enabled() and flat.requires_grad:
            buf[1:] = flat.index_select(1, sel)  # autograd forbids out=; a temporary
        else:
            torch.index_select(flat, 1, sel, out=buf[1:])  # gathered straight into the buffer
        buf[1:] += self.layer_pos[:, None].to(buf.dtype)  # + P (L, 1, d)
        buf[0] = self.cls.to(buf.dtype)
        return buf.transpose(0, 1)  # (n, L+1, d) batch-first view
