"""``LusiferEmbedder``: the official templates and tokenisation, one model replica per device."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from lusifer_rag.errors import CheckpointError, ConfigError, EmbedderError

from ..base import Embedder, Role
from ..batching import TokenBatch
from ..devices import resolve_devices, resolve_dtype
from ..fingerprint import fingerprint
from .attention import PACKED_KERNELS
from .checkpoint import Layout, read_header
from .config import (DEFAULT_INSTRUCTION, LLMShape, LusiferConfig, check_transformers, load_backbone_configs,
                     load_tokenizer, read_config, templates)
from .model import LusiferModel

WEIGHTS = "model.safetensors"
ATTENTION_MODES = ("auto", "padded", "packed")


def resolve_checkpoint(arg: str) -> Path:
    """A local dir, or a hub id whose config.json + model.safetensors are fetched (cache first)."""
    if not arg:
        raise CheckpointError("lusifer needs a checkpoint: 'lusifer:<dir or hub id>'")
    path = Path(arg).expanduser()
    if path.is_dir():
        return path
    if path.exists() or arg.startswith((".", "/", "~")) or arg.count("/") != 1:
        raise CheckpointError(f"LUSIFER checkpoint {arg!r} is not a directory (nor a hub id 'owner/name'); "
                              f"expected a directory with config.json and {WEIGHTS}")
    from huggingface_hub import snapshot_download

    wanted = ["config.json", WEIGHTS]
    try:
        return Path(snapshot_download(arg, allow_patterns=wanted, local_files_only=True))
    except Exception:  # not cached: go to the hub (unless HF_HUB_OFFLINE makes this fail too)
        pass
    try:
        return Path(snapshot_download(arg, allow_patterns=wanted))
    except Exception as e:
        raise CheckpointError(f"LUSIFER checkpoint {arg!r}: no such directory, and the hub download failed: {e}") from None


def check_checkpoint(model_dir: Path, cfg: LusiferConfig, ul: Any, llm: LLMShape) -> Layout:
    """Header-only strict check of ``model.safetensors`` against the config (milliseconds)."""
    path = model_dir / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"no {WEIGHTS} in {str(model_dir)!r}")
    layout = Layout(cfg, ul, llm)
    layout.check(read_header(path), path)
    return layout


def load_model(model_dir: Path, cfg: LusiferConfig, ul: Any, llm: LLMShape, dtype: torch.dtype,
               device: torch.device) -> LusiferModel:
    """Check ``model.safetensors`` strictly against the config, then build the merged model on ``device``."""
    path = model_dir / WEIGHTS
    layout = check_checkpoint(model_dir, cfg, ul, llm)
    with torch.device("meta"):  # no memory for random init: every tensor comes from the checkpoint
        model = LusiferModel(ul, llm, cfg.num_added_tokens, fusion=cfg.fusion_mode)
    model.load_state_dict(dict(layout.tensors(path, dtype, device)), strict=True, assign=True)
    return model.eval().requires_grad_(False)


class LusiferEmbedder(Embedder):
    kind = "lusifer"
    max_tokens = 512
    pad_id = 1
    pad_to_multiple_of = 8
    add_special_tokens = False  # the templates write <s>/</s> literally; tokens cut from the right

    def __init__(self, arg: str, device: str | None = None, dtype: str | torch.dtype | None = None,
                 attention: str = "auto", packed_kernel: str = "auto", max_batch_tokens: int | None = None,
                 max_batch_size: int | None = None, **options: Any):
        check_transformers()
        options.pop("cache_dir", None)  # shared option of other backends; LUSIFER converts nothing
        if options:
            raise ConfigError(f"unknown lusifer options {sorted(options)}; known: attention, packed_kernel, "
                              "max_batch_tokens, max_batch_size")
        if attention not in ATTENTION_MODES:
            raise ConfigError(f"attention {attention!r} unknown; allowed: {list(ATTENTION_MODES)}")
        if packed_kernel not in PACKED_KERNELS:
            raise ConfigError(f"packed_kernel {packed_kernel!r} unknown; allowed: {list(PACKED_KERNELS)}")
        model_dir = resolve_checkpoint(arg)
        self.config = cfg = read_config(model_dir)
        ul, llm = load_backbone_configs(cfg)
        check_checkpoint(model_dir, cfg, ul, llm)  # fail fast, before the tokenizer and the weights
        self.tokenizer = load_tokenizer(cfg)
        devices = resolve_devices(device)
        self.dtype = resolve_dtype(dtype, devices[0])
        if attention == "auto":
            attention = "packed" if devices[0].type == "cuda" else "padded"
        self.attention = attention
        self.packs_sequences = attention == "packed"
        self.replicas = []
        self.devices = devices
        for dev in devices:
            model = load_model(model_dir, cfg, ul, llm, self.dtype, dev)
            model.packed_kernel = packed_kernel
            self.replicas.append((model, dev))
        self.model = self.replicas[0][0]
        self.pad_id = ul.pad_id
        self.dim = self.model.dim
        self.num_added_tokens = cfg.num_added_tokens
        if max_batch_tokens is not None:
            self.max_batch_tokens = int(max_batch_tokens)
        if max_batch_size is not None:
            self.max_batch_size = int(max_batch_size)
        self.templates = templates(cfg.universal_learner_backbone_type)  # (query, document)
        self.fingerprint = fingerprint(
            "lusifer", [model_dir / WEIGHTS], query_template=self.templates[0], document_template=self.templates[1],
            default_instruction=DEFAULT_INSTRUCTION, pooling=cfg.pooling_method,
            num_added_tokens=cfg.num_added_tokens, lora_scale=cfg.lora_scale, max_tokens=self.max_tokens,
        )

    def format_texts(self, texts: Sequence[str], role: Role, instruction: str | None) -> list[str]:
        """Official templates: ``<s>{I}.\\n{text}</s>`` (query), ``<s>{I}. Candidate:\\n{text}</s>`` (document);
        for "mt5" the same without ``<s>`` (the official T5 special tokens have only an eos)."""
        if role not in ("query", "document"):
            raise EmbedderError(f"role must be 'query' or 'document', got {role!r}")
        if instruction is None:
            instruction = DEFAULT_INSTRUCTION
        template = self.templates[0] if role == "query" else self.templates[1]
        head, tail = template.split("{text}")
        head = head.format(instruction=instruction)
        return [head + t + tail for t in texts]

    def embed_batch(self, batch: TokenBatch, replica: Any = None) -> torch.Tensor:
        model, dev = replica if replica is not None else self.replicas[0]
        if self.packs_sequences:
            ids, cu, max_len = batch.packed(dev)
            return model.forward_packed(ids, cu, max_len)
        ids, mask = batch.padded(dev)
        return model.forward_padded(ids, torch.from_numpy(batch.lengths).to(dev))
