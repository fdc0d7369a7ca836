"""The stages of LUSIFER in plain PyTorch. Every stage works on either layout: x is (b, T, d) padded or
(total, d) packed; the attention object passed in knows which (see attention.py).

Parameter names here are ours (q/k/v and gate/up are fused); checkpoint.py maps the official keys onto them.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attention import apply_rope, rope_cos_sin, rope_inv_freq
from .config import LLMShape, XLMRShape

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def run_layer(stage: nn.Module, layer: nn.Module, *args: Any) -> torch.Tensor:
    """``layer(*args)``, recomputed in backward when training sets ``stage.checkpointing`` (activation
    checkpointing: one layer's activations kept at a time instead of all of them)."""
    if getattr(stage, "checkpointing", False) and stage.training and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(layer, *args, use_reentrant=False)
    return layer(*args)

_ACTS = {"gelu": lambda x: F.gelu(x), "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}


# ---- universal learner: XLM-R encoder (post-LN) --------------------------------------------------------
class XLMRLayer(nn.Module):
    def __init__(self, s: XLMRShape):
        super().__init__()
        d = s.hidden_size
        self.heads, self.act = s.num_heads, _ACTS[s.act]
        self.qkv = nn.Linear(d, 3 * d)  # query, key, value stacked
        self.attn_out = nn.Linear(d, d)
        self.attn_ln = nn.LayerNorm(d, eps=s.eps)
        self.inter = nn.Linear(d, s.intermediate_size)
        self.out = nn.Linear(s.intermediate_size, d)
        self.out_ln = nn.LayerNorm(d, eps=s.eps)

    #: hidden dropout (the HF config's hidden_dropout_prob); only training sets it, and only in train mode
    dropout = 0.0

    def forward(self, x: torch.Tensor, attn: Attention) -> torch.Tensor:
        lead, d = x.shape[:-1], x.shape[-1]
        q, k, v = self.qkv(x).view(*lead, 3, self.heads, d // self.heads).unbind(-3)  # each (*lead, H, hd)
        a = attn(q, k, v).reshape(*lead, d)
        p = self.dropout if self.training else 0.0
        x = self.attn_ln(x + F.dropout(self.attn_out(a), p))
        return self.out_ln(x + F.dropout(self.out(self.act(self.inter(x))), p))


class UniversalLearner(nn.Module):
    """XLM-R: word + position + token-type(0) embeddings, LayerNorm, post-LN layers; returns the last layer."""

    def __init__(self, s: XLMRShape):
        super().__init__()
        self.shape = s
        self.word_emb = nn.Embedding(s.vocab_size, s.hidden_size)
        self.pos_emb = nn.Embedding(s.max_positions, s.hidden_size)
        self.type_emb = nn.Embedding(s.type_vocab_size, s.hidden_size)
        self.emb_ln = nn.LayerNorm(s.hidden_size, eps=s.eps)
        self.layers = nn.ModuleList(XLMRLayer(s) for _ in range(s.num_layers))

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, attn: Attention,
                all_layers: bool = False) -> torch.Tensor:
        # ids, positions: (*lead,) -> (*lead, d), or (L, *lead, d) with every layer's output (fusion connector)
        x = self.word_emb(ids) + self.pos_emb(positions) + self.type_emb.weight[0]
        x = self.emb_ln(x)
        states = []
        for layer in self.layers:
            x = run_layer(self, layer, x, attn)
            if all_layers:
                states.append(x)
        return torch.stack(states) if all_layers else x

    def encode(self, ids: torch.Tensor, attn: Attention, within: torch.Tensor,
               starts: torch.Tensor | None, all_layers: bool = False) -> torch.Tensor:
        """The universal-learner interface (shared with mt5.MT5Learner): ids (b, T) padded, or (total,) packed
        with ``starts`` (total,) = flat index of each token's sequence start; ``within`` (same shape as ids) is each
        token's rank in its sequence. XLM-R positions skip pad ids, so they come from the ids; BERT's are 0..L-1."""
        if self.shape.backbone == "bert":
            return self(ids, within, attn, all_layers)
        cum = None
        if starts is not None:
            real = torch.cat([ids.new_zeros(1), ids.ne(self.shape.pad_id).cumsum(0)])  # (total+1,)
            cum = real[starts]  # (total,) real tokens before each token's sequence
        return self(ids, xlmr_positions(ids, cum, self.shape.pad_id), attn, all_layers)


def xlmr_positions(ids: torch.Tensor, starts_cumsum: torch.Tensor | None, pad_id: int) -> torch.Tensor:
    """XLM-R position ids: pad_id + 1 + rank among the sequence's non-pad tokens; pad_id for pad tokens.

    Computed from the ids like HF (a literal pad id inside a text is skipped the same way).
    ids (b, T) padded, or (total,) packed with ``starts_cumsum`` (total,) = running count before each sequence.
    """
    real = ids.ne(pad_id)
    if starts_cumsum is None:
        rank = real.cumsum(-1)  # (b, T)
    else:
        rank = real.cumsum(0) - starts_cumsum  # (total,)
    return rank * real + pad_id


# ---- connector ------------------------------------------------------------------------------------------
class Connector(nn.Module):
    """FF d_ul → d_ul → ReLU → d_llm, plus ``added_tokens`` (n, d_llm) when n > 0. With ``fusion`` ('global' or
    'transformer', arXiv 2508.09091) it takes every learner layer (L, *lead, d_ul) and fuses them first."""

    def __init__(self, d_ul: int, d_llm: int, num_added_tokens: int = 0, fusion: str | None = None,
                 num_layers: int = 0):
        super().__init__()
        self.ff0 = nn.Linear(d_ul, d_ul)
        self.ff2 = nn.Linear(d_ul, d_llm)
        self.added_tokens = nn.Parameter(torch.randn(num_added_tokens, d_llm)) if num_added_tokens else None
        self.fusion = None
        if fusion:
            from .fusion import LayerFusion

            self.fusion = LayerFusion(num_layers, d_ul, fusion)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x (*lead, d_ul), or (L, *lead, d_ul) with fusion; mask (*lead,) real tokens (padded layout) -> (*lead, D)
        if self.fusion is not None:
            x = self.fusion(x, mask)
        return self.ff2(F.relu(self.ff0(x)))


# ---- target LLM, bidirectional ---------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # statistics in fp32, like HF Mistral/Llama/Qwen2
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class DecoderLayer(nn.Module):
    def __init__(self, s: LLMShape):
        super().__init__()
        d, hd = s.hidden_size, s.head_dim
        self.h, self.kv, self.hd = s.num_heads, s.num_kv_heads, hd
        self.in_norm = RMSNorm(d, s.eps)
        self.qkv = nn.Linear(d, (s.num_heads + 2 * s.num_kv_heads) * hd, bias=s.qkv_bias)  # q | k | v
        self.o = nn.Linear(s.num_heads * hd, d, bias=s.o_bias)
        self.post_norm = RMSNorm(d, s.eps)
        self.gate_up = nn.Linear(d, 2 * s.intermediate_size, bias=s.mlp_bias)  # gate | up
        self.down = nn.Linear(s.intermediate_size, d, bias=s.mlp_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn: Attention) -> torch.Tensor:
        lead = x.shape[:-1]
        qkv = self.qkv(self.in_norm(x)).view(*lead, self.h + 2 * self.kv, self.hd)
        q, k, v = qkv.split((self.h, self.kv, self.kv), dim=-2)  # (*lead, H|Hkv, hd)
        a = attn(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v.contiguous())
        x = x + self.o(a.reshape(*lead, self.h * self.hd))
        gate, up = self.gate_up(self.post_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class BidirectionalLLM(nn.Module):
    """Mistral / Llama / Qwen2 decoder layers on ``inputs_embeds``, non-causal, sliding window ignored,
    followed by the final RMSNorm. No embeddings, no lm_head."""

    def __init__(self, s: LLMShape):
        super().__init__()
        self.shape = s
        self.layers = nn.ModuleList(DecoderLayer(s) for _ in range(s.num_layers))
        self.norm = RMSNorm(s.hidden_size, s.eps)
        inv, self.rope_scale = rope_inv_freq(s.rope, s.head_dim, s.hf_config)
        self._inv_freq: dict[Any, torch.Tensor] = {"cpu": inv}  # not a buffer: survives meta-device init

    def inv_freq(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._inv_freq:
            self._inv_freq[key] = self._inv_freq["cpu"].to(device)
        return self._inv_freq[key]

    def forward(self, x: torch.Tensor, positions: torch.Tensor, attn: Attention) -> torch.Tensor:
        # x (*lead, D), positions (*lead,) -> (*lead, D)
        cos, sin = rope_cos_sin(positions, self.inv_freq(x.device), self.rope_scale, x.dtype)
        for layer in self.layers:
            x = run_layer(self, layer, x, cos, sin, attn)
        return self.norm(x)


# ---- target: a BERT encoder embedding model (our extension) ------------------------------------------------
class EncoderTarget(nn.Module):
    """An HF BERT encoder run on ``inputs_embeds``, as ``BertModel(inputs_embeds=...)``: + absolute position and
    token-type-0 embeddings, LayerNorm, post-LN layers. (Its word embeddings are not part of the chain: stage-1
    training keeps them beside it, for the model's own reading of the text.)"""

    def __init__(self, s: XLMRShape):
        super().__init__()
        self.shape = s
        self.pos_emb = nn.Embedding(s.max_positions, s.hidden_size)
        self.type_emb = nn.Embedding(s.type_vocab_size, s.hidden_size)
        self.emb_ln = nn.LayerNorm(s.hidden_size, eps=s.eps)
        self.layers = nn.ModuleList(XLMRLayer(s) for _ in range(s.num_layers))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, attn: Attention) -> torch.Tensor:
        # x (*lead, D) embeddings, positions (*lead,) 0-based -> (*lead, D)
        x = self.emb_ln(x + self.pos_emb(positions) + self.type_emb.weight[0])
        for layer in self.layers:
            x = run_layer(self, layer, x, attn)
        return x


# ---- head -------------------------------------------------------------------------------------------------
class Projection(nn.Module):
    """Linear → ReLU → Linear (``output_projection``)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.l0 = nn.Linear(d_in, d_hidden)
        self.l2 = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(F.relu(self.l0(x)))
