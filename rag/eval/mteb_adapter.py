"""Any of our embedders as an ``mteb`` (2.x) model, with LUSIFER's task instructions.

    import mteb
    from lusifer_rag.embedder import load_embedder
    from lusifer_rag.rag.eval.mteb_adapter import MtebModel
    model = MtebModel(load_embedder("lusifer:/models/lusifer"))
    mteb.evaluate(model, mteb.get_tasks(tasks=["SciFact", "BelebeleRetrieval"]))   # needs internet for the data

mteb 2.x calls ``encode(dataloader, *, task_metadata, hf_split, hf_subset, prompt_type)`` where each batch is
a dict whose ``"text"`` holds the strings (a corpus document is already "title text"). As the official
LUSIFER evaluation does (mteb 1.14): retrieval/reranking queries use the query template with the task's
instruction, corpus documents the document template with the *same* instruction; every other task type
(STS, classification, clustering, pair classification) goes through the query template.
Instructions follow docs/lusifer_spec.md §3 (table :data:`INSTRUCTIONS`); classification tasks use the
task's own prompt from mteb's metadata. Embedders that take no instruction (e5-small: fixed
"query: "/"passage: " prefixes) get only their role. mteb is imported lazily: nothing here needs it
until :attr:`MtebModel.mteb_model_meta` or :func:`run_mteb` is used.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import numpy as np

from lusifer_rag.errors import ConfigError, EmbedderError

QA = "Given a question, retrieve passages that answer the question."
CLAIM = "Given a claim, retrieve documents that support or refute the claim."
SIMILAR = "Retrieve semantically similar text."
NLI = "Given a premise, retrieve a hypothesis that is entailed by the premise."
CLUSTER = "Identify the category of the following passages."
CLASSIFY = "Classify the given text."  # fallback when a classification task carries no prompt of its own

#: the instruction table of the official evaluation (lusifer_spec.md §3)
INSTRUCTIONS = {"qa": QA, "claim": CLAIM, "similarity": SIMILAR, "nli": NLI, "clustering": CLUSTER}
_CLAIM_TASKS = {"arguana", "climatefever", "fever", "scifact", "treccovid"}
_SIMILAR_TASKS = {"quoraretrieval", "quora", "summeval"}
_NLI_TASKS = {"xnli", "xnliv2", "rte3", "farstail", "indonli", "arentail", "ocnli"}
_SIMILAR_TYPES = {"STS", "PairClassification", "Summarization", "BitextMining"}
_QA_TYPES = {"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"}
_CLASSIFY_TYPES = {"Classification", "MultilabelClassification"}


def _base_name(name: str) -> str:
    """'ArguAna-PL' / 'SciFact.v2' / 'FEVERHardNegatives' -> 'arguana' / 'scifact' / 'fever'."""
    base = re.split(r"[-.]", name, maxsplit=1)[0]
    return base.removesuffix("HardNegatives").lower()


def instruction_for(task_name: str, task_type: str, task_prompt: Any = None, prompt_type: str | None = None) -> str:
    """The instruction LUSIFER was evaluated with for this task."""
    base = _base_name(task_name)
    if base in _CLAIM_TASKS:
        return CLAIM
    if base.startswith("cqadupstack") or base in _SIMILAR_TASKS or "dupquestions" in base:
        return SIMILAR
    if base in _NLI_TASKS:
        return NLI
    if task_type in _QA_TYPES:
        return QA
    if task_type in _SIMILAR_TYPES:
        return SIMILAR
    if task_type == "Clustering":
        return CLUSTER
    if task_type in _CLASSIFY_TYPES:
        if isinstance(task_prompt, Mapping):
            task_prompt = task_prompt.get(prompt_type or "query") or task_prompt.get("query")
        return task_prompt if isinstance(task_prompt, str) and task_prompt.strip() else CLASSIFY
    return SIMILAR


def _value(x: Any) -> str | None:
    """PromptType enum / str / None -> 'query' | 'document' | None."""
    if x is None:
        return None
    v = getattr(x, "value", x)
    return {"passage": "document"}.get(str(v), str(v))


class MtebModel:
    """mteb ``EncoderProtocol`` over an :class:`lusifer_rag.embedder.base.Embedder`."""

    def __init__(self, embedder: Any, instructions: Mapping[str, str] | None = None, name: str | None = None,
                 use_instructions: bool | None = None) -> None:
        """``instructions``: per-task overrides {task name: instruction}. ``use_instructions``: None = detect
        whether the embedder accepts an instruction (LUSIFER, hf with a template) or not (e5-small)."""
        self.embedder = embedder
        self.instructions = dict(instructions or {})
        self.name = name or f"lusifer-rag/{re.sub(r'[^A-Za-z0-9._-]+', '_', getattr(embedder, 'spec', '') or 'embedder')}"
        self.use_instructions = self._accepts_instructions() if use_instructions is None else use_instructions
        #: (task, prompt type, instruction or None, number of texts) of every encode call, for inspection
        self.calls: list[tuple[str, str | None, str | None, int]] = []

    @classmethod
    def from_spec(cls, spec: str, **load_options: Any) -> "MtebModel":
        from lusifer_rag.embedder import load_embedder

        return cls(load_embedder(spec, **load_options))

    def _accepts_instructions(self) -> bool:
        try:
            self.embedder.format_texts(["x"], "query", SIMILAR)
        except EmbedderError:
            return False
        return True

    # ---- the protocol ------------------------------------------------------------------------------
    def instruction(self, task_metadata: Any, prompt_type: Any = None) -> str | None:
        name = getattr(task_metadata, "name", "") or ""
        if name in self.instructions:
            return self.instructions[name]
        if not self.use_instructions:
            return None
        return instruction_for(name, str(getattr(task_metadata, "type", "") or ""),
                               getattr(task_metadata, "prompt", None), _value(prompt_type))

    def encode(self, inputs: Iterable[Mapping[str, Any]], *, task_metadata: Any, hf_split: str = "",
               hf_subset: str = "", prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        """(n, dim) float32, L2-normalised; documents (prompt_type "document") with the document template."""
        texts: list[str] = []
        for batch in inputs:
            if "text" not in batch:
                raise EmbedderError(f"mteb batch without a 'text' column (columns: {sorted(batch)}); "
                                    "only text tasks are supported")
            texts.extend(str(t) for t in batch["text"])
        role = "document" if _value(prompt_type) == "document" else "query"
        instruction = self.instruction(task_metadata, prompt_type)
        self.calls.append((getattr(task_metadata, "name", ""), role if prompt_type is not None else None, instruction, len(texts)))
        embed = self.embedder.embed_documents if role == "document" else self.embedder.embed_queries
        return embed(texts, instruction=instruction)

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        import torch

        a = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings1, dtype=np.float32)).reshape(-1, self.embedder.dim), dim=-1)
        b = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings2, dtype=np.float32)).reshape(-1, self.embedder.dim), dim=-1)
        return a @ b.T  # (n1, n2)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Any:
        import torch

        a = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings1, dtype=np.float32)).reshape(-1, self.embedder.dim), dim=-1)
        b = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings2, dtype=np.float32)).reshape(-1, self.embedder.dim), dim=-1)
        return (a * b).sum(-1)  # (n,)

    @property
    def mteb_model_meta(self) -> Any:
        try:
            from mteb.models.model_meta import ModelMeta
        except ImportError:
            raise ConfigError("mteb is not installed: pip install mteb") from None
        fp = getattr(self.embedder, "fingerprint", None)
        return ModelMeta.create_empty(overwrites={
            "name": self.name, "revision": fp[:12] if fp else None, "embed_dim": self.embedder.dim,
            "max_tokens": getattr(self.embedder, "max_tokens", None), "similarity_fn_name": "cosine",
            "use_instructions": self.use_instructions, "framework": ["PyTorch"],
        })


def run_mteb(model: MtebModel, tasks: Iterable[Any], **evaluate_kwargs: Any) -> Any:
    """``mteb.evaluate(model, tasks)``; ``tasks``: task names or mteb task objects."""
    try:
        import mteb
    except ImportError:
        raise ConfigError("mteb is not installed: pip install mteb") from None
    tasks = list(tasks)
    names = [t for t in tasks if isinstance(t, str)]
    objs = [t for t in tasks if not isinstance(t, str)] + (list(mteb.get_tasks(tasks=names)) if names else [])
    return mteb.evaluate(model, objs, **evaluate_kwargs)
