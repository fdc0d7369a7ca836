"""LUSIFER configuration: the official ``config.json`` (constructor kwargs), the two backbone shapes, templates.

Only configs and the universal learner's tokenizer (XLM-R or mT5) are resolved from the base names; weights
never are.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lusifer_rag.errors import CheckpointError, ConfigError

#: the official default instruction for retrieval (it already ends in ".", hence the double period)
DEFAULT_INSTRUCTION = "Given a question, retrieve passages that answer the question."
#: official special-token strings for the "xlm-r" universal learner
BOS, EOS = "<s>", "</s>"
QUERY_TEMPLATE = BOS + "{instruction}.\n{text}" + EOS
DOCUMENT_TEMPLATE = BOS + "{instruction}. Candidate:\n{text}" + EOS
#: (bos, eos) per universal-learner backbone, as the official SPECIAL_TOKENS table: its T5 entry has no bos
#: "bert" (our extension): a BERT encoder with the XLM-R vocabulary, as the multilingual-e5 models
SPECIAL_TOKENS = {"xlm-r": (BOS, EOS), "mt5": ("", "</s>"), "bert": (BOS, EOS)}

SUPPORTED_UL = ("xlm-r", "mt5", "bert")
#: target models: the official decoders, and (our extension) an HF BERT encoder embedding model
SUPPORTED_LLM = ("mistral", "llama", "qwen2", "bert")
#: "ff": the official feed-forward connector on the learner's last layer; "fusion-*": the multi-layer fusion of
#: arXiv 2508.09091 (global or per-token layer weights over every learner layer) feeding that connector
CONNECTION_TYPES = ("ff", "fusion-global", "fusion-transformer")
#: rope types whose frequencies do not depend on the sequence length at run time
SUPPORTED_ROPE = ("default", "linear", "llama3", "yarn")


def check_transformers() -> None:
    """We rely on transformers ≥ 5 for config parsing (``rope_parameters``) and tokenizers."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        raise ConfigError(
            f"the LUSIFER backend needs transformers>=5 (found {transformers.__version__}); "
            "upgrade with: pip install 'transformers>=5,<6'"
        )


@dataclass(frozen=True)
class LusiferConfig:
    """The official ``Lusifer.__init__`` kwargs that matter for inference."""

    universal_learner_name_or_path: str
    encoder_name_or_path: str
    universal_learner_backbone_type: str = "xlm-r"
    encoder_backbone_type: str = "mistral"
    connection_type: str = "ff"
    num_added_tokens: int = 0
    pooling_method: str = "mean"
    encoder_lora_name: str | None = "encoder_lora"
    universal_learner_lora_name: str | None = "universal_learner_lora"
    lora_r: int = 16
    lora_alpha: int = 32
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config.json") -> "LusiferConfig":
        raw = dict(raw)
        for key in ("universal_learner_name_or_path", "encoder_name_or_path"):
            if not raw.get(key):
                raise CheckpointError(f"{source}: missing required key {key!r}")
        # the official code spells it 'loar_r'; accept both
        r = raw.pop("loar_r", None)
        r = raw.pop("lora_r", r)
        known = {k: raw.pop(k) for k in list(raw) if k in _FIELDS}
        cfg = cls(**known, lora_r=int(r if r is not None else 16), extra=raw)
        cfg.validate(source)
        return cfg

    def validate(self, source: str) -> None:
        if self.universal_learner_backbone_type not in SUPPORTED_UL:
            raise CheckpointError(f"{source}: unknown universal_learner_backbone_type "
                                  f"{self.universal_learner_backbone_type!r}; supported: {list(SUPPORTED_UL)}")
        if self.encoder_backbone_type not in SUPPORTED_LLM:
            raise CheckpointError(f"{source}: unknown encoder_backbone_type {self.encoder_backbone_type!r}; "
                                  f"supported: {list(SUPPORTED_LLM)}")
        if self.connection_type not in CONNECTION_TYPES:
            raise CheckpointError(f"{source}: connection_type {self.connection_type!r} not supported; "
                                  f"supported: {list(CONNECTION_TYPES)}")
        if self.fusion_mode and self.universal_learner_backbone_type == "mt5":
            raise CheckpointError(f"{source}: connection_type {self.connection_type!r} needs an XLM-R or BERT "
                                  "universal learner (mT5 fusion is not implemented)")
        if self.pooling_method != "mean":
            raise CheckpointError(f"{source}: pooling_method {self.pooling_method!r} not supported; supported: ['mean']")
        if self.num_added_tokens < 0:
            raise CheckpointError(f"{source}: num_added_tokens must be >= 0, got {self.num_added_tokens}")
        if self.lora_r <= 0:
            raise CheckpointError(f"{source}: loar_r must be > 0, got {self.lora_r}")

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_r

    @property
    def fusion_mode(self) -> str | None:
        """'global' / 'transformer' for a fusion connector, None for the plain FF one."""
        return self.connection_type.removeprefix("fusion-") if self.connection_type.startswith("fusion-") else None


_FIELDS = {"universal_learner_name_or_path", "encoder_name_or_path", "universal_learner_backbone_type",
           "encoder_backbone_type", "connection_type", "num_added_tokens", "pooling_method",
           "encoder_lora_name", "universal_learner_lora_name", "lora_alpha"}


@dataclass(frozen=True)
class XLMRShape:
    """What our universal learner needs from an XLM-R config."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    type_vocab_size: int
    pad_id: int
    eps: float
    act: str

    @classmethod
    def from_hf(cls, c: Any) -> "XLMRShape":
        if getattr(c, "position_embedding_type", "absolute") not in (None, "absolute"):
            raise CheckpointError(f"XLM-R position_embedding_type {c.position_embedding_type!r} not supported; "
                                  "supported: ['absolute']")
        if c.hidden_act not in ("gelu", "relu", "gelu_new"):
            raise CheckpointError(f"XLM-R hidden_act {c.hidden_act!r} not supported; supported: gelu, gelu_new, relu")
        return cls(c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size,
                   c.max_position_embeddings, c.type_vocab_size, c.pad_token_id, c.layer_norm_eps, c.hidden_act)

    backbone = "xlm-r"


@dataclass(frozen=True)
class BertShape(XLMRShape):
    """A BERT encoder (absolute positions 0..L-1, not XLM-R's offset past the pad id): the multilingual-e5
    universal learner, or an English BERT embedding model as the target (all-MiniLM, our extension)."""

    backbone = "bert"


@dataclass(frozen=True)
class MT5Shape:
    """What our universal learner needs from an mT5 (T5 encoder) config."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    d_kv: int
    d_ff: int
    num_buckets: int
    max_distance: int
    pad_id: int
    eps: float
    act: str
    backbone = "mt5"

    @classmethod
    def from_hf(cls, c: Any) -> "MT5Shape":
        proj = getattr(c, "feed_forward_proj", "gated-gelu")
        act = c.dense_act_fn
        if not getattr(c, "is_gated_act", False) or act not in ("gelu", "relu", "gelu_new"):
            raise CheckpointError(f"mT5 feed_forward_proj {proj!r} not supported; supported: gated-gelu, "
                                  "gated-gelu_new, gated-relu")
        pad = c.pad_token_id if c.pad_token_id is not None else 0
        return cls(c.vocab_size, c.d_model, c.num_layers, c.num_heads, c.d_kv, c.d_ff,
                   c.relative_attention_num_buckets, c.relative_attention_max_distance, pad, c.layer_norm_epsilon,
                   act)


#: universal-learner shape by ``universal_learner_backbone_type``
UL_SHAPES: dict[str, Any] = {"xlm-r": XLMRShape, "mt5": MT5Shape, "bert": BertShape}
#: and by the HF config's model_type (``LusiferModel.random``)
UL_MODEL_TYPES: dict[str, str] = {"xlm-roberta": "xlm-r", "mt5": "mt5", "t5": "mt5", "bert": "bert"}


def ul_shape_from_hf(c: Any, backbone: str | None = None) -> Any:
    """XLMRShape | MT5Shape from an HF config; ``backbone`` (config.json's type), when given, must match it."""
    model_type = getattr(c, "model_type", None)
    found = UL_MODEL_TYPES.get(model_type or "")
    if found is None:
        raise CheckpointError(f"universal learner config of model_type {model_type!r} not supported; "
                              f"supported model types: {list(UL_MODEL_TYPES)}")
    if backbone is not None and backbone != found:
        raise CheckpointError(f"universal_learner_backbone_type {backbone!r} does not match the universal learner "
                              f"config (model_type {model_type!r}, i.e. {found!r})")
    return UL_SHAPES[found].from_hf(c)


@dataclass(frozen=True)
class LLMShape:
    """What our bidirectional decoder needs from a Mistral / Llama / Qwen2 config."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    eps: float
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    act: str
    rope: dict[str, Any]
    vocab_size: int
    hf_config: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_hf(cls, c: Any, backbone: str) -> "LLMShape":
        rope = dict(getattr(c, "rope_parameters", None) or {})
        if not rope:
            rope = {"rope_type": "default", "rope_theta": getattr(c, "rope_theta", 10000.0)}
        rope.setdefault("rope_type", rope.pop("type", "default"))
        if rope["rope_type"] not in SUPPORTED_ROPE:
            raise CheckpointError(f"rope type {rope['rope_type']!r} of the {backbone} config is not supported; "
                                  f"supported: {list(SUPPORTED_ROPE)}")
        if c.hidden_act != "silu":
            raise CheckpointError(f"{backbone} hidden_act {c.hidden_act!r} not supported; supported: ['silu']")
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        if backbone == "qwen2":
            qkv_bias, o_bias, mlp_bias = True, False, False
        elif backbone == "llama":
            qkv_bias = o_bias = bool(getattr(c, "attention_bias", False))
            mlp_bias = bool(getattr(c, "mlp_bias", False))
        else:
            qkv_bias = o_bias = mlp_bias = False
        return cls(c.hidden_size, c.num_hidden_layers, c.num_attention_heads, kv, head_dim, c.intermediate_size,
                   c.rms_norm_eps, qkv_bias, o_bias, mlp_bias, c.hidden_act, rope, c.vocab_size, c)


# ---- resolving base names (configs and tokenizer only) ---------------------------------------------------
def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _load_hf(loader: Any, name: str, what: str) -> Any:
    """``loader.from_pretrained(name)``: local dir, then the HF cache only, then the hub (unless offline)."""
    if Path(name).is_dir():
        return loader.from_pretrained(name)
    try:
        return loader.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as cached_err:
        if _offline():
            raise CheckpointError(f"{what} {name!r} is neither a local directory nor in the Hugging Face cache, "
                                  f"and HF_HUB_OFFLINE is set ({cached_err})") from None
    try:
        return loader.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot resolve {what} {name!r} (local dir, HF cache or hub): {e}") from None


def target_shape_from_hf(c: Any, backbone: str) -> Any:
    """LLMShape for a decoder target (mistral, llama, qwen2), BertShape for a BERT encoder target."""
    if backbone == "bert":
        if getattr(c, "model_type", None) != "bert":
            raise CheckpointError(f"encoder_backbone_type 'bert' needs a BERT config, got model_type "
                                  f"{getattr(c, 'model_type', None)!r}")
        return BertShape.from_hf(c)
    return LLMShape.from_hf(c, backbone)


def load_backbone_configs(cfg: LusiferConfig) -> tuple[Any, Any]:
    """(XLMRShape | MT5Shape | BertShape by universal_learner_backbone_type, LLMShape | BertShape)."""
    from transformers import AutoConfig

    ul = _load_hf(AutoConfig, cfg.universal_learner_name_or_path, "universal learner config")
    llm = _load_hf(AutoConfig, cfg.encoder_name_or_path, "encoder (LLM) config")
    return (ul_shape_from_hf(ul, cfg.universal_learner_backbone_type),
            target_shape_from_hf(llm, cfg.encoder_backbone_type))


def templates(backbone: str) -> tuple[str, str]:
    """(query, document) templates for a universal learner: the official bos/eos strings of that backbone."""
    bos, eos = SPECIAL_TOKENS[backbone]
    return bos + "{instruction}.\n{text}" + eos, bos + "{instruction}. Candidate:\n{text}" + eos


def load_tokenizer(cfg: LusiferConfig) -> Any:
    """The universal learner's fast tokenizer (XLM-R, or mT5's SentencePiece) built from its ``tokenizer.json`` as-is.

    transformers 5 rebuilds an XLM-R tokenizer's normalizer/pre-tokenizer on ``from_pretrained`` (it then drops
    the lone '▁' before ``</s>`` that the official code, on transformers 4.45, produces for "\\n</s>"); building
    from the file keeps the official pipeline. Without a tokenizer.json we fall back to AutoTokenizer.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast, XLMRobertaTokenizerFast

    name = cfg.universal_learner_name_or_path
    file = _tokenizer_file(name)
    if file is not None and cfg.universal_learner_backbone_type == "mt5":
        # mT5's SentencePiece tokenizer.json as-is (the T5 class would rebuild it, like XLM-R's)
        return PreTrainedTokenizerFast(tokenizer_file=str(file), eos_token="</s>", pad_token="<pad>",
                                       unk_token="<unk>")
    if file is not None:
        return XLMRobertaTokenizerFast(tokenizer_file=str(file))
    tok = _load_hf(AutoTokenizer, name, "universal learner tokenizer")
    if not getattr(tok, "is_fast", False):
        raise CheckpointError(f"the tokenizer of {name!r} is not a fast tokenizer "
                              "(the official code uses the XLM-R fast tokenizer)")
    return tok


def _tokenizer_file(name: str) -> Path | None:
    if Path(name).is_dir():
        f = Path(name) / "tokenizer.json"
        return f if f.is_file() else None
    from huggingface_hub import hf_hub_download

    for local in (True, False):
        if not local and _offline():
            break
        try:
            return Path(hf_hub_download(name, "tokenizer.json", local_files_only=local))
        except Exception:  # not cached / not on the hub: try the next source, then AutoTokenizer
            continue
    return None


def read_config(model_dir: Path) -> LusiferConfig:
    path = model_dir / "config.json"
    if not path.is_file():
        raise CheckpointError(f"no config.json in {str(model_dir)!r} (expected the official LUSIFER layout: "
                              "config.json + model.safetensors)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from None
    # base-model names relative to the checkpoint ("./learner": a self-contained checkpoint, as training writes)
    for key in ("universal_learner_name_or_path", "encoder_name_or_path"):
        name = raw.get(key)
        if isinstance(name, str) and name.startswith(("./", "../")) and (model_dir / name).is_dir():
            raw[key] = str((model_dir / name).resolve())
    return LusiferConfig.from_dict(raw, str(path))
