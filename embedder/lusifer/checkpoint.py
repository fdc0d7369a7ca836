"""Official ``model.safetensors`` → our merged state dict.

The official checkpoint is ``Lusifer.state_dict()`` with peft naming (spec §2). We read the header, check the
key set, shapes and dtypes against what config.json implies (failing loudly, where the official loader uses
``strict=False``), then load one tensor at a time, merge LoRA in fp32 (W + alpha/r · B·A), fuse q/k/v and
gate/up, cast, and drop ``lm_head`` / ``embed_tokens`` / the XLM-R pooler.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from lusifer_rag.errors import CheckpointError

from .config import LLMShape, LusiferConfig, XLMRShape

_FLOAT_DTYPES = {"F32", "BF16", "F16"}
_SHOW = 5


def read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (dtype, shape)} from a safetensors header (8-byte little-endian length, then JSON)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise CheckpointError(f"{path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > path.stat().st_size:
                raise CheckpointError(f"{path}: not a safetensors file (header length {n} > file size)")
            meta = json.loads(f.read(n))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors header ({e})") from None
    meta.pop("__metadata__", None)
    return {k: (v["dtype"], tuple(v["shape"])) for k, v in meta.items()}


@dataclass(frozen=True)
class Linear:
    """One official Linear (maybe LoRA-wrapped): where its tensors live in the checkpoint."""

    path: str  # e.g. 'universal_learner.base_model.model.encoder.layer.0.attention.self.query'
    lora: str | None  # adapter name, None when not wrapped
    out_f: int
    in_f: int
    bias: bool

    @property
    def weight(self) -> str:
        return f"{self.path}.base_layer.weight" if self.lora else f"{self.path}.weight"

    @property
    def bias_key(self) -> str:
        return f"{self.path}.base_layer.bias" if self.lora else f"{self.path}.bias"

    def keys(self, r: int) -> dict[str, tuple[int, ...]]:
        out = {self.weight: (self.out_f, self.in_f)}
        if self.bias:
            out[self.bias_key] = (self.out_f,)
        if self.lora:
            out[f"{self.path}.lora_A.{self.lora}.weight"] = (r, self.in_f)
            out[f"{self.path}.lora_B.{self.lora}.weight"] = (self.out_f, r)
        return out


class Layout:
    """The official key layout for one config: expected keys/shapes and the map to our parameter names."""

    def __init__(self, cfg: LusiferConfig, ul: Any, llm: Any):
        """``ul``: XLMRShape, MT5Shape or BertShape (its ``backbone`` picks the key layout); ``llm``: LLMShape
        (a decoder target) or BertShape (an encoder target)."""
        self.cfg = cfg
        self.required: dict[str, tuple[int, ...]] = {}
        self.optional: dict[str, tuple[int, ...]] = {}  # allowed but unused
        # ours -> (list of official Linears stacked along dim 0) or plain official key
        self.linears: dict[str, list[Linear]] = {}
        self.plain: dict[str, str] = {}
        self.alternatives: dict[str, list[str]] = {}  # ours -> official aliases, one of which must exist

        ul_lora = cfg.universal_learner_lora_name
        P = "universal_learner.base_model.model." if ul_lora else "universal_learner."
        _ul_keys()[ul.backbone](self, ul, P, ul_lora)
        d = ul.hidden_size

        llm_lora = cfg.encoder_lora_name
        E = "encoder.base_model.model." if llm_lora else "encoder."
        if isinstance(llm, LLMShape):
            self._decoder_keys(llm, E, llm_lora)
        else:  # a BERT encoder target (our extension): BertModel keys, LoRA-wrapped like the learner's
            _xlmr_keys(self, llm, E, llm_lora, ours="llm.", word_emb_used=False)
        D = llm.hidden_size

        if cfg.fusion_mode:
            from .fusion import LayerFusion

            for name, tensor in LayerFusion(ul.num_layers, d, cfg.fusion_mode).state_dict().items():
                self._plain(f"connector.fusion.{name}", f"connection_module.fusion.{name}", tuple(tensor.shape))
        self._linear("connector.ff0", [Linear("connection_module.ff.0", None, d, d, True)])
        self._linear("connector.ff2", [Linear("connection_module.ff.2", None, D, d, True)])
        if cfg.num_added_tokens:
            self._plain("connector.added_tokens", "connection_module.added_tokens", (cfg.num_added_tokens, D))
        self._linear("proj.l0", [Linear("output_projection.0", None, D, D, True)])
        self._linear("proj.l2", [Linear("output_projection.2", None, D, D, True)])

    def _decoder_keys(self, llm: LLMShape, E: str, llm_lora: str | None) -> None:
        """Official Mistral / Llama / Qwen2 keys (peft-wrapped q/k/v/o/gate/up/down) onto ``llm.*``."""
        D, hd = llm.hidden_size, llm.head_dim
        qo, kvo = llm.num_heads * hd, llm.num_kv_heads * hd
        for i in range(llm.num_layers):
            L, o = f"{E}model.layers.{i}.", f"llm.layers.{i}."
            self._linear(o + "qkv", [Linear(L + "self_attn.q_proj", llm_lora, qo, D, llm.qkv_bias),
                                     Linear(L + "self_attn.k_proj", llm_lora, kvo, D, llm.qkv_bias),
                                     Linear(L + "self_attn.v_proj", llm_lora, kvo, D, llm.qkv_bias)])
            self._linear(o + "o", [Linear(L + "self_attn.o_proj", llm_lora, D, qo, llm.o_bias)])
            I = llm.intermediate_size
            self._linear(o + "gate_up", [Linear(L + "mlp.gate_proj", llm_lora, I, D, llm.mlp_bias),
                                         Linear(L + "mlp.up_proj", llm_lora, I, D, llm.mlp_bias)])
            self._linear(o + "down", [Linear(L + "mlp.down_proj", llm_lora, D, I, llm.mlp_bias)])
            self._plain(o + "in_norm.weight", L + "input_layernorm.weight", (D,))
            self._plain(o + "post_norm.weight", L + "post_attention_layernorm.weight", (D,))
        self._plain("llm.norm.weight", E + "model.norm.weight", (D,))
        # unused at inference; safetensors drops one of two tied tensors, so with tied embeddings either may be absent
        unused = {E + "model.embed_tokens.weight": (llm.vocab_size, D), E + "lm_head.weight": (llm.vocab_size, D)}
        tied = bool(getattr(llm.hf_config, "tie_word_embeddings", False))
        (self.optional if tied else self.required).update(unused)

    def _plain(self, ours: str, key: str, shape: tuple[int, ...]) -> None:
        self.plain[ours] = key
        self.required[key] = shape

    def _linear(self, ours: str, parts: list[Linear]) -> None:
        self.linears[ours] = parts
        for p in parts:
            self.required.update(p.keys(self.cfg.lora_r))

    plain_key, linear = _plain, _linear  # for the per-backbone key functions

    def one_of(self, ours: str, keys: list[str], shape: tuple[int, ...]) -> None:
        """A tensor saved under any of ``keys`` (tied aliases): at least one must be present; the first is read."""
        self.alternatives[ours] = keys
        self.optional.update({k: shape for k in keys})

    # ---- checks -------------------------------------------------------------------------------------------
    def check(self, header: dict[str, tuple[str, tuple[int, ...]]], path: Path) -> None:
        problems: list[str] = []
        missing = sorted(set(self.required) - set(header))
        missing += [" or ".join(keys) for keys in self.alternatives.values() if not any(k in header for k in keys)]
        unexpected = sorted(set(header) - set(self.required) - set(self.optional))
        if missing:
            problems.append(f"{len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
        expected = {**self.optional, **self.required}
        bad_shape = [f"{k} {list(header[k][1])} (expected {list(s)})" for k, s in expected.items()
                     if k in header and header[k][1] != s]
        if bad_shape:
            problems.append(f"{len(bad_shape)} shape mismatches: {_first(bad_shape)}")
        bad_dtype = [f"{k} {dt}" for k, (dt, _) in header.items() if k in expected and dt not in _FLOAT_DTYPES]
        if bad_dtype:
            problems.append(f"{len(bad_dtype)} tensors of a non-float dtype (allowed {sorted(_FLOAT_DTYPES)}): "
                            f"{_first(bad_dtype)}")
        if problems:
            hint = ""
            if missing and any(".added_tokens" in k for k in unexpected + missing):
                hint = " (does num_added_tokens in config.json match the checkpoint?)"
            elif missing and any("lora_" in k for k in unexpected + missing):
                hint = " (do the LoRA names and loar_r in config.json match the checkpoint?)"
            raise CheckpointError(f"{path} does not match its config.json{hint}: " + "; ".join(problems))

    # ---- loading ------------------------------------------------------------------------------------------
    def tensors(self, path: Path, dtype: torch.dtype, device: torch.device) -> Iterator[tuple[str, torch.Tensor]]:
        """(our name, tensor) pairs, LoRA merged in fp32 then cast; one official tensor in memory at a time."""
        from safetensors import safe_open

        scale = self.cfg.lora_scale
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for ours, key in self.plain.items():
                yield ours, f.get_tensor(key).to(device=device, dtype=dtype)
            present = set(f.keys())
            for ours, keys in self.alternatives.items():
                key = next(k for k in keys if k in present)
                yield ours, f.get_tensor(key).to(device=device, dtype=dtype)
            for ours, parts in self.linears.items():
                ws, bs = [], []
                for p in parts:
                    w = f.get_tensor(p.weight).float()
                    if p.lora:
                        a = f.get_tensor(f"{p.path}.lora_A.{p.lora}.weight").float()  # (r, in)
                        b = f.get_tensor(f"{p.path}.lora_B.{p.lora}.weight").float()  # (out, r)
                        w = w.addmm_(b, a, alpha=scale)
                    ws.append(w.to(dtype))
                    if p.bias:
                        bs.append(f.get_tensor(p.bias_key).to(dtype))
                yield ours + ".weight", (ws[0] if len(ws) == 1 else torch.cat(ws)).to(device)
                if bs:
                    yield ours + ".bias", (bs[0] if len(bs) == 1 else torch.cat(bs)).to(device)


def _xlmr_keys(layout: Layout, ul: XLMRShape, P: str, ul_lora: str | None, ours: str = "ul.",
               word_emb_used: bool = True) -> None:
    """Official XLMRobertaModel keys (peft-wrapped query/key/value/dense) onto our ``ul.*`` names. BertModel has the
    same names: a BERT learner, or (``ours="llm."``) a BERT target, whose word embeddings the chain never reads."""
    d = ul.hidden_size
    for name, key, shape in [
        ("word_emb.weight", "embeddings.word_embeddings.weight", (ul.vocab_size, d)),
        ("pos_emb.weight", "embeddings.position_embeddings.weight", (ul.max_positions, d)),
        ("type_emb.weight", "embeddings.token_type_embeddings.weight", (ul.type_vocab_size, d)),
        ("emb_ln.weight", "embeddings.LayerNorm.weight", (d,)),
        ("emb_ln.bias", "embeddings.LayerNorm.bias", (d,)),
    ]:
        if name == "word_emb.weight" and not word_emb_used:
            layout.optional[P + key] = shape  # unused by the chain: may be left out of a checkpoint
            continue
        layout.plain_key(ours + name, P + key, shape)
    for i in range(ul.num_layers):
        L, o = f"{P}encoder.layer.{i}.", f"{ours}layers.{i}."
        layout.linear(o + "qkv", [Linear(L + f"attention.self.{n}", ul_lora, d, d, True)
                                 for n in ("query", "key", "value")])
        layout.linear(o + "attn_out", [Linear(L + "attention.output.dense", ul_lora, d, d, True)])
        layout.linear(o + "inter", [Linear(L + "intermediate.dense", ul_lora, ul.intermediate_size, d, True)])
        layout.linear(o + "out", [Linear(L + "output.dense", ul_lora, d, ul.intermediate_size, True)])
        for ln, key in (("attn_ln", "attention.output.LayerNorm"), ("out_ln", "output.LayerNorm")):
            layout.plain_key(f"{o}{ln}.weight", f"{L}{key}.weight", (d,))
            layout.plain_key(f"{o}{ln}.bias", f"{L}{key}.bias", (d,))
    # the official XLMRobertaModel keeps its (unused) pooler, LoRA-wrapped like every 'dense'
    layout.optional.update(Linear(P + "pooler.dense", ul_lora, d, d, True).keys(layout.cfg.lora_r))


def _ul_keys() -> dict[str, Callable[[Layout, Any, str, str | None], None]]:
    """Universal-learner key layouts by backbone (mt5.py imports this module: resolved lazily)."""
    from .mt5 import add_mt5_keys

    return {"xlm-r": _xlmr_keys, "mt5": add_mt5_keys, "bert": _xlmr_keys}


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f", … (+{len(items) - _SHOW} more)" if len(items) > _SHOW else "")
