"""The training loop of both stages: ``train(config)`` — under torchrun for several processes.

Per optimizer step: the global batch of examples (this process's share), then stage 1: micro-batches with
gradient accumulation (their mean loss), stage 2: GradCache over the share with every process's embeddings in
the loss; gradient clipping (optional), AdamW, the warm-up + cosine schedule. Every ``save_every`` steps a
resumable checkpoint; rerunning the same command resumes from the newest one, exactly (CPU) where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lusifer_rag.errors import ConfigError

from . import checkpoints, distributed
from .config import TrainConfig
from .data import iterate, make_data

METRICS = "metrics.jsonl"


def lr_lambda(cfg: TrainConfig, steps_per_epoch: int, total: int):
    """Multiplier of the peak lr at a step: linear warm-up, then cosine down to min_lr — over the whole run, or
    restarting every epoch (the official stage-1 schedule). A pure function of the step (exact on resume)."""
    o = cfg.optim
    warm = o.warmup_steps if o.warmup_steps is not None else min(max(1, steps_per_epoch // 10), 500)
    floor = o.min_lr / o.lr

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if o.restart_every_epoch:
            span = max(1, steps_per_epoch)
            t = (step % span) / span
        else:
            t = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return f


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Metrics:
    """metrics.jsonl (one record per logged step), TensorBoard when installed, and the progress bar / lines."""

    def __init__(self, out: Path, resume_step: int, total: int, main: bool):
        self.main, self.total, self.t0 = main, total, time.time()
        self.path = out / METRICS
        self.bar = self.tb = None
        if not main:
            return
        if self.path.is_file():  # a resumed run: records after the checkpoint are redone
            keep = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(line + "\n" for line in keep))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1)
        except Exception:  # tensorboard not installed: the JSONL is enough
            self.tb = None
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=resume_step, unit="step", dynamic_ncols=True)
        self.done = resume_step

    def log(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])
        text = f"loss {record['loss']:.4f} | lr {record['lr']:.2e} | {record['tokens_per_s']:,.0f} tok/s"
        if self.bar is not None:
            self.bar.update(record["step"] - self.done)
            self.bar.set_postfix_str(text)
        else:
            left = (self.total - record["step"]) * (time.time() - self.t0) / max(1, record["step"] - self.done0)
            print(f"step {record['step']}/{self.total} | {text} | ETA {left / 60:.1f} min", file=sys.stderr, flush=True)
        self.done = record["step"]

    def start(self, step: int) -> None:
        self.done0 = step
        self.t0 = time.time()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the output directory (rank 0 wrote the final model into it)."""
    from .export import save_aligned, save_finetuned
    from .gradcache import GradCache
    from .model import build, describe
    from .steps import AlignStep, FinetuneStep
    from .tokenizers import learner_tokenizer, target_tokenizer

    env = distributed.init()
    out = Path(cfg.output_dir)
    try:
        if env.main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        seed_everything(cfg.seed + env.rank)
        cuda = env.device.type == "cuda"
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
        torch.manual_seed(cfg.seed)  # the same initial weights in every process
        built = build(cfg, env.device, torch.bfloat16 if bf16 else torch.float32)
        seed_everything(cfg.seed + env.rank)
        tm = built.model
        core = tm.core
        checkpointing = cfg.activation_checkpointing if cfg.activation_checkpointing is not None else cuda
        for stage in (core.ul, core.llm):
            stage.checkpointing = checkpointing
        if cfg.global_batch_size % env.world:
            raise ConfigError(f"global_batch_size={cfg.global_batch_size} must be a multiple of the number of "
                              f"processes ({env.world})")
        share = cfg.global_batch_size // env.world
        ul_tok = learner_tokenizer(cfg, built.sources)
        if cfg.stage == "align":
            if share % cfg.micro_batch_size and share > cfg.micro_batch_size:
                raise ConfigError(f"each process's share of the global batch ({share}) must be a multiple of "
                                  f"micro_batch_size ({cfg.micro_batch_size})")
            step_fn = AlignStep(cfg, ul_tok, target_tokenizer(cfg, built.sources), cfg.model.universal_learner_backbone,
                                built.target_shape, env.device)
            tm.runner = step_fn
            extra_rng = {"mask": step_fn.gen}
        else:
            tm.runner = FinetuneStep.run
            extra_rng = {}
        strategy = distributed.strategy_for(cfg.strategy, env)
        layers = [*core.ul.layers, *core.llm.layers] if strategy == "fsdp" else []
        model = distributed.wrap(tm, strategy, env, layers, bf16)
        sync = distributed.sync_factory(model, strategy)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                      weight_decay=cfg.optim.weight_decay)
        data = make_data(cfg.stage, cfg.data, cfg.global_batch_size, cfg.seed)
        per_epoch = data.steps_per_epoch()
        total = cfg.optim.max_steps or per_epoch * cfg.optim.epochs
        epochs = max(cfg.optim.epochs, math.ceil(total / max(1, per_epoch)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, per_epoch, total))
        step, epoch0, batch0 = 0, 0, 0
        last = checkpoints.latest(out)
        if last is not None:
            pos = checkpoints.restore(last, model, optimizer, scheduler, env, strategy, extra_rng)
            step, epoch0, batch0 = pos["step"], pos["epoch"], pos["next_batch"]
        if env.main:
            info = {**describe(built), "strategy": strategy, "processes": env.world, "steps": total,
                    "steps_per_epoch": per_epoch, "resumed_from": step}
            (out / "run.json").write_text(json.dumps(info, indent=2))
        metrics = Metrics(out, step, total, env.main)
        metrics.start(step)
        ft = FinetuneStep(cfg, model, ul_tok, cfg.model.universal_learner_backbone, env.device) \
            if cfg.stage == "finetune" else None
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and cuda else _null()
        model.train()
        tokens, t_last = 0, time.time()
        for epoch, b, ids in iterate(data, epoch0, batch0, epochs):
            if step >= total:
                break
            mine = ids[env.rank * share:(env.rank + 1) * share]
            examples = [data.example(i, epoch) for i in mine]
            with autocast:
                if cfg.stage == "align":
                    loss, n = _align_step(model, examples, cfg.micro_batch_size, sync)
                else:
                    loss, n = _finetune_step(ft, examples, env, sync, GradCache, data.cfg.no_cross_batch)
            if cfg.optim.grad_clip:
                _clip(model, params, cfg.optim.grad_clip, strategy)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += n
            if step % cfg.log_every == 0 or step == total:
                dt = max(time.time() - t_last, 1e-9)
                rate = distributed.all_sum(tokens, env) / dt
                metrics.log({"step": step, "epoch": epoch, "loss": distributed.all_mean(loss, env),
                             "lr": scheduler.get_last_lr()[0], "tokens_per_s": rate,
                             "elapsed_s": round(time.time() - metrics.t0, 3)})
                tokens, t_last = 0, time.time()
            if step % cfg.save_every == 0 and step < total:
                checkpoints.save(out, step, model, optimizer, scheduler, {"epoch": epoch, "next_batch": b + 1},
                                 env, strategy, extra_rng, cfg.keep_checkpoints)
            if cfg.eval_every and cfg.eval_dir and step % cfg.eval_every == 0:
                from .evaluate import evaluate_and_keep_best

                evaluate_and_keep_best(cfg, built, model, ul_tok, step, env, strategy)
        metrics.close()
        state = full_core_state(model, strategy)  # collective under FSDP: every process takes part
        if env.main:
            (save_aligned if cfg.stage == "align" else save_finetuned)(cfg, built, state, out)
        distributed.barrier()
        return out
    finally:
        distributed.close()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _align_step(model, examples, micro: int, sync) -> tuple[float, int]:
    """Gradient accumulation over micro-batches: the step's loss is their mean."""
    chunks = [examples[i:i + micro] for i in range(0, len(examples), micro)]
    total, tokens = 0.0, 0
    for k, chunk in enumerate(chunks):
        with sync(k == len(chunks) - 1):
            loss, n = model(chunk)
            (loss / len(chunks)).backward()
        total += float(loss.detach()) / len(chunks)
        tokens += n
    return total, tokens


def _finetune_step(ft, examples, env, sync, GradCache, no_cross_batch) -> tuple[float, int]:
    chunks = ft.chunk_inputs(examples)
    labels, groups = ft.labels(examples, env.rank)
    cross = examples[0].dataset not in set(no_cross_batch)  # one dataset per global batch
    loss = GradCache(ft.encode).step(chunks, ft.loss_fn(labels, groups, cross), sync)
    world = env.world
    return float(loss) / world, int(sum(int(length.sum()) for _, length in chunks))


def _clip(model, params, max_norm: float, strategy: str) -> None:
    """Clip the global gradient norm (FSDP2's DTensor gradients are handled by clip_grad_norm_ itself)."""
    torch.nn.utils.clip_grad_norm_(params, max_norm)


def full_core_state(model, strategy: str) -> dict[str, torch.Tensor]:
    """Every parameter of the core, full (FSDP shards gathered), under our names ("ul.layers.0.qkv.lora_A.0")."""
    if strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        state = {n: p.detach() for n, p in distributed.unwrap(model).named_parameters()}
    return {k.removeprefix("core."): v for k, v in state.items() if k.startswith("core.")}


__all__ = ["train", "lr_lambda"]
