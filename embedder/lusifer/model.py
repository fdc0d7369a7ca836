"""The LUSIFER chain: universal learner → connector (+ added tokens) → bidirectional LLM → mean pool → projection.

Two layouts, same result:
* ``forward_padded(ids (b, T), lengths (b,))`` — SDPA with a key-padding mask;
* ``forward_packed(ids (total,), cu_seqlens (b+1,), max_seqlen)`` — no attention over padding.

Added tokens (num_added_tokens = n > 0) go right after each text's real tokens, with the RoPE positions the
official code gives them when the text is encoded alone: ceil(L / 8)·8 + j. So a text's vector equals the
official batch-of-one output, whatever batch it is in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .attention import PackedAttention, PaddedAttention
from lusifer_rag.errors import ConfigError

from .config import LLMShape, target_shape_from_hf, ul_shape_from_hf
from .mt5 import MT5Learner
from .stages import BidirectionalLLM, Connector, EncoderTarget, Projection, UniversalLearner

#: universal-learner stage by shape.backbone; each has ``encode(ids, attn, within, starts)``
UL_STAGES: dict[str, type[nn.Module]] = {"xlm-r": UniversalLearner, "mt5": MT5Learner, "bert": UniversalLearner}


class LusiferModel(nn.Module):
    def __init__(self, ul: Any, llm: Any, num_added_tokens: int = 0, out_dim: int | None = None,
                 pad_to_multiple_of: int = 8, fusion: str | None = None):
        """``ul``: XLMRShape | MT5Shape | BertShape; ``llm``: LLMShape (decoder target) | BertShape (encoder
        target); ``fusion``: None (the official last-layer connector), 'global' or 'transformer'."""
        super().__init__()
        self.ul = UL_STAGES[ul.backbone](ul)
        if fusion and not isinstance(self.ul, UniversalLearner):
            raise ConfigError("the fusion connector needs an XLM-R or BERT universal learner")
        self.connector = Connector(ul.hidden_size, llm.hidden_size, num_added_tokens, fusion, ul.num_layers)
        if isinstance(llm, LLMShape):
            self.llm = BidirectionalLLM(llm)
        else:
            if num_added_tokens:
                raise ConfigError("added tokens need a decoder target (mistral, llama, qwen2)")
            self.llm = EncoderTarget(llm)
        self.proj = Projection(llm.hidden_size, llm.hidden_size, out_dim or llm.hidden_size)
        self.pad_id = ul.pad_id
        self.num_added = num_added_tokens
        #: the official tokenizer.pad multiple: fixes the RoPE positions of added tokens
        self.pad_multiple = pad_to_multiple_of
        self.packed_kernel = "auto"

    @property
    def dim(self) -> int:
        return self.proj.l2.out_features

    @classmethod
    def random(cls, ul_config: Any, llm_config: Any, backbone: str = "mistral", num_added_tokens: int = 0,
               dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0,
               std: float = 0.02, fusion: str | None = None) -> "LusiferModel":
        """A LUSIFER-shaped model with random weights from two HF configs (XLM-R, BERT or mT5; benchmarks)."""
        gen = torch.Generator().manual_seed(seed)
        model = cls(ul_shape_from_hf(ul_config), target_shape_from_hf(llm_config, backbone), num_added_tokens,
                    fusion=fusion)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(("norm.weight", "ln.weight")):
                    p.fill_(1.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
        return model.to(device=device, dtype=dtype).eval()

    # ---- layouts ------------------------------------------------------------------------------------------
    def forward_padded(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (b, T) right-padded, lengths (b,) → (b, out_dim)."""
        b, t = ids.shape
        n = self.num_added
        steps = torch.arange(t, device=ids.device)
        key_mask = steps[None, :] < lengths[:, None]  # (b, T)
        fused = self.connector.fusion is not None
        x = self.ul.encode(ids, PaddedAttention(key_mask), steps.expand(b, t), None, all_layers=fused)
        h = self.connector(x, key_mask)  # (b, T, D) from (b, T, d_ul), or (L, b, T, d_ul) with fusion
        positions = steps.expand(b, t)  # (b, T)
        if n:
            rows = torch.arange(b, device=ids.device)[:, None]  # (b, 1)
            j = torch.arange(n, device=ids.device)  # (n,)
            cols = lengths[:, None] + j  # (b, n): right after the real tokens
            h = torch.cat([h, h.new_zeros(b, n, h.shape[-1])], dim=1)  # (b, T+n, D)
            h[rows, cols] = self.connector.added_tokens.to(h.dtype)
            positions = torch.cat([positions, positions.new_zeros(b, n)], dim=1).clone()  # (b, T+n)
            positions[rows, cols] = self._ceil(lengths)[:, None] + j
            key_mask = torch.arange(t + n, device=ids.device)[None, :] < (lengths + n)[:, None]  # (b, T+n)
        g = self.llm(h, positions, PaddedAttention(key_mask))  # (b, T+n, D)
        m = key_mask.unsqueeze(-1).float()  # (b, T+n, 1)
        pooled = (g.float() * m).sum(1) / m.sum(1)  # (b, D) fp32
        return self.proj(pooled.to(g.dtype))

    def forward_packed(self, ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        """ids (total,), cu_seqlens (b+1,) → (b, out_dim). No token attends to padding (there is none)."""
        dev = ids.device
        n = self.num_added
        cu = cu_seqlens.long()
        lengths = cu[1:] - cu[:-1]  # (b,)
        b = lengths.shape[0]
        seq = torch.repeat_interleave(torch.arange(b, device=dev), lengths)  # (total,)
        total = ids.shape[0]
        within = torch.arange(total, device=dev) - cu[:-1][seq]  # (total,) rank inside its sequence
        attn = PackedAttention(cu_seqlens, max_seqlen, seq, self.packed_kernel)
        fused = self.connector.fusion is not None
        h = self.connector(self.ul.encode(ids, attn, within, cu[:-1][seq], all_layers=fused))  # (total, D)
        positions = within
        if n:
            j = torch.arange(n, device=dev)
            cu2 = cu + n * torch.arange(b + 1, device=dev)  # (b+1,) each sequence grows by n
            dest_real = torch.arange(total, device=dev) + n * seq  # (total,)
            dest_added = ((cu2[:-1] + lengths)[:, None] + j).reshape(-1)  # (b·n,)
            h2 = h.new_empty(total + b * n, h.shape[-1])  # (total + b·n, D)
            h2[dest_real] = h
            h2[dest_added] = self.connector.added_tokens.to(h.dtype).repeat(b, 1)
            positions = within.new_empty(total + b * n)
            positions[dest_real] = within
            positions[dest_added] = (self._ceil(lengths)[:, None] + j).reshape(-1)
            h, lengths, cu = h2, lengths + n, cu2
            seq = torch.repeat_interleave(torch.arange(b, device=dev), lengths)
            attn = PackedAttention(cu, max_seqlen + n, seq, self.packed_kernel)
        g = self.llm(h, positions, attn)  # (total', D)
        pooled = g.new_zeros(b, g.shape[-1], dtype=torch.float32).index_add_(0, seq, g.float())
        pooled = pooled / lengths[:, None].float()  # (b, D) fp32 mean
        return self.proj(pooled.to(g.dtype))

    def _ceil(self, lengths: torch.Tensor) -> torch.Tensor:
        m = self.pad_multiple
        return (lengths + m - 1) // m * m

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.forward_padded(ids, lengths)
