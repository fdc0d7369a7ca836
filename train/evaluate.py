"""Evaluation during training: the model being trained, as an embedder, on a BEIR directory with the project's
``eval`` code; the best checkpoint by ``eval_metric`` is kept (exported) in ``<output>/best``.

Every process runs the evaluation (a sharded model needs all of them for a forward); the first one records it.
The split is ``eval_split`` (``dev`` by default: checkpoints are never chosen on a test split unless asked).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from lusifer_rag.embedder.base import Embedder, Role
from lusifer_rag.embedder.lusifer.config import DEFAULT_INSTRUCTION, templates
from lusifer_rag.errors import ConfigError

from .config import TrainConfig


class TrainingEmbedder(Embedder):
    """The training model's LUSIFER chain behind the ``Embedder`` interface (official templates, eval mode)."""

    kind = "lusifer-training"
    max_tokens = 512
    pad_to_multiple_of = 8
    add_special_tokens = False

    def __init__(self, model: torch.nn.Module, tokenizer: Any, backbone: str, device: torch.device, dim: int):
        self.model, self.tokenizer, self.device, self.dim = model, tokenizer, device, dim
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 1
        self.templates = templates(backbone)
        self.fingerprint = "training"
        self.spec = "training"
        self.devices = [device]

    def format_texts(self, texts: Sequence[str], role: Role, instruction: str | None) -> list[str]:
        template = self.templates[0] if role == "query" else self.templates[1]
        head, tail = template.split("{text}")
        head = head.format(instruction=DEFAULT_INSTRUCTION if instruction is None else instruction)
        return [head + t + tail for t in texts]

    @torch.no_grad()
    def embed_batch(self, batch, replica: Any = None) -> torch.Tensor:
        ids, _ = batch.padded(self.device)
        lengths = torch.from_numpy(batch.lengths).to(self.device)
        return self.model(ids, lengths).float()


def evaluate_and_keep_best(cfg: TrainConfig, built, model: torch.nn.Module, tokenizer: Any, step: int, env,
                           strategy: str) -> dict[str, float]:
    from lusifer_rag.rag.eval.beir import load_beir
    from lusifer_rag.rag.eval.runner import evaluate_raw

    from .export import save_aligned, save_finetuned
    from .steps import FinetuneStep
    from .trainer import full_core_state

    if cfg.stage != "finetune":
        raise ConfigError("evaluation during training needs stage 2 (stage 1's model is not an embedder yet)")
    dataset = load_beir(cfg.eval_dir, split=cfg.eval_split)
    inner = getattr(model, "module", model)
    runner, inner.runner = inner.runner, FinetuneStep.run
    was_training = model.training
    model.eval()
    try:
        emb = TrainingEmbedder(model, tokenizer, cfg.model.universal_learner_backbone, env.device, built.model.core.dim)
        result = evaluate_raw(emb, dataset)
    finally:
        inner.runner = runner
        model.train(was_training)
    score = result.overall.get(cfg.eval_metric)
    if score is None:
        raise ConfigError(f"eval_metric {cfg.eval_metric!r} is not computed; computed: {sorted(result.overall)}")
    out = Path(cfg.output_dir)
    best_file = out / "best" / "score.json"
    best = json.loads(best_file.read_text())["score"] if best_file.is_file() else None
    better = best is None or score > best
    state = full_core_state(model, strategy) if better else None  # collective under FSDP
    if env.main:
        with open(out / "eval.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, cfg.eval_metric: score, **{k: v for k, v in result.overall.items()
                                                                       if isinstance(v, float)}}) + "\n")
        if better:
            (save_aligned if cfg.stage == "align" else save_finetuned)(cfg, built, state, out / "best")
            best_file.write_text(json.dumps({"step": step, "metric": cfg.eval_metric, "score": score}))
    return result.overall
