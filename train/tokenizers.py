"""The two tokenizers of a training run: the universal learner's (what LUSIFER reads) and, for stage 1, the
target's (the text it must produce, or read as the teacher)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lusifer_rag.embedder.lusifer.config import load_tokenizer
from lusifer_rag.errors import ConfigError

from .config import TrainConfig
from .model import Sources, layout_config


def learner_tokenizer(cfg: TrainConfig, src: Sources) -> Any:
    """As the embedder loads it (the official pipeline, from tokenizer.json as-is)."""
    return load_tokenizer(layout_config(cfg, src, lora=False))


def target_tokenizer(cfg: TrainConfig, src: Sources) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    name = src.target
    file = Path(name) / "tokenizer.json"
    if Path(name).is_dir() and file.is_file():
        tok = AutoTokenizer.from_pretrained(name) if (Path(name) / "tokenizer_config.json").is_file() \
            else PreTrainedTokenizerFast(tokenizer_file=str(file))
    else:
        try:
            tok = AutoTokenizer.from_pretrained(name)
        except Exception as e:
            raise ConfigError(f"stage 1 needs the target's tokenizer: {name!r} has none loadable ({e})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    vocab = getattr(src.target_config, "vocab_size", None)
    if vocab is not None and len(tok) > vocab:
        raise ConfigError(f"the target tokenizer of {name!r} has {len(tok)} tokens, more than the model's "
                          f"vocab_size {vocab}")
    return tok
