"""Writing what training produced.

- Stage 2 (finetune): the official LUSIFER checkpoint format — ``config.json`` (the official constructor kwargs,
  LoRA names and ``loar_r`` included) + ``model.safetensors`` (peft key names: ``…base_layer.weight`` and
  ``…lora_A/B.<adapter>.weight``, unmerged, as the official trainer saves them) — self-contained: the base-model
  names point at ``learner/`` and ``target/`` inside the directory (their config and tokenizer), so
  ``lusifer:DIR`` loads it anywhere and the official code loads it from inside DIR.
- Stage 1 (align): ``learner/`` — the universal learner with its LoRA merged, as an HF model directory — and
  ``connector.safetensors``, which seed stage 2 (``model.init_from``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from lusifer_rag.embedder.lusifer.checkpoint import Layout

from .config import TrainConfig
from .model import CONNECTOR_FILE, LEARNER_DIR, TARGET_DIR, Built, hf_state_dict, layout_config

CONFIG_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "sentencepiece.bpe.model", "spiece.model", "vocab.txt", "tokenizer.model")


def copy_model_files(name: str, dest: Path, config: Any) -> None:
    """The config and tokenizer files of an HF model (dir or hub id) into ``dest`` (no weights)."""
    dest.mkdir(parents=True, exist_ok=True)
    src = Path(name)
    if src.is_dir():
        for f in CONFIG_FILES:
            if (src / f).is_file():
                shutil.copy2(src / f, dest / f)
    else:
        from huggingface_hub import snapshot_download

        got = Path(snapshot_download(name, allow_patterns=list(CONFIG_FILES)))
        for f in CONFIG_FILES:
            if (got / f).is_file():
                shutil.copy2(got / f, dest / f)
    if not (dest / "config.json").is_file():
        config.save_pretrained(dest)


def official_state(state: dict[str, torch.Tensor], layout: Layout, lora_scale: float,
                   extra: dict[str, torch.Tensor] | None = None, merge: bool = False) -> dict[str, torch.Tensor]:
    """Our parameters (``state``: "ul.layers.0.qkv.weight", or "….qkv.base.weight" + "….qkv.lora_A.0" when the
    Linear carries LoRA) under the official keys of ``layout``: fused Linears split back into their official
    parts; LoRA under its peft names, or merged into the weight (W + scale·B·A in fp32) with ``merge``."""
    out: dict[str, torch.Tensor] = {}
    for ours, key in layout.plain.items():
        out[key] = state[ours]
    for ours, parts in layout.linears.items():
        wrapped = ours + ".base.weight" in state
        weight = state[ours + (".base.weight" if wrapped else ".weight")]
        bias = state.get(ours + (".base.bias" if wrapped else ".bias"))
        a = [state[f"{ours}.lora_A.{i}"] for i in range(len(parts))] if wrapped else []
        b = [state[f"{ours}.lora_B.{i}"] for i in range(len(parts))] if wrapped else []
        if wrapped and merge:
            delta = torch.cat([bi.float() @ ai.float() for ai, bi in zip(a, b)])  # (out, in)
            weight, wrapped = (weight.float() + lora_scale * delta).to(weight.dtype), False
        start = 0
        for i, p in enumerate(parts):
            rows = slice(start, start + p.out_f)
            start += p.out_f
            as_lora = wrapped and p.lora
            out[p.weight if as_lora else p.path + ".weight"] = weight[rows]
            if as_lora:
                out[f"{p.path}.lora_A.{p.lora}.weight"] = a[i]
                out[f"{p.path}.lora_B.{p.lora}.weight"] = b[i]
            if p.bias:
                out[p.bias_key if as_lora else p.path + ".bias"] = bias[rows]
    out.update(extra or {})
    return {k: v.detach().contiguous().cpu() for k, v in out.items()}


def save_finetuned(cfg: TrainConfig, built: Built, state: dict[str, torch.Tensor], out: Path) -> Path:
    """The official-format checkpoint of a stage-2 model."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    src = built.sources
    copy_model_files(src.learner, out / LEARNER_DIR, src.learner_config)
    copy_model_files(src.target, out / TARGET_DIR, src.target_config)
    lcfg = layout_config(cfg, src, lora=True)
    layout = Layout(lcfg, built.ul_shape, built.target_shape)
    scale = cfg.model.lora_alpha / cfg.model.lora_r
    extra = {}
    missing = sorted(set(layout.required) - set(official_state(state, layout, scale)))
    if missing:  # the decoder target's token embeddings / LM head: unused by the chain, kept for the format
        base = hf_state_dict(src.target) if not cfg.model.random_init else {}
        for key in missing:
            short = key.split("encoder.base_model.model.", 1)[-1]
            tensor = base.get(short)
            if tensor is None:
                from lusifer_rag.errors import CheckpointError

                raise CheckpointError(f"cannot export {key}: not in {src.target}")
            extra[key] = tensor
    save_file(official_state(state, layout, scale, extra), str(out / "model.safetensors"))
    m = cfg.model
    config = {
        "universal_learner_name_or_path": f"./{LEARNER_DIR}", "universal_learner_backbone_type": m.universal_learner_backbone,
        "encoder_name_or_path": f"./{TARGET_DIR}", "encoder_backbone_type": m.target_backbone,
        "is_freeze_universal_learner": False, "is_freeze_encoder": True, "connection_type": m.connection_type,
        "num_added_tokens": m.num_added_tokens, "pooling_method": "mean",
        "encoder_lora_name": lcfg.encoder_lora_name, "universal_learner_lora_name": lcfg.universal_learner_lora_name,
        "encoder_lora_target_modules": m.target_lora_targets or "all",
        "universal_learner_lora_target_modules": m.learner_lora_targets or "all",
        "loar_r": m.lora_r, "lora_alpha": m.lora_alpha, "dropout": m.lora_dropout,
        "attn_implementation": "flash_attention_2", "model_dtype": "bfloat16",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def save_aligned(cfg: TrainConfig, built: Built, state: dict[str, torch.Tensor], out: Path) -> Path:
    """Stage 1's products: the learner with its LoRA merged (an HF model dir) and the connector."""
    from safetensors.torch import save_file

    src = built.sources
    learner = out / LEARNER_DIR
    copy_model_files(src.learner, learner, src.learner_config)
    layout = Layout(layout_config(cfg, src, lora=False), built.ul_shape, built.target_shape)
    merged = official_state(state, layout, cfg.model.lora_alpha / cfg.model.lora_r, merge=True)
    prefix = "universal_learner."
    hf = {k.removeprefix(prefix): v for k, v in merged.items() if k.startswith(prefix)}
    if not cfg.model.random_init:  # keep the pooler we do not model, so the HF dir loads without gaps
        for k, v in hf_state_dict(src.learner).items():
            if k.rsplit("pooler.", 1)[-1] != k:
                hf.setdefault("pooler." + k.rsplit("pooler.", 1)[-1], v)
    save_file(hf, str(learner / "model.safetensors"))
    connector = {k: v.detach().contiguous().cpu() for k, v in state.items() if k.startswith("connector.")}
    save_file(connector, str(out / CONNECTOR_FILE))
    return out
