"""The embedder interface. A backend implements ``embed_batch``; everything else is built here once."""

from __future__ import annotations

import copy
import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import torch

from lusifer_rag.errors import EmbedderError

from .batching import TokenBatch, TokenizedTexts, plan_batches

if TYPE_CHECKING:
    from lusifer_rag.tokens import TokenCounter

Role = Literal["query", "document"]


class Embedder(ABC):
    """Turns texts into L2-normalised float32 vectors.

    Subclasses set ``dim``, ``max_tokens``, ``tokenizer``, ``pad_id``, ``fingerprint`` and implement
    :meth:`embed_batch`; they may override :meth:`format_texts` (templates/prefixes) and
    :meth:`tokenize` (special-token handling).
    """

    kind: str = "base"
    spec: str = ""
    dim: int
    max_tokens: int
    tokenizer: Any
    pad_id: int
    fingerprint: str
    #: the tokenizer adds its special tokens (BERT's [CLS]/[SEP], XLM-R's <s>/</s>); False where the template
    #: writes them literally (LUSIFER)
    add_special_tokens: bool = True
    #: pad batches to a multiple of this (the official LUSIFER code pads to 8)
    pad_to_multiple_of: int = 1
    #: True when ``embed_batch`` runs unpadded (packed) kernels: the token budget then ignores padding
    packs_sequences: bool = False
    #: token budget of a batch; None: 16384 on CUDA (fill the GPU), 2048 on CPU (narrow length ranges per batch
    #: pad less, and CPU kernels gain nothing from bigger batches; measured in bench/embed.py)
    max_batch_tokens: int | None = None
    max_batch_size: int = 256
    #: one entry per model replica (one per GPU); ``embed_batch`` receives one of them
    replicas: Sequence[Any] = (None,)
    #: the devices the replicas live on
    devices: Sequence[torch.device] = ()
    #: dynamic batching (embedder/queue.py): calls of at most ``queue_max_texts`` texts from any thread are merged
    #: into shared forward passes; False runs every call on its own, in the caller's thread
    queue_enabled: bool = True
    queue_wait_ms: float = 2.0  # an idle queue waits this long for concurrent requests to join
    queue_limit: int = 4096  # texts waiting; beyond it a call fails with BusyError ("retry")
    queue_max_texts: int = 256  # larger calls run directly (they fill batches on their own)

    # ---- what a backend implements -------------------------------------------------------------
    @abstractmethod
    def embed_batch(self, batch: TokenBatch, replica: Any = None) -> torch.Tensor:
        """Embeddings (b, dim) of one batch, any float dtype, not necessarily normalised."""

    def format_texts(self, texts: Sequence[str], role: Role, instruction: str | None) -> list[str]:
        """The model's input strings (templates, prefixes). Default: the texts unchanged."""
        if instruction:
            raise EmbedderError(f"embedder {self.spec!r} takes no instruction (given {instruction!r})")
        return list(texts)

    def tokenize(self, texts: list[str], truncate: bool = True) -> list[list[int]]:
        """Token ids of already formatted texts (cut to ``max_tokens`` if ``truncate``), one fast-tokenizer call."""
        enc = self.tokenizer(
            texts, add_special_tokens=self.add_special_tokens, truncation=truncate,
            max_length=self.max_tokens if truncate else None, return_attention_mask=False,
            return_token_type_ids=False, verbose=False,
        )
        return enc["input_ids"]

    def token_counter(self, role: Role = "document", instruction: str | None = None) -> "TokenCounter | None":
        """A light, picklable equivalent of ``count_tokens(texts, role, instruction)`` (the Rust tokenizer and
        the template only), or None when the tokenizer has no Rust backend to carry."""
        from lusifer_rag.tokens import TokenCounter

        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        marker = "\uE000text\uE000"  # private-use characters: never inside a template
        head, _, tail = self.format_texts([marker], role, instruction)[0].partition(marker)
        return TokenCounter(backend.to_str(), head, tail, self.add_special_tokens)

    def batch_token_budget(self) -> int:
        if self.max_batch_tokens:
            return int(self.max_batch_tokens)
        return 16384 if any(torch.device(d).type == "cuda" for d in self.devices) else 2048

    # ---- conveniences, built once ----------------------------------------------------------------
    def embed_queries(self, texts: Sequence[str], instruction: str | None = None, *, direct: bool = False) -> np.ndarray:
        """(n, dim) float32, L2-normalised. ``instruction=None``: the model's default retrieval instruction.
        Concurrent calls are batched together (see ``queue_enabled``); ``direct``: run now in this thread (bulk jobs)."""
        return self._embed(texts, "query", instruction, direct)

    def embed_documents(self, texts: Sequence[str], instruction: str | None = None, *, direct: bool = False) -> np.ndarray:
        """(n, dim) float32, L2-normalised, with the model's document template. ``direct`` as in embed_queries."""
        return self._embed(texts, "document", instruction, direct)

    def count_tokens(self, texts: Sequence[str], role: Role = "document", instruction: str | None = None) -> list[int]:
        """Tokens each text takes as model input, template included, before truncation."""
        texts = _check_texts(texts)
        if not texts:
            return []
        formatted = self.format_texts(texts, role, instruction)
        return list(map(len, self.tokenize(formatted, truncate=False)))

    def template_overhead(self, role: Role = "document", instruction: str | None = None) -> int:
        """Tokens the template adds to any text (for chunkers that cap the total)."""
        return self.count_tokens([""], role, instruction)[0]

    def _embed(self, texts: Sequence[str], role: Role, instruction: str | None, direct: bool = False) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self.tokenize(self.format_texts(texts, role, instruction))  # in the caller's thread: errors stay here
        if self.queue_enabled and not direct and len(ids) <= self.queue_max_texts:
            from .queue import queue_for

            return queue_for(self).embed(ids)
        return self.embed_tokens(ids)

    def embed_tokens(self, ids: list[list[int]]) -> np.ndarray:
        """(n, dim) float32 unit vectors of tokenized, formatted texts: sorted by length, cut into batches by the
        token budget, run on the replicas, returned in the given order."""
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = TokenizedTexts.from_lists(ids)
        batches = plan_batches(
            tokens.lengths, self.batch_token_budget(), self.max_batch_size,
            pad_to_multiple_of=self.pad_to_multiple_of, count_padding=not self.packs_sequences,
        )
        out = np.empty((len(ids), self.dim), dtype=np.float32)

        def run(index: np.ndarray, replica: Any) -> None:
            ids, lengths = tokens.gather(index)
            batch = TokenBatch(ids, lengths, self.pad_id, self.pad_to_multiple_of)
            with torch.inference_mode():
                vecs = self.embed_batch(batch, replica).float()
                vecs = torch.nn.functional.normalize(vecs, p=2, dim=-1)
            out[index] = vecs.cpu().numpy()

        replicas = list(self.replicas) or [None]
        if len(replicas) == 1:
            for index in batches:
                run(index, replicas[0])
        else:
            # one thread per replica (GPU), each pulling the next batch: torch releases the GIL in kernels
            lock = threading.Lock()
            queue = iter(batches)

            def worker(replica: Any) -> None:
                while True:
                    with lock:
                        index = next(queue, None)
                    if index is None:
                        return
                    run(index, replica)

            with ThreadPoolExecutor(len(replicas)) as pool:
                for f in [pool.submit(worker, r) for r in replicas]:
                    f.result()
        return out

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind, "dim": self.dim, "max_tokens": self.max_tokens,
                "fingerprint": self.fingerprint}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, dim={self.dim}, fingerprint={self.fingerprint[:12]!r})"


def weightless(embedder) -> Any:
    """A copy of ``embedder`` without its model weights: tokenizer, templates, spec, dim and fingerprint only.
    Enough to chunk (``count_tokens``), build BM25 vectors and check a collection; cheap to ship to workers."""
    def holds_module(v: Any) -> bool:
        if isinstance(v, torch.nn.Module):
            return True
        return isinstance(v, (list, tuple)) and any(holds_module(x) for x in v)

    view = copy.copy(embedder)
    for key, value in vars(embedder).items():
        if holds_module(value):
            setattr(view, key, None)
    view.replicas = ()
    return view


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise EmbedderError("expected a list of texts, got a single string; wrap it in a list")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        raise EmbedderError(
            f"texts must be strings; item {bad[0]} is {type(out[bad[0]]).__name__}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
        )
    return out
