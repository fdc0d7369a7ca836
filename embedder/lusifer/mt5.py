"""mT5 encoder as the universal learner (``universal_learner_backbone_type`` "mt5"), plain PyTorch.

T5 encoder: token embedding (no absolute positions), pre-norm blocks with T5 LayerNorm (RMS, no mean, no bias),
self-attention WITHOUT 1/sqrt(d) scaling plus a relative position bias computed by block 0's bucket table and
shared by every block, a gated FFN (wo(act(wi_0 x) · wi_1 x)), no biases anywhere, final layer norm. Dropout off.

Official layout (peft over MT5EncoderModel): ``universal_learner.base_model.model.`` + ``shared.weight`` and/or its
tied copy ``encoder.embed_tokens.weight``, ``encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}``,
``encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight``, ``layer.{0,1}.layer_norm.weight``,
``layer.1.DenseReluDense.{wi_0,wi_1,wo}``, ``encoder.final_layer_norm.weight``. LoRA targets = every Linear of the
encoder (the official ``target_modules="all"`` → find_all_linear_names): q, k, v, o, wi_0, wi_1, wo.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .attention import PackedAttention, PaddedAttention
from .config import MT5Shape
from .stages import _ACTS, RMSNorm

if TYPE_CHECKING:
    from .checkpoint import Layout


def relative_buckets(rel: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5 buckets of ``rel = key_pos - query_pos`` (any shape, int64) → same shape, in [0, nb)."""
    half = num_buckets // 2
    out = (rel > 0).long() * half
    rel = rel.abs()
    max_exact = half // 2
    # log-spaced buckets beyond max_exact; clamp(min=1) only avoids log(0) where the exact branch is taken anyway
    large = max_exact + (torch.log(rel.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
                         * (half - max_exact)).long()
    large = large.clamp(max=half - 1)
    return out + torch.where(rel < max_exact, rel, large)


class MT5Block(nn.Module):
    def __init__(self, s: MT5Shape):
        super().__init__()
        inner = s.num_heads * s.d_kv
        self.heads, self.d_kv, self.act = s.num_heads, s.d_kv, _ACTS[s.act]
        self.attn_norm = RMSNorm(s.hidden_size, s.eps)
        self.qkv = nn.Linear(s.hidden_size, 3 * inner, bias=False)  # q | k | v
        self.o = nn.Linear(inner, s.hidden_size, bias=False)
        self.ff_norm = RMSNorm(s.hidden_size, s.eps)
        self.wi = nn.Linear(s.hidden_size, 2 * s.d_ff, bias=False)  # wi_0 (activated) | wi_1 (linear)
        self.wo = nn.Linear(s.d_ff, s.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, attn: "BiasedAttention") -> torch.Tensor:
        lead = x.shape[:-1]
        q, k, v = self.qkv(self.attn_norm(x)).view(*lead, 3, self.heads, self.d_kv).unbind(-3)  # (*lead, H, dk)
        x = x + self.o(attn(q, k, v).reshape(*lead, self.heads * self.d_kv))
        gate, lin = self.wi(self.ff_norm(x)).chunk(2, dim=-1)
        return x + self.wo(self.act(gate) * lin)


class BiasedAttention:
    """Attention with scale 1 plus the relative position bias, built once per forward from the base attention
    object (which fixes the layout and which keys are visible).

    * padded, or packed with kernel "sdpa": SDPA with a float mask = bias where visible, -inf elsewhere,
      (b, H, T, T) / (1, H, total, total) block-diagonal (dense: the CPU reference);
    * packed with kernel "flex" or "flash": FlexAttention with document masking and a ``score_mod`` adding
      ``by_dist[h, within[k] - within[q]]`` — memory O(H · max_seqlen), not quadratic in the packed length.
      (flash-attn takes no per-pair bias, so "flash" runs on flex for mT5.)
    """

    def __init__(self, base: PaddedAttention | PackedAttention, within: torch.Tensor, stage: "MT5Learner",
                 dtype: torch.dtype):
        self.packed = isinstance(base, PackedAttention)
        self.flex = self.packed and base.kernel in ("flex", "flash")
        if self.flex:
            from .attention import _document_block_mask

            m = base.max_seqlen
            self.offset, self.within = m - 1, within
            self.by_dist = stage.bias(torch.arange(1 - m, m, device=within.device)).t().to(dtype)  # (H, 2m-1)
            mask = getattr(base, "block_mask", None)  # absent when the base kernel is "flash"
            self.block_mask = mask if mask is not None else _document_block_mask(base.seq_ids)
            return
        pos = within[0] if within.dim() == 2 else within  # padded: every row is 0..T-1
        bias = stage.bias(pos[None, :] - pos[:, None]).permute(2, 0, 1)[None].to(dtype)  # (1, H, Tq, Tk)
        visible = base.mask if not self.packed else base.seq_ids[:, None] == base.seq_ids[None, :]
        self.mask = bias.masked_fill(~visible, float("-inf"))  # (b|1, H, Tq, Tk)

    def _score_mod(self, score, b, h, q_idx, kv_idx):
        return score + self.by_dist[h, self.within[kv_idx] - self.within[q_idx] + self.offset]

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.packed:
            qh, kh, vh = (t.transpose(0, 1)[None] for t in (q, k, v))  # (1, H, total, dk)
            if self.flex:
                from .attention import _flex

                out = _flex(q.device.type)(qh, kh, vh, score_mod=self._score_mod, block_mask=self.block_mask,
                                           scale=1.0)
            else:
                out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=self.mask, scale=1.0)
            return out[0].transpose(0, 1)  # (total, H, dk)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=self.mask, scale=1.0)  # (b, H, T, dk)
        return out.transpose(1, 2)  # (b, T, H, dk)


class MT5Learner(nn.Module):
    """mT5 encoder stack; returns the final-layer-normed last hidden state."""

    def __init__(self, s: MT5Shape):
        super().__init__()
        self.shape = s
        self.embed = nn.Embedding(s.vocab_size, s.hidden_size)
        self.rel_bias = nn.Embedding(s.num_buckets, s.num_heads)  # block 0's table, shared by all blocks
        self.blocks = nn.ModuleList(MT5Block(s) for _ in range(s.num_layers))
        self.final_norm = RMSNorm(s.hidden_size, s.eps)

    def bias(self, rel: torch.Tensor) -> torch.Tensor:
        """rel = key_pos - query_pos (any shape) → per-head bias (*rel.shape, H) from block 0's table."""
        return self.rel_bias(relative_buckets(rel, self.shape.num_buckets, self.shape.max_distance))

    def encode(self, ids: torch.Tensor, attn: PaddedAttention | PackedAttention, within: torch.Tensor,
               starts: torch.Tensor | None, all_layers: bool = False) -> torch.Tensor:
        """ids (b, T) / (total,), within = position inside its own sequence (same shape) → (*ids.shape, d).
        ``all_layers`` (the fusion connector) is refused when the model is built."""
        x = self.embed(ids)
        battn = BiasedAttention(attn, within, self, x.dtype)
        for block in self.blocks:
            x = block(x, battn)
        return self.final_norm(x)


def add_mt5_keys(layout: "Layout", s: MT5Shape, prefix: str, lora: str | None) -> None:
    """Register the official MT5EncoderModel keys (under ``prefix``) onto our ``ul.*`` names."""
    from .checkpoint import Linear

    d, inner = s.hidden_size, s.num_heads * s.d_kv
    # tied: safetensors keeps one of the two names (save_model drops the alias); accept either
    layout.one_of("ul.embed.weight", [prefix + "shared.weight", prefix + "encoder.embed_tokens.weight"],
                  (s.vocab_size, d))
    B = prefix + "encoder.block."
    layout.plain_key("ul.rel_bias.weight", B + "0.layer.0.SelfAttention.relative_attention_bias.weight",
                     (s.num_buckets, s.num_heads))
    for i in range(s.num_layers):
        L, o = f"{B}{i}.layer.", f"ul.blocks.{i}."
        layout.linear(o + "qkv", [Linear(L + f"0.SelfAttention.{n}", lora, inner, d, False) for n in "qkv"])
        layout.linear(o + "o", [Linear(L + "0.SelfAttention.o", lora, d, inner, False)])
        layout.linear(o + "wi", [Linear(L + f"1.DenseReluDense.{n}", lora, s.d_ff, d, False)
                                 for n in ("wi_0", "wi_1")])
        layout.linear(o + "wo", [Linear(L + "1.DenseReluDense.wo", lora, d, s.d_ff, False)])
        layout.plain_key(o + "attn_norm.weight", L + "0.layer_norm.weight", (d,))
        layout.plain_key(o + "ff_norm.weight", L + "1.layer_norm.weight", (d,))
    layout.plain_key("ul.final_norm.weight", prefix + "encoder.final_layer_norm.weight", (d,))
