"""Embedding throughput: our optimized path vs a naive, official-style baseline, in the same run.

    .venv/bin/python bench/embed.py [--quick] [--threads N] [--texts N] [--only e5|lusifer|mfu]

Models (CPU):
* ``e5-small``  — load_embedder("e5-small") vs the same HF BertModel driven naively;
* ``lusifer``   — a small random LUSIFER checkpoint in the official format (XLM-R 256-d/4 layers, Mistral
  512-d/4 layers/vocab 32768, peft LoRA r=16 with non-zero B), built by tests/lusifer_reference.py.

Naive = what the official code does: per-text tokenisation in a Python loop, ``tokenizer.pad`` to a multiple of
8, fixed batches of ``--batch`` texts in input order (no length sorting); for LUSIFER the official forward
(unmerged peft LoRA on the HF modules, ``output_hidden_states=True``, fp32 lm_head logits computed and thrown
away). Optimized = ``load_embedder(...).embed_documents(texts)`` (one tokenizer call, length-sorted token-budget
batches, merged LoRA, no lm_head). Both paths see the same texts; seconds is the best of ``--repeats`` runs
(paths interleaved, so a load spike from other processes hits both); the speed-up is naive seconds / seconds.
``max|diff|`` compares the L2-normalised vectors of both paths.

With CUDA it also measures a full-size LUSIFER-shaped model (XLM-R-large + Mistral-7B configs, random bf16
weights, packed attention): tokens/s and MFU = achieved FLOP/s / ``--peak-tflops`` (989: H100 SXM bf16 dense),
FLOPs from lusifer_spec.md §6 (dense 2·params per token + attention 4·T·d·layers + projection per sequence).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header, mixed_texts, set_threads, table, timed  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lusifer_rag.embedder import load_embedder  # noqa: E402
from lusifer_rag.embedder.batching import plan_batches  # noqa: E402


# ---- naive paths (official style) -------------------------------------------------------------------------
def naive_batches(tokenizer: Any, formatted: list[str], batch: int, max_length: int, add_special: bool):
    """Per-text tokenisation (Python loop), then fixed batches in input order padded to a multiple of 8."""
    ids = [tokenizer(t, add_special_tokens=add_special, truncation=True, max_length=max_length)["input_ids"]
           for t in formatted]
    for i in range(0, len(ids), batch):
        yield tokenizer.pad({"input_ids": ids[i : i + batch]}, padding=True, pad_to_multiple_of=8,
                            return_tensors="pt")


@torch.inference_mode()
def naive_e5(emb: Any, texts: list[str], batch: int) -> np.ndarray:
    model = emb.replicas[0]
    out = []
    for enc in naive_batches(emb.tokenizer, emb.format_texts(texts, "document", None), batch, emb.max_tokens, True):
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        m = enc["attention_mask"][..., None].float()  # (b, T, 1)
        out.append(F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1))
    return torch.cat(out).numpy()


@torch.inference_mode()
def naive_lusifer(ckpt: Any, texts: list[str], batch: int) -> np.ndarray:
    """The official forward, batched: HF XLM-R (peft) → FF connector → added tokens after the padding →
    HF *ForCausalLM (peft) with a 4-D bidirectional mask, output_hidden_states, fp32 logits → masked mean → MLP."""
    from lusifer_reference import official_format

    m = ckpt.module.eval()
    formatted = [official_format(t, "document", None) for t in texts]
    out = []
    for enc in naive_batches(ckpt.tokenizer, formatted, batch, 512, False):
        mask = enc["attention_mask"]  # (b, T)
        x = m.universal_learner(input_ids=enc["input_ids"], attention_mask=mask).last_hidden_state  # (b, T, d_ul)
        h = m.connection_module.ff(x)  # (b, T, D)
        b = h.shape[0]
        if ckpt.num_added_tokens:
            h = torch.cat([h, m.connection_module.added_tokens[None].expand(b, -1, -1)], dim=1)
            mask = torch.cat([mask, mask.new_ones(b, ckpt.num_added_tokens)], dim=1)
        t = h.shape[1]
        add_mask = torch.zeros(b, 1, t, t).masked_fill(mask[:, None, None, :] == 0, torch.finfo(torch.float32).min)
        res = m.encoder(inputs_embeds=h, attention_mask=add_mask, position_ids=torch.arange(t)[None].expand(b, t),
                        output_hidden_states=True, use_cache=False)
        res.logits.float()  # the official code materialises fp32 logits it never uses
        g = res.hidden_states[-1]  # (b, T, D)
        mf = mask[..., None].float()
        out.append(F.normalize(m.output_projection((g * mf).sum(1) / mf.sum(1)), dim=-1))
    return torch.cat(out).numpy()


def padded_tokens_naive(lengths: np.ndarray, batch: int) -> int:
    total = 0
    for i in range(0, len(lengths), batch):
        chunk = lengths[i : i + batch]
        total += len(chunk) * (-(-int(chunk.max()) // 8) * 8)
    return total


def padded_tokens_optimized(emb: Any, lengths: np.ndarray) -> int:
    if emb.packs_sequences:
        return int(lengths.sum())
    m = emb.pad_to_multiple_of
    return sum(len(ix) * (-(-int(lengths[ix].max()) // m) * m)
               for ix in plan_batches(lengths, emb.batch_token_budget(), emb.max_batch_size, m))


def compare(name: str, texts: list[str], lengths: np.ndarray, paths: dict[str, Callable[[], np.ndarray]],
            extra: dict[str, int], repeats: int) -> list[dict]:
    """Run each path ``repeats`` times, interleaved; best time per path; first path is the baseline."""
    best = {p: float("inf") for p in paths}
    vecs: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for p, fn in paths.items():
            with timed() as t:
                vecs[p] = fn()
            best[p] = min(best[p], t[0])
    base = next(iter(paths))
    tokens = int(lengths.sum())
    rows = []
    for p in paths:
        s = best[p]
        rows.append({"model": name, "path": p, "texts": len(texts), "tokens": tokens,
                     "computed tok": extra.get(p, tokens), "seconds": s, "texts/s": len(texts) / s,
                     "tokens/s": tokens / s, "speed-up": best[base] / s,
                     "max|diff|": float(np.abs(vecs[p] - vecs[base]).max())})
    return rows


# ---- the models -----------------------------------------------------------------------------------------
def bench_e5(n: int, batch: int, repeats: int, budget: int) -> list[dict]:
    emb = load_embedder("e5-small")
    small = load_embedder("e5-small", max_batch_tokens=budget) if budget else None
    texts = mixed_texts(n, lambda ts: list(map(len, emb.tokenize(ts, truncate=False))))
    lengths = np.array(list(map(len, emb.tokenize(emb.format_texts(texts, "document", None)))))
    emb.embed_documents(texts[:8]), naive_e5(emb, texts[:8], batch)  # warm-up
    paths = {"naive": lambda: naive_e5(emb, texts, batch), "optimized": lambda: emb.embed_documents(texts)}
    extra = {"naive": padded_tokens_naive(lengths, batch), "optimized": padded_tokens_optimized(emb, lengths)}
    if small is not None:
        paths[f"optimized (budget {budget})"] = lambda: small.embed_documents(texts)
        extra[f"optimized (budget {budget})"] = padded_tokens_optimized(small, lengths)
    return compare("e5-small", texts, lengths, paths, extra, repeats)


LUSIFER_SMALL = dict(ul_hidden=256, ul_layers=4, llm_hidden=512, llm_layers=4, llm_vocab=32768)


def build_small_lusifer(tmp: str, ul_hidden: int, ul_layers: int, llm_hidden: int, llm_layers: int,
                        llm_vocab: int) -> Any:
    """An official-format checkpoint with bigger configs than the test default (lm_head cost is real)."""
    import lusifer_reference as ref

    small_ul, small_llm = ref.xlmr_config, ref.llm_config

    def ul_cfg():
        cfg = small_ul(hidden=ul_hidden)
        cfg.num_hidden_layers, cfg.intermediate_size = ul_layers, 4 * ul_hidden
        return cfg

    def llm_cfg(llm: str):
        return small_llm(llm, hidden_size=llm_hidden, intermediate_size=int(3.5 * llm_hidden),
                         num_hidden_layers=llm_layers, num_attention_heads=llm_hidden // 64,
                         num_key_value_heads=max(1, llm_hidden // 256), head_dim=64, vocab_size=llm_vocab)

    ref.xlmr_config, ref.llm_config = ul_cfg, llm_cfg  # build_official_checkpoint looks them up at call time
    try:
        return ref.build_official_checkpoint(tmp, "mistral", num_added_tokens=0)
    finally:
        ref.xlmr_config, ref.llm_config = small_ul, small_llm


def bench_lusifer(n: int, batch: int, repeats: int, packed: bool, budget: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-lusifer-") as tmp:
        with timed() as t:
            ckpt = build_small_lusifer(tmp, **LUSIFER_SMALL)
        print(f"built small LUSIFER checkpoint in {t[0]:.1f}s: {LUSIFER_SMALL}")
        emb = load_embedder(f"lusifer:{ckpt.dir}")
        emb_packed = load_embedder(f"lusifer:{ckpt.dir}", attention="packed") if packed else None
        small = load_embedder(f"lusifer:{ckpt.dir}", max_batch_tokens=budget) if budget else None
        texts = mixed_texts(n, lambda ts: list(map(len, emb.tokenize(ts, truncate=False))))
        lengths = np.array(list(map(len, emb.tokenize(emb.format_texts(texts, "document", None)))))
        emb.embed_documents(texts[:8]), naive_lusifer(ckpt, texts[:8], batch)  # warm-up
        paths = {"naive": lambda: naive_lusifer(ckpt, texts, batch), "optimized": lambda: emb.embed_documents(texts)}
        extra = {"naive": padded_tokens_naive(lengths, batch), "optimized": padded_tokens_optimized(emb, lengths)}
        if small is not None:
            paths[f"optimized (budget {budget})"] = lambda: small.embed_documents(texts)
            extra[f"optimized (budget {budget})"] = padded_tokens_optimized(small, lengths)
        if emb_packed is not None:
            paths["optimized (packed)"] = lambda: emb_packed.embed_documents(texts)
            extra["optimized (packed)"] = int(lengths.sum())
        return compare("lusifer-small", texts, lengths, paths, extra, repeats)


# ---- full-size MFU (CUDA) -------------------------------------------------------------------------------
def full_size_configs(small: bool = False):
    from transformers import MistralConfig, XLMRobertaConfig

    if small:  # --mfu-smoke: the same code path with tiny shapes (CPU check of this script)
        ul = XLMRobertaConfig(vocab_size=250002, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=256, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                              layer_norm_eps=1e-5)
        llm = MistralConfig(vocab_size=32768, hidden_size=128, intermediate_size=448, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                            rms_norm_eps=1e-5, rope_theta=1e6, sliding_window=None, tie_word_embeddings=False)
        return ul, llm
    ul = XLMRobertaConfig(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                          intermediate_size=4096, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                          layer_norm_eps=1e-5)
    llm = MistralConfig(vocab_size=32768, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                        rms_norm_eps=1e-5, rope_theta=1e6, sliding_window=None, tie_word_embeddings=False)
    return ul, llm


def lusifer_flops(ul: Any, llm: Any, lengths: np.ndarray) -> float:
    """Forward FLOPs of a batch of sequences (lusifer_spec.md §6: merged LoRA, no lm_head, no padding)."""
    d, ff, L = ul.hidden_size, ul.intermediate_size, ul.num_hidden_layers
    D, F_, N = llm.hidden_size, llm.intermediate_size, llm.num_hidden_layers
    hd = getattr(llm, "head_dim", None) or D // llm.num_attention_heads
    q, kv = llm.num_attention_heads * hd, llm.num_key_value_heads * hd
    per_token = (2 * L * (4 * d * d + 2 * d * ff)  # XLM-R layers
                 + 2 * (d * d + d * D)  # connector FF
                 + 2 * N * (D * q + 2 * D * kv + q * D + 3 * D * F_))  # Mistral layers
    per_token_t = 4 * d * L + 4 * q * N  # attention scores + weighted values, × T
    per_seq = 2 * (D * D + D * D)  # output projection on the pooled vector
    lengths = lengths.astype(np.float64)
    return float((lengths * per_token + lengths**2 * per_token_t).sum() + per_seq * len(lengths))


def bench_mfu(n: int, peak_tflops: float, smoke: bool, max_batch_tokens: int) -> list[dict]:
    from lusifer_rag.embedder.lusifer.config import templates
    from lusifer_rag.embedder.lusifer.embedder import LusiferEmbedder
    from lusifer_rag.embedder.lusifer.model import LusiferModel
    from lusifer_reference import tokenizer as xlmr_tokenizer

    ul, llm = full_size_configs(small=smoke)
    per_tok = {T: lusifer_flops(ul, llm, np.array([T])) / T / 1e9 for T in (128, 512)}
    print(f"FLOP model: {per_tok[128]:.2f} GFLOP/token at T=128, {per_tok[512]:.2f} at T=512"
          + ("" if smoke else "  (spec §6: 14.65 and 14.89)"))
    dev = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    with timed() as t:
        model = LusiferModel.random(ul, llm, backbone="mistral", dtype=dtype, device=dev)
    print(f"random {'full-size' if not smoke else 'smoke'} LUSIFER on {dev} ({dtype}) in {t[0]:.0f}s")

    class RandomLusifer(LusiferEmbedder):  # the real embedder code path around a random model
        def __init__(self) -> None:
            self.tokenizer, self.pad_id, self.dim = xlmr_tokenizer(), model.pad_id, model.dim
            self.model, self.replicas, self.dtype = model, [(model, dev)], dtype
            self.attention, self.packs_sequences = "packed", True
            self.num_added_tokens, self.fingerprint, self.spec = 0, "random", "random-full-size"
            self.max_batch_tokens = max_batch_tokens
            self.templates = templates("xlm-r")

    emb = RandomLusifer()
    texts = mixed_texts(n, lambda ts: list(map(len, emb.tokenize(ts, truncate=False))), lo=32, hi=512)
    lengths = np.array(list(map(len, emb.tokenize(emb.format_texts(texts, "document", None)))))
    emb.embed_documents(texts[: max(8, n // 8)])  # warm-up (kernels, allocator)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    with timed() as t:
        emb.embed_documents(texts)
        sync()
    flops = lusifer_flops(ul, llm, lengths)
    tflops = flops / t[0] / 1e12
    return [{"model": "lusifer full-size" if not smoke else "lusifer smoke", "device": str(dev), "dtype": str(dtype),
             "texts": n, "tokens": int(lengths.sum()), "seconds": t[0], "texts/s": n / t[0],
             "tokens/s": lengths.sum() / t[0], "TFLOP/s": tflops, "MFU %": 100 * tflops / peak_tflops}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer texts, one repeat")
    ap.add_argument("--texts", type=int, help="texts per model (default 512, quick 128)")
    ap.add_argument("--batch", type=int, default=32, help="naive path's fixed batch size (official: 32)")
    ap.add_argument("--repeats", type=int, help="timed runs per path, best kept (default 2, quick 1)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: all cores)")
    ap.add_argument("--only", choices=["e5", "lusifer", "mfu"], help="run one part")
    ap.add_argument("--budget", type=int, default=0,
                    help="extra optimized row with this max_batch_tokens (default budget: 2048 on CPU, 16384 on CUDA); 0 skips it")
    ap.add_argument("--no-packed", action="store_true", help="skip the CPU packed-attention LUSIFER row")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="accelerator peak for MFU (H100 SXM bf16 dense)")
    ap.add_argument("--mfu-texts", type=int, default=4096, help="texts for the full-size CUDA run")
    ap.add_argument("--mfu-batch-tokens", type=int, default=65536, help="packed token budget per batch (CUDA)")
    ap.add_argument("--mfu-smoke", action="store_true", help="run the MFU code with tiny shapes on CPU")
    args = ap.parse_args()
    n = args.texts or (128 if args.quick else 512)
    repeats = args.repeats or (1 if args.quick else 2)
    threads = set_threads(args.threads)
    header("bench/embed.py", texts=n, naive_batch=args.batch, repeats=repeats, threads=threads)

    rows: list[dict] = []
    if args.only in (None, "e5"):
        rows += bench_e5(n, args.batch, repeats, args.budget)
        table(rows)
    if args.only in (None, "lusifer"):
        rows += bench_lusifer(n, args.batch, repeats, not args.no_packed, args.budget)
    table(rows, "CPU throughput (speed-up = naive seconds / seconds; tokens = real tokens, computed tok incl. padding)")
    lus = [r for r in rows if r["model"] == "lusifer-small"]
    if lus:
        ratio = next(r["speed-up"] for r in lus if r["path"] == "optimized")
        print(f"LUSIFER optimized vs naive: {ratio:.2f}x (issue target >= 3x: {'PASS' if ratio >= 3 else 'FAIL'})\n")

    if args.only in (None, "mfu"):
        if torch.cuda.is_available() or args.mfu_smoke:
            mfu = bench_mfu(min(args.mfu_texts, 64) if args.mfu_smoke else args.mfu_texts, args.peak_tflops,
                            args.mfu_smoke, args.mfu_batch_tokens)
            table(mfu, f"full-size LUSIFER (peak {args.peak_tflops:g} TFLOP/s)")
        else:
            print("no CUDA device: full-size MFU skipped (run on a GPU host; --mfu-smoke checks the code on CPU)")


if __name__ == "__main__":
    main()
