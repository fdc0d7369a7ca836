"""LUSIFER loading: strict key checks, LoRA merge, config handling, templates, fingerprint, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lusifer_rag.embedder import available, load_embedder
from lusifer_rag.embedder.lusifer import LusiferEmbedder
from lusifer_rag.embedder.lusifer.stages import xlmr_positions
from lusifer_rag.errors import CheckpointError, ConfigError
from lusifer_reference import edited_copy, cached_checkpoint, cached_embedder, single_thread


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread (no OpenMP spin contention on small shared CPUs)."""
    with single_thread():
        yield


def _copy(tmp_path: Path, edit=None, config_edit=None) -> Path:
    """A copy of the cached mistral checkpoint, its state dict and/or config edited."""
    return edited_copy(cached_checkpoint("mistral", 0).dir, tmp_path / "ckpt", edit, config_edit)


def test_registered():
    assert "lusifer" in dict(available())


def test_missing_key_is_named(tmp_path):
    key = "encoder.base_model.model.model.layers.1.mlp.up_proj.lora_A.encoder_lora.weight"
    d = _copy(tmp_path, lambda s: s.pop(key))
    with pytest.raises(CheckpointError, match=r"1 missing keys: .*layers\.1\.mlp\.up_proj\.lora_A"):
        load_embedder(f"lusifer:{d}")


def test_unexpected_key_is_named(tmp_path):
    d = _copy(tmp_path, lambda s: s.update({"connection_module.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: connection_module\.extra\.weight"):
        load_embedder(f"lusifer:{d}")


def test_wrong_shape_is_named(tmp_path):
    d = _copy(tmp_path, lambda s: s.update({"output_projection.2.weight": torch.zeros(64, 32)}))
    with pytest.raises(CheckpointError, match=r"shape mismatches: output_projection\.2\.weight \[64, 32\] \(expected \[64, 64\]\)"):
        load_embedder(f"lusifer:{d}")


def test_non_float_dtype_is_refused(tmp_path):
    d = _copy(tmp_path, lambda s: s.update({"output_projection.2.bias": torch.zeros(64, dtype=torch.int32)}))
    with pytest.raises(CheckpointError, match=r"non-float dtype .*output_projection\.2\.bias I32"):
        load_embedder(f"lusifer:{d}")


def test_added_tokens_mismatch_gives_a_hint(tmp_path):
    d = _copy(tmp_path, config_edit=lambda c: c.update(num_added_tokens=4))
    with pytest.raises(CheckpointError, match=r"num_added_tokens.*1 missing keys: connection_module\.added_tokens"):
        load_embedder(f"lusifer:{d}")


def test_many_missing_keys_are_counted_and_cut(tmp_path):
    d = _copy(tmp_path, lambda s: [s.pop(k) for k in [k for k in s if k.startswith("universal_learner.")]])
    with pytest.raises(CheckpointError, match=r"\d{2,} missing keys: .*\(\+\d+ more\)"):
        load_embedder(f"lusifer:{d}")


@pytest.mark.parametrize("field,value,message", [
    ("encoder_backbone_type", "gpt2", r"unknown encoder_backbone_type 'gpt2'; supported: \['mistral', 'llama', 'qwen2', 'bert'\]"),
    ("universal_learner_backbone_type", "gpt2", r"unknown universal_learner_backbone_type 'gpt2'"),
    ("universal_learner_backbone_type", "bert",
     r"universal_learner_backbone_type 'bert' does not match .*model_type 'xlm-roberta'"),
    ("connection_type", "attention", r"connection_type 'attention' not supported; supported: \['ff', 'fusion-global'"),
    ("universal_learner_backbone_type", "mt5",
     r"universal_learner_backbone_type 'mt5' does not match .*model_type 'xlm-roberta'"),
    ("pooling_method", "cls", r"pooling_method 'cls' not supported"),
])
def test_unknown_backbones_and_options(tmp_path, field, value, message):
    d = _copy(tmp_path, config_edit=lambda c: c.update({field: value}))
    with pytest.raises(CheckpointError, match=message):
        load_embedder(f"lusifer:{d}")


def test_missing_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_embedder(f"lusifer:{tmp_path / 'nowhere'}")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_embedder(f"lusifer:{tmp_path}")
    d = _copy(tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_embedder(f"lusifer:{d}")
    with pytest.raises(CheckpointError, match="needs a checkpoint"):
        load_embedder("lusifer:")


def test_unknown_option_and_attention_mode():
    d = cached_checkpoint("mistral", 0).dir
    with pytest.raises(ConfigError, match="unknown lusifer options"):
        LusiferEmbedder(str(d), bogus=1)
    with pytest.raises(ConfigError, match=r"attention 'fast' unknown; allowed"):
        LusiferEmbedder(str(d), attention="fast")


def test_lora_r_spelling_both_accepted(tmp_path):
    def respell(c):
        c["lora_r"] = c.pop("loar_r")

    emb = load_embedder(f"lusifer:{_copy(tmp_path, config_edit=respell)}")
    ref = cached_embedder("mistral", 0)
    assert emb.config.lora_r == 16 and emb.fingerprint == ref.fingerprint
    assert abs(emb.embed_queries(["hi"]) - ref.embed_queries(["hi"])).max() == 0


def test_lora_merge_equals_unmerged_peft_forward():
    ck, emb = cached_checkpoint("mistral", 0), cached_embedder("mistral", 0)
    official, model = ck.module.eval(), emb.model
    # 1) a merged weight is base + alpha/r · B·A
    q = official.encoder.base_model.model.model.layers[0].self_attn.q_proj
    expected = q.base_layer.weight + 2.0 * q.lora_B["encoder_lora"].weight @ q.lora_A["encoder_lora"].weight
    assert torch.allclose(model.llm.layers[0].qkv.weight[: expected.shape[0]], expected, atol=1e-6)
    # 2) stage outputs equal the unmerged peft modules
    ids = torch.tensor([[0, 35378, 6, 8999, 2, 1, 1, 1]])
    mask = (ids != 1).long()
    with torch.inference_mode(), single_thread():
        ref_ul = official.universal_learner(input_ids=ids, attention_mask=mask).last_hidden_state
        from lusifer_rag.embedder.lusifer.attention import PaddedAttention

        ours_ul = model.ul(ids, xlmr_positions(ids, None, 1), PaddedAttention(mask.bool()))
        assert (ours_ul - ref_ul)[mask.bool()].abs().max() <= 1e-5
        h = torch.randn(1, 8, 64)
        ref_llm = official.encoder.base_model.model.model(inputs_embeds=h, attention_mask=torch.zeros(1, 1, 8, 8),
                                                          position_ids=torch.arange(8)[None]).last_hidden_state
        ours_llm = model.llm(h, torch.arange(8)[None], PaddedAttention(torch.ones(1, 8, dtype=torch.bool)))
        assert (ours_llm - ref_llm).abs().max() <= 1e-5


def test_lm_head_and_embed_tokens_are_dropped():
    names = {n for n, _ in cached_embedder("mistral", 0).model.named_parameters()}
    assert not any("lm_head" in n or "embed_tokens" in n or "pooler" in n for n in names)
    assert all(not p.requires_grad for p in cached_embedder("mistral", 0).model.parameters())
    assert not cached_embedder("mistral", 0).model.training


def test_fingerprint_stable_and_weight_sensitive(tmp_path):
    a = cached_embedder("mistral", 0)
    b = load_embedder(f"lusifer:{_copy(tmp_path)}")  # a second load, from a copied directory
    assert a.fingerprint == b.fingerprint and a.fingerprint.startswith("lusifer-")

    def retrain(s):  # every value of the largest tensor changes, as after any real training step
        key = "universal_learner.base_model.model.embeddings.word_embeddings.weight"
        s[key] = s[key] * 1.01

    (tmp_path / "x").mkdir()
    c = load_embedder(f"lusifer:{_copy(tmp_path / 'x', edit=retrain)}")
    assert c.fingerprint != a.fingerprint
    assert cached_embedder("mistral", 4).fingerprint != a.fingerprint


def test_templates_exactly_official():
    emb = cached_embedder("mistral", 0)
    assert emb.format_texts(["hi"], "query", None) == [
        "<s>Given a question, retrieve passages that answer the question..\nhi</s>"]
    assert emb.format_texts(["hi"], "document", None) == [
        "<s>Given a question, retrieve passages that answer the question.. Candidate:\nhi</s>"]
    assert emb.format_texts(["{x}"], "query", "") == ["<s>.\n{x}</s>"]
    ids = emb.tokenize(emb.format_texts(["", "a </s> b"], "query", ""))
    assert ids[0] == [0, 6, 5, 6, 2]  # '\n' is a lone '▁' (6), literal <s>/</s> are 0/2
    assert ids[1].count(2) == 2  # a literal </s> in the text becomes the special token, like official
    assert emb.dim == 64 and emb.max_tokens == 512 and emb.pad_id == 1 and emb.pad_to_multiple_of == 8
    assert emb.template_overhead("query", "") == 5
