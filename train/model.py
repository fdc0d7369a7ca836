"""The model being trained: ``LusiferModel`` (the inference stages, one definition) with LoRA adapters attached,
plus what stage 1 needs around it — the target's token embeddings and LM head (a decoder target) or its word
embeddings (a BERT target, read by the teacher side of the distillation).

Base weights come from HF model directories (or hub ids, cache first): the universal learner's (XLM-R, e5 BERT,
mT5) and the target's (Mistral / Llama / Qwen2 ``*ForCausalLM``, or ``BertModel``), mapped onto our parameter
names with the same key layout the checkpoint loader uses. ``random_init`` builds them at random instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lusifer_rag.embedder.lusifer.checkpoint import Layout
from lusifer_rag.embedder.lusifer.config import (LLMShape, LusiferConfig, _load_hf, target_shape_from_hf,
                                                  ul_shape_from_hf)
from lusifer_rag.embedder.lusifer.model import LusiferModel
from lusifer_rag.embedder.lusifer.stages import XLMRLayer
from lusifer_rag.errors import CheckpointError, ConfigError

from .config import TrainConfig
from .lora import LoRALinear, attach_lora

UL_LORA, LLM_LORA = "universal_learner_lora", "encoder_lora"
LEARNER_DIR, TARGET_DIR, CONNECTOR_FILE = "learner", "target", "connector.safetensors"


@dataclass
class Sources:
    """Where the two base models come from (dirs or hub ids) and their HF configs."""

    learner: str
    target: str
    learner_config: Any
    target_config: Any


def resolve_sources(cfg: TrainConfig) -> Sources:
    from transformers import AutoConfig

    m = cfg.model
    learner = m.universal_learner
    if cfg.stage == "finetune" and m.init_from:
        learner = str(Path(m.init_from) / LEARNER_DIR)
        if not Path(learner).is_dir():
            raise ConfigError(f"model.init_from={m.init_from!r} is not a stage-1 output (no {LEARNER_DIR}/ in it)")
    return Sources(learner, m.target, _load_hf(AutoConfig, learner, "universal learner config"),
                   _load_hf(AutoConfig, m.target, "target model config"))


def layout_config(cfg: TrainConfig, src: Sources, lora: bool) -> LusiferConfig:
    """The official config.json of the model (LoRA names set when the adapters are part of it)."""
    m = cfg.model
    return LusiferConfig(
        universal_learner_name_or_path=src.learner, encoder_name_or_path=src.target,
        universal_learner_backbone_type=m.universal_learner_backbone, encoder_backbone_type=m.target_backbone,
        connection_type=m.connection_type, num_added_tokens=m.num_added_tokens,
        encoder_lora_name=LLM_LORA if lora and cfg.stage == "finetune" else None,
        universal_learner_lora_name=UL_LORA if lora else None, lora_r=m.lora_r, lora_alpha=m.lora_alpha)


class TrainingModel(nn.Module):
    """``core`` (LusiferModel with LoRA) and, for stage 1, ``embed_tokens`` / ``lm_head`` (decoder target) or
    ``word_emb`` (BERT target), frozen."""

    def __init__(self, core: LusiferModel, extras: dict[str, nn.Module]):
        super().__init__()
        self.core = core
        self.extras = nn.ModuleDict(extras)
        self.runner = None  # the stage's step (steps.py): what forward runs, so DDP/FSDP see every call

    def forward(self, *args: Any) -> Any:
        return self.runner(self, *args)


@dataclass
class Built:
    model: TrainingModel
    sources: Sources
    ul_shape: Any
    target_shape: Any
    adapters: dict[str, LoRALinear]  # our Linear name -> wrapper


def build(cfg: TrainConfig, device: torch.device, base_dtype: torch.dtype) -> Built:
    """The model for ``cfg.stage``: weights read (or drawn), LoRA attached, trainable parts marked."""
    m = cfg.model
    src = resolve_sources(cfg)
    ul = ul_shape_from_hf(src.learner_config, m.universal_learner_backbone)
    tgt = target_shape_from_hf(src.target_config, m.target_backbone)
    fusion = m.connection_type.removeprefix("fusion-") if m.connection_type.startswith("fusion-") else None
    torch.manual_seed(cfg.seed)  # the default inits (connector, projection, fusion, LoRA A)
    # random weights are drawn where they will live (a 7B target is not built on the CPU first)
    home = device if m.random_init else torch.device("cpu")
    gen = torch.Generator(home).manual_seed(cfg.seed)
    with home:
        core = LusiferModel(ul, tgt, m.num_added_tokens, fusion=fusion)
        decoder = isinstance(tgt, LLMShape)
        extras: dict[str, nn.Module] = {}
        if cfg.stage == "align":
            vocab = tgt.vocab_size
            if decoder:
                extras = {"embed_tokens": nn.Embedding(vocab, tgt.hidden_size),
                          "lm_head": nn.Linear(tgt.hidden_size, vocab, bias=False)}
            else:
                extras = {"word_emb": nn.Embedding(vocab, tgt.hidden_size)}
    model = TrainingModel(core, extras)
    if m.random_init:
        _init_random(model, gen)
    else:  # base weights read; the connector and the projection keep PyTorch's default init (as the official)
        plain = Layout(layout_config(cfg, src, lora=False), ul, tgt)
        _load_base(core, extras, plain, src, m.target_backbone, cfg.stage)
    if cfg.stage == "finetune" and m.init_from:
        _load_connector(core, Path(m.init_from) / CONNECTOR_FILE)
    _set_dropout(core, src, m.hidden_dropout)

    model.requires_grad_(False)  # then the trainable parts, per stage
    with_lora = Layout(layout_config(cfg, src, lora=True), ul, tgt)
    adapters = attach_lora(core, with_lora.linears, m.lora_r, m.lora_alpha, m.lora_dropout, ["ul."],
                           m.learner_lora_targets)
    if cfg.stage == "finetune":
        adapters.update(attach_lora(core, with_lora.linears, m.lora_r, m.lora_alpha, m.lora_dropout, ["llm."],
                                    m.target_lora_targets))
        core.proj.requires_grad_(True)
    core.connector.requires_grad_(True)
    for w in adapters.values():  # A and B trainable, base frozen
        for p in (*w.lora_A, *w.lora_B):
            p.requires_grad_(True)
    # frozen base weights in the compute dtype (bf16 on CUDA); what trains stays fp32 (mixed precision)
    for p in model.parameters():
        p.data = p.data.to(device=device, dtype=torch.float32 if p.requires_grad else base_dtype)
    return Built(model, src, ul, tgt, adapters)


def _init_random(model: nn.Module, gen: torch.Generator, std: float = 0.02) -> None:
    """Random weights like an HF init (normal std 0.02, norms 1, biases 0); the fusion keeps its own init."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".fusion." in name:
                continue
            if name.endswith(("norm.weight", "ln.weight")):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen, device=p.device) * std)


def _set_dropout(core: LusiferModel, src: Sources, override: float | None) -> None:
    """The learner's (and a BERT target's) hidden dropout: ``override``, else their HF configs' (as HF trains)."""
    for stage, config in ((core.ul, src.learner_config), (core.llm, src.target_config)):
        p = override if override is not None else float(getattr(config, "hidden_dropout_prob", 0.0) or 0.0)
        for layer in stage.modules():
            if isinstance(layer, XLMRLayer):
                layer.dropout = p


# ---- reading base weights --------------------------------------------------------------------------------
def hf_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Every tensor of an HF model dir or hub id (safetensors, sharded or not; else pytorch_model.bin)."""
    path = Path(name)
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(name, allow_patterns=["*.safetensors", "*.json", "*.bin"]))
    files = sorted(path.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        out: dict[str, torch.Tensor] = {}
        for f in files:
            out.update(load_file(str(f)))
        return out
    binary = path / "pytorch_model.bin"
    if binary.is_file():
        return torch.load(binary, map_location="cpu", weights_only=True)
    raise CheckpointError(f"{path}: no *.safetensors or pytorch_model.bin weights")


_HF_PREFIXES = ("", "roberta.", "bert.", "encoder.", "model.")


def _lookup(state: dict[str, torch.Tensor], key: str) -> torch.Tensor | None:
    for prefix in _HF_PREFIXES:
        if prefix + key in state:
            return state[prefix + key]
    return None


def _load_base(core: LusiferModel, extras: dict[str, nn.Module], layout: Layout, src: Sources, backbone: str,
               stage: str) -> None:
    """Base weights from the two HF dirs through the official key layout (without LoRA names: HF keys are the
    layout's keys minus their 'universal_learner.' / 'encoder.' prefix)."""
    states = {"universal_learner.": hf_state_dict(src.learner), "encoder.": hf_state_dict(src.target)}
    ours: dict[str, torch.Tensor] = {}
    missing = []

    def get(official: str) -> torch.Tensor | None:
        for prefix, state in states.items():
            if official.startswith(prefix):
                t = _lookup(state, official.removeprefix(prefix))
                if t is None:
                    missing.append(official)
                return t
        return None

    for name, key in layout.plain.items():
        if name.startswith(("ul.", "llm.")):
            t = get(key)
            if t is not None:
                ours[name] = t
    for name, parts in layout.linears.items():
        if not name.startswith(("ul.", "llm.")):
            continue
        ws = [get(p.weight) for p in parts]
        bs = [get(p.bias_key) for p in parts if p.bias]
        if all(w is not None for w in ws):
            ours[name + ".weight"] = torch.cat(ws)
        if bs and all(b is not None for b in bs):
            ours[name + ".bias"] = torch.cat(bs)
    for name, keys in layout.alternatives.items():
        t = next((x for x in (get(k) for k in keys) if x is not None), None)
        if t is not None:
            ours[name] = t
            missing[:] = [m for m in missing if m not in keys]
    if missing:
        raise CheckpointError(f"{len(missing)} base weights not found in {src.learner} / {src.target}, e.g. "
                              f"{missing[:3]}")
    unloaded = set(dict(core.named_parameters())) - set(ours)
    unloaded = {n for n in unloaded if n.startswith(("ul.", "llm."))}
    if unloaded:
        raise CheckpointError(f"base weights missing for {sorted(unloaded)[:5]}")
    with torch.no_grad():
        params = dict(core.named_parameters())
        for name, t in ours.items():
            params[name].copy_(t.to(params[name].dtype))
        target = states["encoder."]
        if "embed_tokens" in extras:
            emb = _lookup(target, "embed_tokens.weight")
            head = target.get("lm_head.weight", emb)
            if emb is None or head is None:
                raise CheckpointError(f"{src.target}: stage 1 needs the target's embed_tokens and lm_head weights")
            extras["embed_tokens"].weight.copy_(emb)
            extras["lm_head"].weight.copy_(head)
        if "word_emb" in extras:
            emb = _lookup(target, "embeddings.word_embeddings.weight")
            if emb is None:
                raise CheckpointError(f"{src.target}: stage 1 needs the BERT target's word embeddings")
            extras["word_emb"].weight.copy_(emb)


def _load_connector(core: LusiferModel, path: Path) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise ConfigError(f"{path}: the stage-1 connector is missing")
    state = load_file(str(path))
    own = {k.removeprefix("connector."): v for k, v in state.items() if k.startswith("connector.")}
    expected = set(core.connector.state_dict())
    if set(own) != expected:
        raise CheckpointError(f"{path}: connector keys {sorted(own)} do not match this model's {sorted(expected)} "
                              "(was stage 1 run with the same connection_type and sizes?)")
    core.connector.load_state_dict(own)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def describe(built: Built) -> dict[str, Any]:
    total = sum(p.numel() for p in built.model.parameters())
    train = sum(p.numel() for p in built.model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable": train, "learner": built.sources.learner, "target": built.sources.target,
            "lora_layers": len(built.adapters)}


def save_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
