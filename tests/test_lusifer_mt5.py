"""LUSIFER with an mT5 universal learner: equals HF MT5EncoderModel + unmerged peft, both layouts, strict keys."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import torch

from lusifer_rag.embedder import load_embedder
from lusifer_rag.embedder.lusifer import LusiferModel
from lusifer_rag.embedder.lusifer.mt5 import MT5Learner, relative_buckets
from lusifer_rag.errors import CheckpointError
from lusifer_reference import (edited_copy, TEXTS, cached_checkpoint, cached_embedder, llm_config, mt5_config, reference_embed,
                               single_thread)

P = "universal_learner.base_model.model."
PROMPTS = [("query", None), ("document", None), ("document", "Retrieve semantically similar text.")]


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


@lru_cache(maxsize=None)
def _reference(role: str, instruction: str | None) -> torch.Tensor:
    return reference_embed(cached_checkpoint("mistral", 0, ul="mt5"), TEXTS, role, instruction)


def _ours(emb, role: str, instruction: str | None = None, texts: list[str] = TEXTS) -> torch.Tensor:
    f = emb.embed_queries if role == "query" else emb.embed_documents
    return torch.from_numpy(f(texts, instruction))


def _copy(tmp_path: Path, edit=None, config_edit=None) -> Path:
    """A copy of the cached mT5 checkpoint, its state dict and/or config.json edited."""
    return edited_copy(cached_checkpoint("mistral", 0, ul="mt5").dir, tmp_path / "ckpt", edit, config_edit)


@pytest.mark.parametrize("attention", ["padded", "packed"])
def test_matches_official_reference(attention):
    emb = cached_embedder("mistral", 0, attention, ul="mt5")
    assert isinstance(emb.model.ul, MT5Learner)
    for role, instruction in PROMPTS:
        cos = torch.nn.functional.cosine_similarity(_ours(emb, role, instruction), _reference(role, instruction))
        assert cos.shape == (len(TEXTS),)
        assert cos.min().item() >= 0.99999, (attention, role, instruction, cos.tolist())


def test_packed_equals_padded_and_batched_equals_single():
    padded = cached_embedder("mistral", 0, "padded", ul="mt5")
    packed = cached_embedder("mistral", 0, "packed", ul="mt5")
    batch = _ours(padded, "document")
    assert (batch - _ours(packed, "document")).abs().max().item() <= 1e-5
    # the flex path (score_mod bias by distance + document block mask), eager on CPU
    flex = cached_embedder("mistral", 0, "packed", ul="mt5", packed_kernel="flex")
    assert (batch - _ours(flex, "document")).abs().max().item() <= 1e-5
    for i in (0, 5, 7):  # short, empty, over-long (relative distances past max_distance)
        single = _ours(padded, "document", texts=[TEXTS[i]])[0]
        assert (batch[i] - single).abs().max().item() <= 1e-5, i


def test_template_has_no_bos_and_ends_in_eos():
    emb = cached_embedder("mistral", 0, ul="mt5")
    (q,) = emb.format_texts(["hi"], "query", None)
    (d,) = emb.format_texts(["hi"], "document", "Find it.")
    assert q == "Given a question, retrieve passages that answer the question..\nhi</s>"
    assert d == "Find it.. Candidate:\nhi</s>"
    ids = emb.tokenize([q])[0]
    tok = emb.tokenizer
    assert ids[-1] == tok.eos_token_id and ids[0] != tok.convert_tokens_to_ids("<s>")
    assert emb.pad_id == tok.pad_token_id  # the tiny config reuses the XLM-R tokenizer's pad id


def test_relative_buckets_match_transformers():
    from transformers.models.mt5.modeling_mt5 import MT5Attention

    rel = torch.arange(-700, 701)[None, :] - torch.arange(0, 3)[:, None]  # (3, 1401)
    for nb, md in [(32, 128), (16, 64)]:
        expected = MT5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=nb, max_distance=md)
        assert torch.equal(relative_buckets(rel, nb, md), expected)


def test_random_model_padded_equals_packed_with_added_tokens():
    model = LusiferModel.random(mt5_config(vocab_size=300), llm_config("mistral"), num_added_tokens=2)
    assert isinstance(model.ul, MT5Learner)
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 1, 9])
    ids = torch.randint(3, 300, (3, 9), generator=g).masked_fill(torch.arange(9)[None] >= lengths[:, None], 1)
    flat = torch.cat([ids[i, :n] for i, n in enumerate(lengths.tolist())])
    cu = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    with torch.no_grad():
        a, b = model.forward_padded(ids, lengths), model.forward_packed(flat, cu, 9)
    assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()


def test_either_tied_embedding_name_loads(tmp_path):
    def rename(s):
        s[P + "encoder.embed_tokens.weight"] = s.pop(P + "shared.weight")

    emb = load_embedder(f"lusifer:{_copy(tmp_path, rename)}")
    ref = cached_embedder("mistral", 0, ul="mt5")
    assert (_ours(emb, "query", texts=TEXTS[:2]) - _ours(ref, "query", texts=TEXTS[:2])).abs().max() == 0


def test_strict_key_errors(tmp_path):
    rel = P + "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    cases = [
        (lambda s: s.pop(rel), r"1 missing keys: .*block\.0\.layer\.0\.SelfAttention\.relative_attention_bias"),
        (lambda s: s.pop(P + "shared.weight"), r"1 missing keys: .*shared\.weight or .*encoder\.embed_tokens\.weight"),
        (lambda s: s.pop(P + "encoder.block.1.layer.1.DenseReluDense.wi_1.lora_B.universal_learner_lora.weight"),
         r"do the LoRA names .*1 missing keys: .*block\.1\.layer\.1\.DenseReluDense\.wi_1\.lora_B"),
        (lambda s: s.update({P + "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight":
                             torch.zeros(32, 4)}), r"1 unexpected keys: .*block\.1\.layer\.0\.SelfAttention"),
        (lambda s: s.update({rel: torch.zeros(16, 4)}), r"1 shape mismatches: .*relative_attention_bias\.weight "
                                                        r"\[16, 4\] \(expected \[32, 4\]\)"),
    ]
    for i, (edit, message) in enumerate(cases):
        with pytest.raises(CheckpointError, match=message):
            load_embedder(f"lusifer:{_copy(tmp_path / str(i), edit)}")


def test_backbone_type_must_match_the_base_config(tmp_path):
    d = _copy(tmp_path, config_edit=lambda c: c.update(universal_learner_backbone_type="xlm-r"))
    with pytest.raises(CheckpointError, match=r"'xlm-r' does not match .*model_type 'mt5'"):
        load_embedder(f"lusifer:{d}")
