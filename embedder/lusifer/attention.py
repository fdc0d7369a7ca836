"""Bidirectional attention over two layouts, and RoPE.

* padded: x is (b, T, ...); SDPA with a boolean key-padding mask (pad queries compute garbage that is never read).
* packed: x is (total, ...), sequences concatenated, delimited by ``cu_seqlens``; nothing attends over padding.
  Kernels: flash-attn's varlen (CUDA, when installed), FlexAttention document masking (CUDA), or SDPA with a
  block-diagonal mask (any device; the CPU reference for the packed layout).

An attention object is built once per forward and shared by every layer of a stage.
q, k, v reach it as (*lead, H, d) / (*lead, Hkv, d) and it returns (*lead, H, d).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from lusifer_rag.errors import ConfigError

PACKED_KERNELS = ("auto", "flash", "flex", "sdpa")


def flash_attn_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA build
        return False
    return True


class PaddedAttention:
    """(b, T, H, d) layout with a (b, T) bool mask of real keys."""

    def __init__(self, key_mask: torch.Tensor):
        self.mask = key_mask[:, None, None, :]  # (b, 1, 1, T): broadcast over heads and queries

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        gqa = k.shape[-2] != q.shape[-2]
        out = F.scaled_dot_product_attention(  # (b, H, T, d)
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=self.mask, enable_gqa=gqa
        )
        return out.transpose(1, 2)  # (b, T, H, d)


class PackedAttention:
    """(total, H, d) layout, sequences delimited by ``cu_seqlens`` (b+1,) int32."""

    def __init__(self, cu_seqlens: torch.Tensor, max_seqlen: int, seq_ids: torch.Tensor, kernel: str = "auto"):
        if kernel not in PACKED_KERNELS:
            raise ConfigError(f"packed attention kernel {kernel!r} unknown; allowed: {list(PACKED_KERNELS)}")
        device = cu_seqlens.device
        if kernel == "auto":
            kernel = ("flash" if flash_attn_available() else "flex") if device.type == "cuda" else "sdpa"
        if kernel == "flash" and (device.type != "cuda" or not flash_attn_available()):
            raise ConfigError("packed kernel 'flash' needs CUDA and the flash-attn package "
                              "(pip install flash-attn --no-build-isolation)")
        self.kernel = kernel
        self.cu = cu_seqlens.to(torch.int32)
        self.max_seqlen = int(max_seqlen)
        self.seq_ids = seq_ids  # (total,) int64: which sequence each token belongs to
        if kernel == "sdpa":
            # (1, 1, total, total) block-diagonal: quadratic in the packed length, fine for CPU-sized batches
            self.mask = (seq_ids[:, None] == seq_ids[None, :])[None, None]
        elif kernel == "flex":
            self.block_mask = _document_block_mask(seq_ids)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.kernel == "flash":
            from flash_attn import flash_attn_varlen_func

            return flash_attn_varlen_func(  # (total, H, d); GQA handled by the kernel
                q, k, v, self.cu, self.cu, self.max_seqlen, self.max_seqlen, causal=False
            )
        gqa = k.shape[-2] != q.shape[-2]
        qh, kh, vh = (t.transpose(0, 1)[None] for t in (q, k, v))  # (1, H, total, d)
        if self.kernel == "flex":
            out = _flex(q.device.type)(qh, kh, vh, block_mask=self.block_mask, enable_gqa=gqa)
        else:
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=self.mask, enable_gqa=gqa)
        return out[0].transpose(0, 1)  # (total, H, d)


def _document_block_mask(seq_ids: torch.Tensor) -> Any:
    from torch.nn.attention.flex_attention import create_block_mask

    def same_doc(b, h, q_idx, kv_idx):
        return seq_ids[q_idx] == seq_ids[kv_idx]

    n = seq_ids.shape[0]
    return create_block_mask(same_doc, None, None, n, n, device=seq_ids.device)


@functools.lru_cache(maxsize=None)
def _flex(device_type: str) -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    # compiled on CUDA (the fused kernel); eager elsewhere (a correct but dense reference)
    return torch.compile(flex_attention, dynamic=True) if device_type == "cuda" else flex_attention


# ---- RoPE ------------------------------------------------------------------------------------------------
def rope_inv_freq(rope: dict[str, Any], head_dim: int, hf_config: Any = None) -> tuple[torch.Tensor, float]:
    """(inv_freq (head_dim/2,) fp32, attention scaling), as transformers computes them for this rope type."""
    if rope.get("rope_type", "default") == "default" or hf_config is None:
        theta = float(rope.get("rope_theta", 10000.0))
        exps = torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float() / head_dim
        inv = 1.0 / (theta**exps)
        return inv, 1.0
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    with torch.device("cpu"):  # even when the model is being built on the meta device
        inv, scale = ROPE_INIT_FUNCTIONS[rope["rope_type"]](hf_config, torch.device("cpu"))
    return inv.float(), float(scale)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, scale: float,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (*positions.shape, 1, head_dim): broadcast over heads. Angles in fp32."""
    freqs = positions[..., None].float() * inv_freq  # (*lead, d/2)
    emb = torch.cat((freqs, freqs), dim=-1)[..., None, :]  # (*lead, 1, d)
    return (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (*lead, H, d) rotated by (cos, sin) (*lead, 1, d): the 'rotate half' convention of HF Llama/Mistral."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
