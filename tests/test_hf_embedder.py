"""``hf:<dir>`` on tiny random encoders saved by transformers, with the real XLM-R tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lusifer_rag.embedder import load_embedder
from lusifer_rag.errors import ConfigError, EmbedderError

MAX_POS = 34  # XLM-R positions start after the pad id (1): 32 usable tokens
TEXTS = [
    "Everyone has the right to life, liberty and security of person.",
    "",
    "Kila mtu ana haki ya kuishi.",
    "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता प्राप्त है।",
    "人人生而自由",
    "short",
    "A somewhat longer sentence that goes on and on about tokens, padding and batches of texts.",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, xlmr_tokenizer_file) -> Path:
    from transformers import XLMRobertaTokenizerFast

    out = tmp_path_factory.mktemp("xlmr-tokenizer")
    XLMRobertaTokenizerFast(tokenizer_file=str(xlmr_tokenizer_file), model_max_length=512).save_pretrained(out)
    return out


def _save_model(model: torch.nn.Module, tokenizer_dir: Path, out: Path) -> Path:
    model.save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    return out


def _tiny_xlmr(seed: int) -> torch.nn.Module:
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(vocab_size=250002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=MAX_POS, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2)
    return XLMRobertaModel(cfg, add_pooling_layer=False)


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny XLM-R whose name says e5 (so E5 prefixes apply); no sentence-transformers files: mean pooling."""
    return _save_model(_tiny_xlmr(0), tokenizer_dir, tmp_path_factory.mktemp("models") / "tiny-e5-xlmr")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny BertModel in a sentence-transformers layout that declares CLS pooling; no prefixes."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    cfg = BertConfig(vocab_size=250002, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=96, max_position_embeddings=64, pad_token_id=1)
    out = _save_model(BertModel(cfg), tokenizer_dir, tmp_path_factory.mktemp("models") / "tiny-bert")
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 48, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    return out


@pytest.fixture(scope="module")
def e5_tiny(e5_dir):
    return load_embedder(f"hf:{e5_dir}", device="cpu")


@pytest.fixture(scope="module")
def bert_tiny(bert_dir):
    return load_embedder(f"hf:{bert_dir}", device="cpu")


def test_shape_dtype_norm(e5_tiny):
    for vecs in (e5_tiny.embed_queries(TEXTS), e5_tiny.embed_documents(TEXTS)):
        assert vecs.shape == (len(TEXTS), 32) and vecs.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert e5_tiny.dim == 32
    assert e5_tiny.max_tokens == MAX_POS - 2  # position offset of XLM-R
    assert e5_tiny.pad_id == 1
    assert e5_tiny.embed_queries([]).shape == (0, 32)


def test_batched_equals_one_at_a_time(e5_tiny):
    batched = e5_tiny.embed_documents(TEXTS)
    single = np.stack([e5_tiny.embed_documents([t])[0] for t in TEXTS])
    assert np.abs(batched - single).max() <= 1e-5
    # a tiny budget forces many small batches: same vectors, same order
    e5_tiny.max_batch_tokens, saved = 40, e5_tiny.max_batch_tokens
    try:
        small = e5_tiny.embed_documents(TEXTS)
    finally:
        e5_tiny.max_batch_tokens = saved
    assert np.abs(batched - small).max() <= 1e-5


def test_empty_string(e5_tiny, bert_tiny):
    for emb in (e5_tiny, bert_tiny):
        vec = emb.embed_documents([""])
        assert np.isfinite(vec).all() and abs(np.linalg.norm(vec) - 1) < 1e-5


def test_overlong_text_is_truncated(bert_tiny):
    emb = bert_tiny
    long_text = " ".join(["the law of the land and the rights of people"] * 20)
    n = emb.count_tokens([long_text])[0]
    assert n > emb.max_tokens  # counted before truncation
    # the text the model actually sees: the first max_tokens - 2 tokens between <s> and </s>
    ids = emb.tokenizer(long_text)["input_ids"]
    prefix = emb.tokenizer.decode(ids[1 : emb.max_tokens - 1])
    assert emb.tokenizer(prefix)["input_ids"] == ids[: emb.max_tokens - 1] + ids[-1:]
    a, b = emb.embed_documents([long_text, prefix])
    assert np.abs(a - b).max() <= 1e-5
    assert np.abs(a - emb.embed_documents([long_text + " and more"])).max() <= 1e-5  # the tail is ignored


def test_count_tokens_matches_tokenizer(e5_tiny, bert_tiny):
    tok = e5_tiny.tokenizer
    want_q = [len(tok("query: " + t)["input_ids"]) for t in TEXTS]
    want_d = [len(tok("passage: " + t)["input_ids"]) for t in TEXTS]
    assert e5_tiny.count_tokens(TEXTS, role="query") == want_q
    assert e5_tiny.count_tokens(TEXTS) == want_d
    assert bert_tiny.count_tokens(TEXTS) == [len(tok(t)["input_ids"]) for t in TEXTS]
    assert e5_tiny.template_overhead("query") == len(tok("query: ")["input_ids"])


def test_prefixes(e5_tiny, bert_tiny):
    assert (e5_tiny.query_prefix, e5_tiny.document_prefix) == ("query: ", "passage: ")
    q, d = e5_tiny.embed_queries(TEXTS), e5_tiny.embed_documents(TEXTS)
    assert np.abs(q - d).max(axis=1).min() > 1e-4  # every text differs between roles
    # no e5 in the name: no prefixes, query == document
    assert (bert_tiny.query_prefix, bert_tiny.document_prefix) == ("", "")
    np.testing.assert_array_equal(bert_tiny.embed_queries(TEXTS), bert_tiny.embed_documents(TEXTS))


def test_pooling_from_sentence_transformers_and_option(bert_dir, bert_tiny):
    assert bert_tiny.pooling == "cls"
    mean = load_embedder(f"hf:{bert_dir}", device="cpu", pooling="mean")
    assert mean.pooling == "mean"
    assert np.abs(mean.embed_documents(TEXTS) - bert_tiny.embed_documents(TEXTS)).max() > 1e-3
    assert mean.fingerprint != bert_tiny.fingerprint  # pooling
    with pytest.raises(EmbedderError, match="pooling 'max'.*allowed"):
        load_embedder(f"hf:{bert_dir}", device="cpu", pooling="max")


def test_fingerprint_and_instruction(e5_dir, e5_tiny, tokenizer_dir, tmp_path):
    assert e5_tiny.fingerprint.startswith("hf-")
    # stable across loads and across copying the model dir
    copied = shutil.copytree(e5_dir, tmp_path / "copy-of-e5")
    assert load_embedder(f"hf:{copied}", device="cpu").fingerprint == e5_tiny.fingerprint
    other = _save_model(_tiny_xlmr(seed=7), tokenizer_dir, tmp_path / "tiny-e5-other")
    assert load_embedder(f"hf:{other}", device="cpu").fingerprint != e5_tiny.fingerprint  # weights

    with pytest.raises(EmbedderError, match="takes no instruction"):
        e5_tiny.embed_queries(["x"], instruction="Retrieve passages")
    tmpl = "Instruct: {instruction}\nQuery: "
    inst = load_embedder(f"hf:{e5_dir}", device="cpu", instruction_template=tmpl)
    assert inst.fingerprint != e5_tiny.fingerprint  # templates
    assert inst.document_prefix == ""  # e5-instruct: documents take no prefix
    a = inst.embed_queries(TEXTS[:3], instruction="Find laws")
    b = inst.embed_queries(TEXTS[:3], instruction="Find recipes")
    assert np.abs(a - b).max() > 1e-4
    tok = inst.tokenizer
    assert inst.count_tokens(["hi"], "query", "Find laws") == [len(tok("Instruct: Find laws\nQuery: hi")["input_ids"])]
    default = len(tok(tmpl.format(instruction=inst.default_instruction) + "hi")["input_ids"])
    assert inst.count_tokens(["hi"], "query") == [default]
    with pytest.raises(EmbedderError, match="instruction_template"):
        load_embedder(f"hf:{e5_dir}", device="cpu", instruction_template="no placeholder")


def test_errors(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(EmbedderError, match="no-such-model"):
        load_embedder(f"hf:{missing}")
    with pytest.raises(EmbedderError, match="nobody-xyz/not-a-model"):
        load_embedder("hf:nobody-xyz/not-a-model")  # offline: not in the local cache
    with pytest.raises(ConfigError) as err:
        load_embedder("word2vec:/models/w2v")
    assert "hf:<dir or hub id>" in str(err.value) and "e5-small" in str(err.value)
    with pytest.raises(EmbedderError, match="unknown option.*'poolin'"):
        load_embedder(f"hf:{missing}", poolin="mean")


def test_bad_texts(e5_tiny):
    with pytest.raises(EmbedderError, match="list of texts"):
        e5_tiny.embed_documents("a single string")
    with pytest.raises(EmbedderError, match="must be strings"):
        e5_tiny.embed_documents(["ok", None])


def test_describe(e5_tiny, e5_dir):
    d = e5_tiny.describe()
    assert d["spec"] == f"hf:{e5_dir}" and d["pooling"] == "mean" and d["dim"] == 32 and d["devices"] == ["cpu"]
