"""BEIR-format datasets: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` (+ our optional ``dataset.json``).

- corpus.jsonl: one JSON object a line, ``{"_id", "title", "text", "language"}`` (title and language optional)
- queries.jsonl: ``{"_id", "text", "language"}``
- qrels/test.tsv: a header line, then ``query-id<TAB>corpus-id<TAB>score``
- dataset.json (optional, ignored by other tools): ``name``, ``description``, ``exclude_query_language``
  (drop documents in the query's own language from its ranking) and ``cell_mode`` (how the language
  matrix is computed, see :data:`lusifer_rag.rag.eval.metrics.CELL_MODES`).

A missing ``language`` reads as "und".
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from lusifer_rag.errors import ConfigError, IngestError

from .metrics import CELL_MODES, Qrels, read_qrels, write_qrels

log = logging.getLogger(__name__)
UNDETERMINED = "und"


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""
    language: str = UNDETERMINED

    @property
    def full_text(self) -> str:
        """What gets embedded: title and text, as BEIR does."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    language: str = UNDETERMINED


@dataclass
class BeirDataset:
    name: str
    corpus: list[Document]
    queries: list[Query]
    qrels: Qrels
    #: drop a query's own-language documents from its ranking (the UDHR "crosslingual" variant)
    exclude_query_language: bool = False
    cell_mode: str = "pooled"
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cell_mode not in CELL_MODES:
            raise ConfigError(f"cell_mode {self.cell_mode!r} is not known; allowed: {sorted(CELL_MODES)}")

    @property
    def doc_language(self) -> dict[str, str]:
        return {d.id: d.language for d in self.corpus}

    @property
    def query_language(self) -> dict[str, str]:
        return {q.id: q.language for q in self.queries}

    @property
    def languages(self) -> list[str]:
        return sorted({d.language for d in self.corpus} | {q.language for q in self.queries})

    def judged_queries(self) -> list[Query]:
        """Queries with at least one relevant document (the only ones evaluated)."""
        return [q for q in self.queries if any(g > 0 for g in self.qrels.get(q.id, {}).values())]

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "documents": len(self.corpus), "queries": len(self.queries),
                "judged_queries": len(self.judged_queries()),
                "qrels": sum(len(v) for v in self.qrels.values()),
                "documents_per_language": dict(sorted(Counter(d.language for d in self.corpus).items())),
                "queries_per_language": dict(sorted(Counter(q.language for q in self.queries).items())),
                "exclude_query_language": self.exclude_query_language, "cell_mode": self.cell_mode}

    def subset(self, languages: Sequence[str] | None = None, max_queries_per_language: int | None = None) -> "BeirDataset":
        """The same benchmark on fewer languages / queries (documents and judgments cut to match)."""
        keep = set(languages) if languages is not None else set(self.languages)
        corpus = [d for d in self.corpus if d.language in keep]
        queries, seen = [], Counter()
        for q in self.queries:
            if q.language in keep and (max_queries_per_language is None or seen[q.language] < max_queries_per_language):
                queries.append(q)
                seen[q.language] += 1
        doc_ids, q_ids = {d.id for d in corpus}, {q.id for q in queries}
        qrels = {q: {d: g for d, g in docs.items() if d in doc_ids} for q, docs in self.qrels.items() if q in q_ids}
        return BeirDataset(self.name, corpus, queries, {q: v for q, v in qrels.items() if v},
                           self.exclude_query_language, self.cell_mode, self.description, dict(self.extra))


# ---- reading ---------------------------------------------------------------------------------------
def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; a BEIR directory holds corpus.jsonl, queries.jsonl and qrels/test.tsv")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise IngestError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise IngestError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
            yield n, obj


def _field(obj: dict, key: str, path: Path, n: int, required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise IngestError(f"{path}:{n}: missing field {key!r} (fields given: {sorted(obj)})")
        return ""
    if isinstance(value, (int, float)) and key == "_id":
        value = str(value)
    if not isinstance(value, str):
        raise IngestError(f"{path}:{n}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def load_beir(path: str | os.PathLike, split: str = "test", name: str | None = None) -> BeirDataset:
    """Read a BEIR directory. Judgments naming unknown queries or documents are dropped (with a warning)."""
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory; give a BEIR directory (corpus.jsonl, queries.jsonl, qrels/{split}.tsv)")
    meta: dict[str, Any] = {}
    meta_path = root / "dataset.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise IngestError(f"{meta_path}:{e.lineno}: not valid JSON ({e.msg})") from None
    corpus, queries = [], []
    for kind, file, out in (("document", "corpus.jsonl", corpus), ("query", "queries.jsonl", queries)):
        p = root / file
        seen: set[str] = set()
        for n, obj in _jsonl(p):
            _id = _field(obj, "_id", p, n, True)
            if not _id:
                raise IngestError(f"{p}:{n}: empty '_id'")
            if _id in seen:
                raise IngestError(f"{p}:{n}: duplicate {kind} id {_id!r}")
            seen.add(_id)
            text = _field(obj, "text", p, n, True)
            lang = _field(obj, "language", p, n, False) or UNDETERMINED
            if kind == "document":
                out.append(Document(_id, text, _field(obj, "title", p, n, False), lang))
            else:
                out.append(Query(_id, text, lang))
    qrels_all = read_qrels(root / "qrels" / f"{split}.tsv")
    doc_ids, q_ids = {d.id for d in corpus}, {q.id for q in queries}
    qrels: Qrels = {}
    dropped = 0
    for q, docs in qrels_all.items():
        kept = {d: g for d, g in docs.items() if d in doc_ids} if q in q_ids else {}
        dropped += len(docs) - len(kept)
        if kept:
            qrels[q] = kept
    if dropped:
        log.warning("%s: dropped %d judgments naming queries or documents that are not in the dataset", root, dropped)
    return BeirDataset(
        name=name or meta.get("name") or root.name, corpus=corpus, queries=queries, qrels=qrels,
        exclude_query_language=bool(meta.get("exclude_query_language", False)),
        cell_mode=meta.get("cell_mode", "pooled"), description=meta.get("description", ""),
        extra={k: v for k, v in meta.items() if k not in {"name", "description", "exclude_query_language", "cell_mode"}}
        | ({"dropped_qrels": dropped} if dropped else {}),
    )


# ---- writing ---------------------------------------------------------------------------------------
def write_beir(dataset: BeirDataset, path: str | os.PathLike, split: str = "test") -> Path:
    """Write ``dataset`` as a BEIR directory (+ dataset.json); returns the directory."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)

    def dump(file: str, rows: list[dict]) -> None:
        (root / file).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    dump("corpus.jsonl", [{"_id": d.id, "title": d.title, "text": d.text, "language": d.language} for d in dataset.corpus])
    dump("queries.jsonl", [{"_id": q.id, "text": q.text, "language": q.language} for q in dataset.queries])
    write_qrels(root / "qrels" / f"{split}.tsv", dataset.qrels)
    meta = {"name": dataset.name, "description": dataset.description,
            "exclude_query_language": dataset.exclude_query_language, "cell_mode": dataset.cell_mode, **dataset.extra}
    (root / "dataset.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return root
