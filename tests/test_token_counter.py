"""TokenCounter (what ingest worker processes count with) == Embedder.count_tokens, for every backend."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from lusifer_reference import TEXTS, cached_embedder

ROOT = Path(__file__).resolve().parents[1]


def _texts(udhr) -> list[str]:
    return [*TEXTS, "", " ", "a</s>b <s> </s>", "Kila mtu ana haki ya elimu.", "教育を受ける権利。" * 40,
            "शिक्षा का अधिकार।" * 30, "لكل شخص الحق في التعلم؟", udhr("te")[0], udhr("am")[2], "x" * 3000,
            " ".join(udhr("en"))]  # the last is far over 512 tokens: counts are taken before truncation


@pytest.mark.parametrize("which", ["e5", "tiny-hf", "lusifer-mistral", "lusifer-mt5"])
def test_counter_equals_count_tokens_and_survives_pickling(which, e5, tiny_hf_embedder, udhr):
    emb = {"e5": lambda: e5, "tiny-hf": lambda: tiny_hf_embedder,
           "lusifer-mistral": lambda: cached_embedder("mistral", 4),
           "lusifer-mt5": lambda: cached_embedder("mistral", 0, ul="mt5")}[which]()
    texts = _texts(udhr)
    want = emb.count_tokens(texts, "document")
    counter = emb.token_counter("document")
    assert counter(texts) == want
    assert max(want) > emb.max_tokens
    shipped = pickle.loads(pickle.dumps(counter))
    assert shipped._tokenizer is None  # only the JSON travels; the Rust tokenizer is rebuilt where it lands
    assert shipped(texts) == want
    assert counter([]) == []
    # queries have their own template
    assert emb.token_counter("query")(texts[:5]) == emb.count_tokens(texts[:5], "query")


def test_a_worker_counts_without_importing_torch_or_transformers(e5, tmp_path):
    counter_file = tmp_path / "counter.pkl"
    counter_file.write_bytes(pickle.dumps(e5.token_counter("document")))
    code = ("import pickle, sys; c = pickle.load(open(sys.argv[1], 'rb')); print(c(['Habari ya asubuhi'])[0]); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(counter_file)], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(e5.count_tokens(["Habari ya asubuhi"])[0]), "False", "False"]
