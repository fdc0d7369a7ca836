"""A tiny deterministic embedder for tests of the evaluation logic *above* the Embedder interface.

Bag of hashed words through a fixed random table: texts sharing words get similar vectors. It implements the
real :class:`lusifer_rag.embedder.base.Embedder` ABC (batching, normalisation and templates are the real code).
"""

import hashlib, re, torch
from lusifer_rag.embedder.base import Embedder

class _WordTokenizer:
    """Words -> stable hashed ids (a real tokenizer interface: __call__ returning input_ids)."""
    def __init__(self, vocab): self.vocab = vocab
    def __call__(self, texts, truncation=True, max_length=None, **kw):
        ids = []
        for t in texts:
            row = [1 + int(hashlib.md5(w.encode()).hexdigest()[:8], 16) % (self.vocab - 1) for w in re.findall(r"\w+", t.lower())] or [0]
            ids.append(row[:max_length] if truncation and max_length else row)
        return {"input_ids": ids}

class BagOfWordsEmbedder(Embedder):
    kind = "bow"
    def __init__(self, dim=32, vocab=4096, prefixes=("query: ", "passage: "), instruction_template=None):
        self.dim, self.max_tokens, self.pad_id, self.vocab = dim, 512, 0, vocab
        self.tokenizer = _WordTokenizer(vocab)
        g = torch.Generator().manual_seed(0)
        self.table = torch.randn(vocab, dim, generator=g)
        self.table[0] = 0
        self.prefixes, self.instruction_template = prefixes, instruction_template
        self.fingerprint, self.spec = "bow-test", "bow"
    def format_texts(self, texts, role, instruction):
        if self.instruction_template is None:
            return super().format_texts(texts, role, instruction)
        head = self.instruction_template.format(instruction=instruction or "default") if role == "query" else ""
        return [head + t for t in texts]
    def embed_batch(self, batch, replica=None):
        ids, mask = batch.padded()  # (b, L)
        return (self.table[ids] * mask[..., None]).sum(1) + 1e-6  # (b, dim)
