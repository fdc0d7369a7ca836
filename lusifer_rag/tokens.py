"""Counting an embedder's input tokens without the embedder: for chunking in worker processes.

A worker that unpickled the embedder itself would import torch and transformers and rebuild the Python
tokenizer (~4 s per worker); a :class:`TokenCounter` carries the Rust tokenizer's JSON and the role's template
and imports only ``tokenizers``. ``Embedder.token_counter()`` builds one; tests hold it equal to
``Embedder.count_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TokenCounter:
    """``counter(texts) -> [tokens of head + text + tail]``, special tokens added as the embedder adds them."""

    def __init__(self, tokenizer_json: str, head: str, tail: str, add_special_tokens: bool):
        self.tokenizer_json, self.head, self.tail = tokenizer_json, head, tail
        self.add_special_tokens = add_special_tokens
        self._tokenizer: Any = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokenizer": None}  # the Rust object is rebuilt from its JSON where it lands

    def _get(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(self.tokenizer_json)
            tok.no_truncation()  # counts are taken before truncation
            tok.no_padding()
            self._tokenizer = tok
        return self._tokenizer

    def __call__(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self._get().encode_batch([self.head + t + self.tail for t in texts],
                                       add_special_tokens=self.add_special_tokens)
        return [len(e.ids) for e in enc]
