"""``hf:<dir or hub id>``: any Hugging Face encoder, pooled (mean/CLS/last) with query/passage prefixes.

Settings come, in order, from the options, a sentence-transformers layout in the model dir
(``modules.json`` → ``1_Pooling/config.json``, ``sentence_bert_config.json``) and defaults (mean pooling;
E5 prefixes "query: "/"passage: " when the model's name contains "e5").
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import struct
from pathlib import Path
from typing import Any, Callable

import torch

from lusifer_rag.errors import EmbedderError

from .base import Embedder, Role
from .batching import TokenBatch
from .devices import resolve_devices, resolve_dtype
from .fingerprint import fingerprint
from .registry import register

#: default cap on input tokens when neither the options nor sentence-transformers set one
DEFAULT_MAX_TOKENS = 512
#: models whose position ids start after the padding index (positions 0..pad are never used)
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "data2vec-text",
                     "longformer", "ibert", "xmod", "roberta-prelayernorm"}
#: "e5" as a name part ("multilingual-e5-small", "e5-base-v2"), not inside a hex digest
_E5_NAME = re.compile(r"(^|[^a-z0-9])e5([^a-z0-9]|$)")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_HUB_PATTERNS = ["*.json", "*.txt", "*.model", "sentencepiece*", "1_Pooling/*", *_WEIGHT_PATTERNS]


# ---- pooling: (hidden (b, T, H), mask (b, T)) -> (b, H) -------------------------------------------
def _mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(torch.float32)  # (b, T, 1)
    return (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1.0)


def _cls(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]


def _last(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # right padding: the last real token sits at length - 1
    last = (mask.sum(1) - 1).clamp(min=0)  # (b,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


POOLERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"mean": _mean, "cls": _cls, "last": _last}
# sentence-transformers Pooling config flag -> our pooling name
_ST_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_lasttoken": "last"}


class HFEncoderEmbedder(Embedder):
    """A transformers encoder (``AutoModel``) + its fast tokenizer, pooled and L2-normalised.

    ``instruction_template`` (e.g. ``"Instruct: {instruction}\\nQuery: "`` for e5-instruct) replaces the
    query prefix and enables instructions for queries; documents then get ``document_prefix`` (default
    none) whatever the instruction. Without a template a non-empty instruction is an error.
    """

    kind = "hf"

    def __init__(
        self,
        source: str,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        *,
        pooling: str | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        instruction_template: str | None = None,
        default_instruction: str = "Given a web search query, retrieve relevant passages that answer the query",
        max_tokens: int | None = None,
        max_batch_tokens: int | None = None,
        max_batch_size: int | None = None,
        local_files_only: bool | None = None,
    ) -> None:
        self.spec = f"hf:{source}"
        self.model_dir = resolve_model_dir(source, local_files_only)
        st_pooling, st_max_tokens = _sentence_transformers_settings(self.model_dir)

        self.pooling = pooling or st_pooling or "mean"
        if self.pooling not in POOLERS:
            raise EmbedderError(f"pooling {self.pooling!r} for {source!r} is not supported; allowed: {sorted(POOLERS)}")
        is_e5 = _E5_NAME.search(re.split(r"[/\\]", source.rstrip("/\\"))[-1].lower()) is not None
        if instruction_template is not None and "{instruction}" not in instruction_template:
            raise EmbedderError(f"instruction_template must contain '{{instruction}}', got {instruction_template!r}")
        self.instruction_template = instruction_template
        self.default_instruction = default_instruction
        self.query_prefix = query_prefix if query_prefix is not None else ("query: " if is_e5 else "")
        default_doc = "passage: " if is_e5 and instruction_template is None else ""
        self.document_prefix = document_prefix if document_prefix is not None else default_doc
        if max_batch_tokens:
            self.max_batch_tokens = int(max_batch_tokens)
        if max_batch_size:
            self.max_batch_size = int(max_batch_size)

        from transformers import AutoConfig, AutoModel, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(self.model_dir)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        except (OSError, ValueError, KeyError) as e:
            raise EmbedderError(f"cannot load the config/tokenizer of {source!r} from {self.model_dir}: {e}") from None
        if not getattr(self.tokenizer, "is_fast", False):
            raise EmbedderError(f"{source!r} has no fast tokenizer (tokenizer.json); batching needs one")

        self.pad_id = _first_int(self.tokenizer.pad_token_id, getattr(config, "pad_token_id", None), 0)
        self.max_tokens = _max_tokens(config, self.tokenizer, self.pad_id, max_tokens or st_max_tokens)
        self.dim = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model"))

        devices = resolve_devices(device)
        self.dtype = resolve_dtype(dtype, devices[0])
        model = _load_model(AutoModel, config, self.model_dir, self.dtype, source)
        if getattr(config, "is_encoder_decoder", False):
            model = model.get_encoder()  # e.g. T5: embeddings come from the encoder alone
        model.eval().requires_grad_(False)
        # one replica per device; the first reuses the loaded model
        self.replicas = [model.to(devices[0])] + [copy.deepcopy(model).to(d) for d in devices[1:]]
        self.devices = devices

        weights = [p for pat in _WEIGHT_PATTERNS for p in self.model_dir.glob(pat)]
        tokenizer_files = [p for p in (self.model_dir / "tokenizer.json",) if p.is_file()]
        self.fingerprint = fingerprint(
            "hf", weights + tokenizer_files, pooling=self.pooling, query_prefix=self.query_prefix,
            document_prefix=self.document_prefix, instruction_template=self.instruction_template,
            default_instruction=self.default_instruction if instruction_template else None,
            max_tokens=self.max_tokens,
        )

    # ---- Embedder --------------------------------------------------------------------------------
    def format_texts(self, texts: list[str], role: Role, instruction: str | None) -> list[str]:
        if self.instruction_template is None:
            super().format_texts(texts, role, instruction)  # raises on a non-empty instruction
            prefix = self.query_prefix if role == "query" else self.document_prefix
        elif role == "query":
            text = self.default_instruction if instruction is None else instruction
            prefix = self.instruction_template.format(instruction=text)
        else:
            prefix = self.document_prefix
        return [prefix + t for t in texts] if prefix else list(texts)

    def embed_batch(self, batch: TokenBatch, replica: Any = None) -> torch.Tensor:
        model = replica if replica is not None else self.replicas[0]
        ids, mask = batch.padded(model.device)  # (b, T), (b, T)
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, T, H)
        return POOLERS[self.pooling](hidden, mask)  # (b, H)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model_dir": str(self.model_dir), "pooling": self.pooling,
                "query_prefix": self.query_prefix, "document_prefix": self.document_prefix,
                "instruction_template": self.instruction_template, "dtype": str(self.dtype).removeprefix("torch."),
                "devices": [str(d) for d in self.devices]}


# ---- loading helpers ---------------------------------------------------------------------------------
def resolve_model_dir(source: str, local_files_only: bool | None = None) -> Path:
    """A local model dir for ``source``: the dir itself, or the hub snapshot (cached, or downloaded unless offline)."""
    if not source or not source.strip():
        raise EmbedderError("spec 'hf:' needs a model directory or hub id, e.g. 'hf:/models/e5' or 'hf:intfloat/e5-base-v2'")
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    looks_local = source.startswith(("/", ".", "~")) or source.count("/") > 1 or os.sep != "/" and os.sep in source
    if path.exists() or looks_local:
        raise EmbedderError(f"model directory {source!r} does not exist or is not a directory")
    from huggingface_hub import constants, snapshot_download

    offline = constants.HF_HUB_OFFLINE if local_files_only is None else local_files_only
    try:
        return Path(snapshot_download(source, allow_patterns=_HUB_PATTERNS, local_files_only=offline))
    except Exception as e:  # hub errors have many types (offline, not found, gated, network)
        where = "in the local Hugging Face cache (offline mode)" if offline else "on the Hugging Face hub"
        raise EmbedderError(f"model {source!r} is neither a local directory nor found {where}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def _sentence_transformers_settings(model_dir: Path) -> tuple[str | None, int | None]:
    """(pooling, max_seq_length) declared by a sentence-transformers layout, or Nones."""
    pooling = max_len = None
    modules_file = model_dir / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        for mod in modules:
            kind = mod.get("type", "")
            if kind.endswith(".Pooling"):
                cfg_file = model_dir / mod.get("path", "1_Pooling") / "config.json"
                cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
                modes = [name for flag, name in _ST_POOLING.items() if cfg.get(flag)]
                other = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v and k not in _ST_POOLING]
                if other or len(modes) > 1:
                    raise EmbedderError(f"{cfg_file}: pooling {other or modes} is not supported; "
                                        f"supported: one of {sorted(_ST_POOLING)}")
                pooling = modes[0] if modes else None
            elif not kind.endswith((".Transformer", ".Normalize")):
                raise EmbedderError(f"{modules_file}: module {kind!r} is not supported "
                                    "(only Transformer, Pooling and Normalize)")
    st_cfg = model_dir / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_len = json.loads(st_cfg.read_text()).get("max_seq_length")
    return pooling, max_len


def _max_tokens(config: Any, tokenizer: Any, pad_id: int, wanted: int | None) -> int:
    """Longest input the model can take: the tokenizer's and the position table's limits, capped."""
    limits = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        offset = pad_id + 1 if getattr(config, "model_type", "") in _OFFSET_POSITIONS else 0
        limits.append(int(positions) - offset)
    model_max = min(limits) if limits else DEFAULT_MAX_TOKENS
    if wanted is None:
        return min(model_max, DEFAULT_MAX_TOKENS)
    if not 0 < int(wanted) <= model_max:
        raise EmbedderError(f"max_tokens={wanted} is out of range for this model; allowed: 1..{model_max}")
    return int(wanted)


def _load_model(auto: Any, config: Any, model_dir: Path, dtype: torch.dtype, source: str) -> torch.nn.Module:
    kwargs: dict[str, Any] = {"dtype": dtype, "output_loading_info": True}
    keys = _safetensors_keys(model_dir)
    try:  # BERT-likes: build no pooler when the checkpoint has none (it is unused by embeddings anyway)
        if keys is not None and not any(".pooler." in f".{k}" for k in keys) and \
                "add_pooling_layer" in inspect.signature(auto._model_mapping[type(config)].__init__).parameters:
            kwargs["add_pooling_layer"] = False
    except (KeyError, TypeError, ValueError):
        pass
    try:
        try:
            model, info = auto.from_pretrained(model_dir, attn_implementation="sdpa", **kwargs)
        except ValueError as e:
            if "sdpa" not in str(e).lower():
                raise
            # architectures without an SDPA kernel in transformers
            model, info = auto.from_pretrained(model_dir, attn_implementation="eager", **kwargs)
    except (ValueError, OSError) as e:
        raise EmbedderError(f"cannot load model {source!r} from {model_dir}: {e}") from None
    missing = sorted(k for k in info.get("missing_keys", ()) if "pooler" not in k)
    if missing:
        raise EmbedderError(f"model {source!r} ({model_dir}) lacks weights for {len(missing)} parameters, "
                            f"e.g. {missing[:4]}; is it an encoder checkpoint of type {config.model_type!r}?")
    return model


def _safetensors_keys(model_dir: Path) -> set[str] | None:
    """Tensor names of the safetensors checkpoint (headers only), or None when there is none."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    keys: set[str] = set()
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            keys.update(k for k in json.loads(fh.read(n)) if k != "__metadata__")
    return keys


HF_OPTIONS = {name for name, p in inspect.signature(HFEncoderEmbedder.__init__).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _first_int(*values: Any) -> int:
    return next(int(v) for v in values if v is not None)


@register("hf", "any Hugging Face encoder: mean/CLS pooling, query/passage prefixes (E5-style for e5 models)")
def load_hf(arg: str, device: str | None = None, dtype: str | None = None, **options: Any) -> HFEncoderEmbedder:
    """Options: pooling, query_prefix, document_prefix, instruction_template, default_instruction,
    max_tokens, max_batch_tokens, max_batch_size, local_files_only. ``cache_dir`` (this project's conversion cache,
    passed to every backend by the runtime) is accepted and unused: hub models live in the Hugging Face cache."""
    options.pop("cache_dir", None)
    unknown = sorted(set(options) - HF_OPTIONS)
    if unknown:
        raise EmbedderError(f"unknown option(s) {unknown} for 'hf:{arg}'; allowed: {sorted(HF_OPTIONS)}")
    return HFEncoderEmbedder(arg, device=device, dtype=dtype, **options)
