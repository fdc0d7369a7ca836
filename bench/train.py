"""Stage-2 training throughput at a given shape: tokens/s, texts/s, peak memory, and MFU on a GPU.

    .venv/bin/python bench/train.py [--shape tiny|small|full] [--steps 5] [--batch 8] [--chunk 4] [--length 128]
                                    [--peak-tflops 989]

The real training code (``lusifer_rag.train``: LoRA on the inference stages, GradCache, NT-Xent with the
miner) on a LUSIFER of random weights built in the run — no download. Shapes: ``tiny`` (XLM-R 32-d × 2 / Mistral
64-d × 2), ``small`` (XLM-R 256-d × 4 / Mistral 512-d × 4), ``full`` (XLM-R-large + Mistral-7B-v0.3 shapes; a
GPU with ~40 GB+ in bf16). Each example is a query + 1 positive + 1 negative of ``--length`` tokens. On CUDA: bf16
autocast, FSDP2 on one GPU (the same code as several), activation checkpointing.

MFU counts 6·N·tokens of work per step (N = parameters of the chain): pass 1 of GradCache (2N, no graph), the
re-forward (2N) and the backward through frozen weights (≈2N; LoRA's weight gradients are negligible), against
``--peak-tflops`` (H100/H200 dense bf16: 989).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, scratch_dir, set_threads, table  # noqa: E402

SHAPES = {
    "tiny": (dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
             dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128)),
    "small": (dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
              dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                   intermediate_size=1536)),
    "full": (dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
             dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                  intermediate_size=14336)),
}


def base_dirs(root: Path, shape: str) -> tuple[Path, Path]:
    """Config + tokenizer dirs (no weights: random_init) of the two base models."""
    from transformers import MistralConfig, XLMRobertaConfig

    from lusifer_rag.embedder.e5_offline import source_files

    ul_kw, llm_kw = SHAPES[shape]
    ul = XLMRobertaConfig(vocab_size=250002, max_position_embeddings=514, pad_token_id=1, **ul_kw)
    llm = MistralConfig(vocab_size=32768, max_position_embeddings=32768, rope_theta=1e6, tie_word_embeddings=True,
                        **llm_kw)
    dirs = []
    for name, cfg in (("learner", ul), ("target", llm)):
        d = root / name
        cfg.save_pretrained(d)
        (d / "tokenizer.json").write_bytes(source_files()[1].read_bytes())
        dirs.append(d)
    return dirs[0], dirs[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8, help="examples per step (each: query, positive, negative)")
    ap.add_argument("--chunk", type=int, default=4, help="GradCache chunk (examples)")
    ap.add_argument("--length", type=int, default=128, help="tokens per text")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--json", help="also write the row as JSON here")
    args = ap.parse_args()
    set_threads(args.threads)
    header(f"train: stage 2, shape {args.shape}")

    from lusifer_rag.train import distributed
    from lusifer_rag.train.config import TrainConfig
    from lusifer_rag.train.data import PairExample
    from lusifer_rag.train.gradcache import GradCache
    from lusifer_rag.train.model import build
    from lusifer_rag.train.steps import FinetuneStep

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda") if cuda else torch.device("cpu")
    root = scratch_dir("bench-train-")
    learner, target = base_dirs(root, args.shape)
    cfg = TrainConfig.from_dict({"stage": "finetune", "output_dir": str(root / "out"), "seed": 0,
                                 "global_batch_size": args.batch, "gc_chunk_size": args.chunk,
                                 "model": {"universal_learner": str(learner), "target": str(target),
                                           "random_init": True, "max_length": args.length},
                                 "data": {"positives": 1, "negatives": 1}})
    env = distributed.Env(0, 1, 0, dev)
    t0 = time.perf_counter()
    built = build(cfg, dev, torch.bfloat16 if cuda else torch.float32)
    build_s = time.perf_counter() - t0
    tm = built.model
    tm.runner = FinetuneStep.run
    strategy = "fsdp" if cuda else "none"
    for stage in (tm.core.ul, tm.core.llm):
        stage.checkpointing = cuda
    model = distributed.wrap(tm, strategy, env, [*tm.core.ul.layers, *tm.core.llm.layers] if cuda else [], cuda)
    sync = distributed.sync_factory(model, strategy)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)

    class Tok:  # fixed-length texts: a realistic shape without tokenizing
        pad_token_id = 1

        def __call__(self, texts, **kw):
            return {"input_ids": [[0] + [1000 + (i % 200) for i in range(args.length - 2)] + [2] for _ in texts]}

    ft = FinetuneStep(cfg, model, Tok(), "xlm-r", dev)
    examples = [PairExample("q", ["p"], ["n"], "I", "bench") for _ in range(args.batch)]
    n_params = sum(p.numel() for n, p in tm.core.named_parameters() if "word_emb" not in n)
    times = []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for step in range(args.steps + 1):  # the first is warm-up
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with autocast:
            labels, groups = ft.labels(examples, 0)
            loss = GradCache(ft.encode).step(ft.chunk_inputs(examples), ft.loss_fn(labels, groups, True), sync)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - t)
    step_s = sorted(times)[len(times) // 2]
    tokens = args.batch * 3 * args.length
    row = {"shape": args.shape, "device": torch.cuda.get_device_name() if cuda else "cpu", "strategy": strategy,
           "params": f"{n_params / 1e6:,.1f}M", "trainable": f"{sum(p.numel() for p in params) / 1e6:,.2f}M",
           "batch (texts)": args.batch * 3, "tokens/step": tokens, "step s (median)": step_s,
           "tokens/s": tokens / step_s, "texts/s": args.batch * 3 / step_s, "loss": float(loss), "build s": build_s}
    if cuda:
        row["peak GiB"] = torch.cuda.max_memory_allocated() / 2**30
        row["MFU"] = f"{100 * 6 * n_params * tokens / step_s / (args.peak_tflops * 1e12):.1f}%"
    else:
        row["peak RSS GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    table([row])
    if args.json:
        Path(args.json).write_text(json.dumps(row, default=str, indent=2))
    distributed.close()


if __name__ == "__main__":
    main()
