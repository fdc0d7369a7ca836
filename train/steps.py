"""What one optimizer step computes, per stage: examples → tokens → the model's stages → the loss.

Stage 1 (align): each micro-batch's loss (gradient accumulation sums them); stage 2 (finetune): the global
batch's NT-Xent through GradCache, with every process's embeddings gathered (in-batch negatives from all of
them; one process still has its own in-batch negatives, which the official code lost).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.distributed as dist

from lusifer_rag.embedder.lusifer.attention import PaddedAttention
from lusifer_rag.embedder.lusifer.config import LLMShape, templates

from .config import TrainConfig
from .data import AlignExample, PairExample
from .losses.alignment import assemble, distillation_loss, next_token_loss
from .losses.ntxent import NTXentLoss, contrastive_labels


def pad_batch(seqs: list[list[int]], pad_id: int, multiple: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (b, T) ids, T a multiple of ``multiple`` (the official tokenizer.pad), and lengths (b,)."""
    longest = max(max(len(s) for s in seqs), 1)
    t = (longest + multiple - 1) // multiple * multiple
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return ids.to(device), torch.tensor([len(s) for s in seqs], dtype=torch.long, device=device)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int, special: bool = False) -> list[list[int]]:
    return tokenizer(list(texts), add_special_tokens=special, truncation=True, max_length=max_length,
                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def _mean(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    mask = (torch.arange(h.shape[1], device=h.device)[None, :] < lengths[:, None]).unsqueeze(-1).float()
    return (h.float() * mask).sum(1) / mask.sum(1)  # (b, D) fp32


class AlignStep:
    """Stage 1 on a micro-batch of examples: the official next-token objective (decoder target) or the
    distillation objective (BERT target)."""

    def __init__(self, cfg: TrainConfig, ul_tokenizer: Any, target_tokenizer: Any, ul_backbone: str,
                 target_shape: Any, device: torch.device):
        self.cfg, self.device = cfg, device
        self.ul_tok, self.tgt_tok = ul_tokenizer, target_tokenizer
        self.query_template = templates(ul_backbone)[0]
        self.decoder = isinstance(target_shape, LLMShape)
        self.ul_pad = ul_tokenizer.pad_token_id if ul_tokenizer.pad_token_id is not None else 1
        bos, eos = target_tokenizer.bos_token or "", target_tokenizer.eos_token or ""
        self.lm_format = bos + "{text}" + eos
        self.unk = target_tokenizer.mask_token_id if target_tokenizer.mask_token_id is not None \
            else target_tokenizer.unk_token_id
        self.gen = torch.Generator().manual_seed(cfg.seed + 7)  # mask_probability draws (checkpointed with the rest)

    def _ul(self, examples: list[AlignExample]) -> tuple[torch.Tensor, torch.Tensor]:
        head, tail = self.query_template.split("{text}")
        texts = [head.format(instruction=e.instruction) + e.source + tail for e in examples]
        return pad_batch(tokenize(self.ul_tok, texts, self.cfg.model.max_length), self.ul_pad, 8, self.device)

    def target_text(self, e: AlignExample) -> str:
        return e.target if e.target else f"{e.instruction}.\n{e.source}"  # reconstruction: "I.\n text"

    def __call__(self, tm: torch.nn.Module, examples: list[AlignExample]) -> tuple[torch.Tensor, int]:
        """(loss, tokens it covers) of one micro-batch; ``tm`` is the TrainingModel (called through its
        DDP/FSDP wrapper, which runs this as its forward)."""
        core, extras = tm.core, tm.extras
        ids, lengths = self._ul(examples)
        steps = torch.arange(ids.shape[1], device=self.device)
        key_mask = steps[None, :] < lengths[:, None]
        fused = core.connector.fusion is not None
        x = core.ul.encode(ids, PaddedAttention(key_mask), steps.expand_as(ids), None, all_layers=fused)
        prefix = core.connector(x, key_mask)  # (b, Tu, D)
        if self.decoder:
            return self._next_token(core, extras, prefix, lengths, examples)
        return self._distill(core, extras, prefix, lengths, examples)

    def _next_token(self, core, extras, prefix, lengths, examples):
        texts = [self.lm_format.format(text=self.target_text(e)) for e in examples]
        tgt = tokenize(self.tgt_tok, texts, self.cfg.model.target_max_length)
        tgt_ids, tgt_len = pad_batch(tgt, self.tgt_tok.pad_token_id or 0, 1, self.device)
        p = self.cfg.data.mask_probability
        inputs = tgt_ids.clone()
        keep = torch.ones_like(tgt_ids, dtype=torch.bool)
        if p > 0:
            keep = torch.rand(tgt_ids.shape, generator=self.gen).to(self.device) >= p
            swap = torch.rand(tgt_ids.shape, generator=self.gen).to(self.device) < p
            swap[:, 0] = False  # the BOS stays
            inputs[swap] = self.unk
        emb = extras["embed_tokens"](inputs)  # (b, Tt, D)
        seq, mask, positions, tgt_pos = assemble(prefix, lengths, emb, tgt_len, keep, self.cfg.data.target_attention)
        from .losses.alignment import MaskAttention

        hidden = core.llm(seq.to(prefix.dtype), positions, MaskAttention(mask))  # (b, T, D)
        loss, n = next_token_loss(hidden, extras["lm_head"], tgt_ids, tgt_pos)
        return loss, n + int(lengths.sum())

    def _distill(self, core, extras, prefix, lengths, examples):
        texts = [e.target or e.source for e in examples]
        tgt = tokenize(self.tgt_tok, texts, self.cfg.model.target_max_length, special=True)
        tgt_ids, tgt_len = pad_batch(tgt, self.tgt_tok.pad_token_id or 0, 1, self.device)
        t_steps = torch.arange(tgt_ids.shape[1], device=self.device)
        with torch.no_grad():  # the teacher: the frozen target reading the text with its own tokens
            h = core.llm(extras["word_emb"](tgt_ids), t_steps.expand_as(tgt_ids),
                         PaddedAttention(t_steps[None, :] < tgt_len[:, None]))
            teacher = _mean(h, tgt_len)
        s_steps = torch.arange(prefix.shape[1], device=self.device)
        g = core.llm(prefix, s_steps.expand(prefix.shape[:2]), PaddedAttention(s_steps[None, :] < lengths[:, None]))
        return distillation_loss(_mean(g, lengths), teacher), int(lengths.sum() + tgt_len.sum())


class FinetuneStep:
    """Stage 2: a global batch's examples (this process's share) → GradCache chunks → NT-Xent over every
    process's embeddings."""

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, ul_tokenizer: Any, ul_backbone: str,
                 device: torch.device):
        self.cfg, self.model, self.device = cfg, model, device
        self.tok = ul_tokenizer
        self.query_template, self.doc_template = templates(ul_backbone)
        self.pad = ul_tokenizer.pad_token_id if ul_tokenizer.pad_token_id is not None else 1
        self.loss = NTXentLoss(cfg.temperature, cfg.miner_epsilon)

    def _format(self, template: str, instruction: str, texts: list[str]) -> list[str]:
        head, tail = template.split("{text}")
        return [head.format(instruction=instruction) + t + tail for t in texts]

    def chunk_inputs(self, examples: list[PairExample]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Token tensors per GradCache chunk; each chunk's rows are [queries | positives | negatives] of its
        examples (the contrastive_labels layout)."""
        out = []
        size = self.cfg.gc_chunk_size
        for start in range(0, len(examples), size):
            chunk = examples[start:start + size]
            texts = []
            for e in chunk:
                texts += self._format(self.query_template, e.instruction, [e.query])
            for e in chunk:
                texts += self._format(self.doc_template, e.instruction, e.positives)
            for e in chunk:
                texts += self._format(self.doc_template, e.instruction, e.negatives)
            out.append(pad_batch(tokenize(self.tok, texts, self.cfg.model.max_length), self.pad, 8, self.device))
        return out

    def encode(self, chunk: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, lengths = chunk
        return self.model(ids, lengths)  # (m, D): the full chain, through the DDP/FSDP wrapper

    @staticmethod
    def run(tm: torch.nn.Module, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return tm.core.forward_padded(ids, lengths)

    def labels(self, examples: list[PairExample], rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's labels and groups, unique across processes and chunks; groups restrict the datasets
        flagged no-cross-batch to each example's own texts."""
        c = self.cfg
        per_rank = len(examples)
        labels, groups = [], []
        for start in range(0, per_rank, c.gc_chunk_size):
            n = len(examples[start:start + c.gc_chunk_size])
            first = rank * per_rank + start  # the chunk's first example, globally
            lab, grp = contrastive_labels(n, c.data.positives, c.data.negatives, example_offset=first,
                                          label_offset=first * (1 + c.data.negatives))
            labels.append(lab)
            groups.append(grp)
        return torch.cat(labels).to(self.device), torch.cat(groups).to(self.device)

    def loss_fn(self, labels: torch.Tensor, groups: torch.Tensor, cross_batch: bool):
        world = dist.get_world_size() if dist.is_initialized() else 1

        def fn(reps: torch.Tensor) -> torch.Tensor:
            all_reps, all_labels, all_groups = gather(reps), gather(labels), gather(groups)
            loss = self.loss(all_reps, all_labels, None if cross_batch else all_groups)
            # gradients reach only this process's rows; DDP/FSDP then average over processes: × world
            return loss * world
        return fn


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` concatenated in rank order; the local part keeps its graph."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)
