"""Stage-1 alignment losses.

Decoder target (the official objective): the frozen LLM reads [BOS embedding, connector(learner(x)), its own
embeddings of the target minus BOS] and predicts every target token from the position before it (shifted
next-token cross-entropy, mean over the target tokens of the batch). Nothing else is a label.

The official code runs the LLM bidirectionally over the whole sequence, so with ``mask_probability = 0`` the
position that predicts target token j sees token j itself: the loss can be driven down by copying, not by
reading the connector's output. We keep the prefix (BOS + learner slots) bidirectional, as at inference, and
make the target causal — the prefix sees only itself, target position j sees the prefix and targets ≤ j — so no
position sees the token it predicts ("prefix-lm", the default). ``attention="bidirectional"`` reproduces the
official pattern. ``mask_probability`` p works as the official collator: each target token independently loses
its attention (no query attends to it) with probability p and is replaced by <unk> with probability p, labels
unchanged. The learner part has no inner padding here (the official batch padded it, so the first target token
was often predicted from a pad slot).

BERT target (our extension: an English embedding model made multilingual): stage 1 is distillation instead —
the target reading connector(learner(x)) should give the embedding it gives reading x with its own tokenizer
(1 − cosine of the mean-pooled states).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ATTENTIONS = ("prefix-lm", "bidirectional")


class MaskAttention:
    """SDPA with a full (b, 1, T, T) boolean mask (True = may attend), for the stage-1 sequences."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        gqa = k.shape[-2] != q.shape[-2]
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=self.mask, enable_gqa=gqa)  # (b, H, T, d)
        return out.transpose(1, 2)  # (b, T, H, d)


def assemble(prefix: torch.Tensor, prefix_len: torch.Tensor, target_emb: torch.Tensor, target_len: torch.Tensor,
             key_keep: torch.Tensor, attention: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One right-padded sequence per example: [target_emb[0] (BOS), prefix[:Lp], target_emb[1:Lt]].

    prefix (b, Tp, D) with Lp = prefix_len real slots; target_emb (b, Tt, D) with Lt = target_len (BOS first);
    key_keep (b, Tt) bool: target tokens others may attend to (mask_probability). Returns (x (b, T, D), mask
    (b, 1, T, T), positions (b, T), tgt_pos (b, Tt): where target token j sits, −1 beyond Lt)."""
    b, tp, d = prefix.shape
    tt = target_emb.shape[1]
    lengths = prefix_len + target_len  # (b,) = 1 + Lp + (Lt − 1)
    t = int(lengths.max())
    dev = prefix.device
    steps = torch.arange(t, device=dev)  # (T,)
    x = prefix.new_zeros(b, t, d)
    rows = torch.arange(b, device=dev)[:, None]
    # target token j (j ≥ 1) at 1 + Lp + j − 1 = Lp + j; the BOS (j = 0) at 0
    j = torch.arange(tt, device=dev)[None, :]  # (1, Tt)
    tgt_pos = torch.where(j == 0, torch.zeros_like(j), prefix_len[:, None] + j)  # (b, Tt)
    tgt_pos = torch.where(j < target_len[:, None], tgt_pos, torch.full_like(tgt_pos, -1))
    valid_t = tgt_pos >= 0
    x[rows.expand_as(tgt_pos)[valid_t], tgt_pos[valid_t]] = target_emb[valid_t].to(x.dtype)
    pslot = torch.arange(tp, device=dev)[None, :]  # (1, Tp)
    valid_p = pslot < prefix_len[:, None]
    x[rows.expand(b, tp)[valid_p], (pslot + 1).expand(b, tp)[valid_p]] = prefix[valid_p]

    real = steps[None, :] < lengths[:, None]  # (b, T)
    is_target = (steps[None, :] > prefix_len[:, None]) & real  # (b, T): target tokens after the BOS
    keep = real.clone()
    kept = key_keep & valid_t  # (b, Tt)
    drop = valid_t & ~kept & (j > 0)
    keep[rows.expand_as(tgt_pos)[drop], tgt_pos[drop]] = False  # masked target tokens: nobody attends to them
    mask = keep[:, None, None, :].expand(b, 1, t, t).clone()  # (b, 1, T, T) query × key
    if attention == "prefix-lm":
        q_target = is_target[:, None, :, None]  # (b, 1, T, 1)
        k_target = is_target[:, None, None, :]  # (b, 1, 1, T)
        causal = steps[None, None, None, :] <= steps[None, None, :, None]  # key ≤ query
        # prefix queries see no target; target queries see the prefix and the targets up to themselves
        mask &= ~k_target | (q_target & causal)
    # no row is empty: every query sees the BOS, which is never masked
    return x, mask, steps[None, :].expand(b, t), tgt_pos


def next_token_loss(hidden: torch.Tensor, lm_head: torch.nn.Module, target_ids: torch.Tensor,
                    tgt_pos: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cross-entropy of target tokens 1…Lt−1, each predicted from the position before it; logits only where a
    label is (not B×T×V). Returns (mean loss, number of label tokens)."""
    b = hidden.shape[0]
    labels = target_ids[:, 1:]  # (b, Tt−1)
    at = tgt_pos[:, 1:]  # (b, Tt−1) where each label token sits
    valid = at >= 0
    rows = torch.arange(b, device=hidden.device)[:, None].expand_as(at)
    h = hidden[rows[valid], at[valid] - 1]  # (n, D): the states just before each label
    logits = lm_head(h).float()  # (n, V)
    n = int(valid.sum())
    return F.cross_entropy(logits, labels[valid], reduction="mean"), n


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 − cos between the pooled student (b, D) and teacher (b, D) embeddings, mean over the batch."""
    return (1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).mean()
