"""Training data: JSONL on local disk, indexed once (every record validated, its byte offset kept), read lazily.

Stage 1 (align) records, any of:
  {"text": ...}                                   reconstruction
  {"instruction": ..., "input": ..., "target": ...}   completion with a given instruction
  {"query": ..., "positive": str | [str, ...]}    the official retrieval-set mix: query→positive (30%),
                                                  reconstruct the positive (28%), positive→question (42%)
Stage 2 (finetune) records:
  {"query": ..., "positive": str | [...], "negative": [...], "dataset"?: str, "cluster"?: int|str, "instruction"?: str}

A bad record fails at indexing with the file and line. Batches are planned per epoch from the seed alone
(``plan(epoch)``), so a resumed run reads exactly what an uninterrupted one would.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lusifer_rag.errors import ConfigError

from .config import DataConfig


class DataError(ConfigError):
    """A training record is malformed (the message names the file and the line)."""


@dataclass(frozen=True)
class RecordRef:
    file: int
    offset: int
    dataset: str
    cluster: str


class JsonlIndex:
    """Every record of some JSONL files: validated, located by (file, byte offset), read on demand."""

    def __init__(self, files: list[str], check, max_per_dataset: int | None = None):
        if not files:
            raise ConfigError("no training data: give data.train (JSONL files)")
        self.files = [Path(f) for f in files]
        self.refs: list[RecordRef] = []
        per_dataset: dict[str, int] = {}
        for fi, path in enumerate(self.files):
            if not path.is_file():
                raise DataError(f"training data {path}: no such file")
            with open(path, "rb") as f:
                offset = 0
                for lineno, raw in enumerate(f, 1):
                    start, offset = offset, offset + len(raw)
                    if not raw.strip():
                        continue
                    try:
                        rec = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError) as e:
                        raise DataError(f"{path}:{lineno}: not a JSON object ({e})") from None
                    problem = check(rec) if isinstance(rec, dict) else f"expected a JSON object, got {type(rec).__name__}"
                    if problem:
                        raise DataError(f"{path}:{lineno}: {problem}")
                    dataset = str(rec.get("dataset") or path.stem)
                    if max_per_dataset is not None and per_dataset.get(dataset, 0) >= max_per_dataset:
                        continue
                    per_dataset[dataset] = per_dataset.get(dataset, 0) + 1
                    self.refs.append(RecordRef(fi, start, dataset, str(rec.get("cluster", ""))))
        if not self.refs:
            raise DataError(f"no records in {[str(f) for f in self.files]}")
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.refs)

    def read(self, i: int) -> dict[str, Any]:
        ref = self.refs[i]
        f = self._handles.get(ref.file)
        if f is None:
            f = self._handles[ref.file] = open(self.files[ref.file], "rb")
        f.seek(ref.offset)
        return json.loads(f.readline())

    def __getstate__(self):  # picklable (no open files)
        return {**self.__dict__, "_handles": {}}


def _texts(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _nonempty(rec: dict, key: str) -> str | None:
    v = rec.get(key)
    if not isinstance(v, str) or not v.strip():
        return f"{key!r} must be a non-empty string"
    return None


def check_align(rec: dict) -> str | None:
    if "text" in rec:
        return _nonempty(rec, "text")
    if "target" in rec:
        return _nonempty(rec, "input") or _nonempty(rec, "target") or (
            None if isinstance(rec.get("instruction", ""), str) else "'instruction' must be a string")
    if "query" in rec:
        pos = _texts(rec.get("positive"))
        return _nonempty(rec, "query") or (None if pos and all(p.strip() for p in pos)
                                           else "'positive' must be a non-empty string or list of strings")
    return "a stage-1 record needs 'text', or 'input' and 'target', or 'query' and 'positive'"


def check_pairs(rec: dict, negatives_needed: bool) -> str | None:
    problem = _nonempty(rec, "query")
    if problem:
        return problem
    pos = _texts(rec.get("positive"))
    if not pos or not all(p.strip() for p in pos):
        return "'positive' must be a non-empty string or list of non-empty strings"
    neg = rec.get("negative", [])
    neg = _texts(neg) if neg != [] else []
    if neg is None:
        return "'negative' must be a list of strings"
    if negatives_needed and not neg:
        return "no 'negative' texts (mine hard negatives, or set data.negatives=0 for in-batch negatives only)"
    if "instruction" in rec and not isinstance(rec["instruction"], str):
        return "'instruction' must be a string"
    return None


# ---- stage 1 ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlignExample:
    instruction: str
    source: str  # what the universal learner reads (inside the template with the instruction)
    target: str  # what the target model must produce


class AlignData:
    """Stage-1 examples; one global batch = ``batch`` examples in a seeded order per epoch."""

    def __init__(self, cfg: DataConfig, batch: int, seed: int):
        self.cfg, self.batch, self.seed = cfg, batch, seed
        self.index = JsonlIndex(cfg.train, check_align, cfg.max_records_per_dataset)
        if len(self.index) < batch:
            raise ConfigError(f"{len(self.index)} training records, fewer than one global batch ({batch})")

    def steps_per_epoch(self) -> int:
        return len(self.index) // self.batch

    def plan(self, epoch: int) -> list[list[int]]:
        order = list(range(len(self.index)))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return [order[i:i + self.batch] for i in range(0, self.steps_per_epoch() * self.batch, self.batch)]

    def example(self, i: int, epoch: int) -> AlignExample:
        rec, c = self.index.read(i), self.cfg
        if "text" in rec:
            return AlignExample(c.reconstruction_instruction, rec["text"], "")
        if "target" in rec:
            return AlignExample(rec.get("instruction", ""), rec["input"], rec["target"])
        rng = random.Random(f"{self.seed}:{epoch}:{i}")  # the same draw on a resumed run
        pos = rng.choice(_texts(rec["positive"]))
        u = rng.random()
        if u < c.mix_query_to_positive:
            return AlignExample(rec.get("instruction") or c.retrieval_instruction, rec["query"], pos)
        if u < c.mix_query_to_positive + c.mix_reconstruct_positive:
            return AlignExample(c.reconstruction_instruction, pos, "")
        return AlignExample(c.question_instruction, pos, rec["query"])


# ---- stage 2 ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairExample:
    query: str
    positives: list[str]
    negatives: list[str]
    instruction: str
    dataset: str


class PairData:
    """Stage-2 examples; each global batch comes from one dataset, in cluster order when asked (so in-batch
    negatives share a topic); batch order across datasets is shuffled per epoch."""

    def __init__(self, cfg: DataConfig, batch: int, seed: int):
        self.cfg, self.batch, self.seed = cfg, batch, seed
        self.index = JsonlIndex(cfg.train, lambda r: check_pairs(r, cfg.negatives > 0), cfg.max_records_per_dataset)
        self.by_dataset: dict[str, list[int]] = {}
        for i, ref in enumerate(self.index.refs):
            self.by_dataset.setdefault(ref.dataset, []).append(i)
        small = {d: len(ix) for d, ix in self.by_dataset.items() if len(ix) < batch}
        if len(small) == len(self.by_dataset):
            raise ConfigError(f"every dataset has fewer records than one global batch ({batch}): {small}")

    def steps_per_epoch(self) -> int:
        return sum(len(ix) // self.batch for ix in self.by_dataset.values())

    def plan(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}:{epoch}")
        batches = []
        for name in sorted(self.by_dataset):
            ids = list(self.by_dataset[name])
            rng.shuffle(ids)
            if self.cfg.cluster_order:
                clusters = sorted({self.index.refs[i].cluster for i in ids})
                rank = {c: k for k, c in enumerate(rng.sample(clusters, len(clusters)))}
                ids.sort(key=lambda i: rank[self.index.refs[i].cluster])  # stable: shuffled within a cluster
            batches += [ids[k:k + self.batch] for k in range(0, len(ids) // self.batch * self.batch, self.batch)]
        rng.shuffle(batches)
        return batches

    def example(self, i: int, epoch: int) -> PairExample:
        rec, c = self.index.read(i), self.cfg
        rng = random.Random(f"{self.seed}:{epoch}:{i}")
        pos, neg = _texts(rec["positive"]), _texts(rec.get("negative") or []) or []
        return PairExample(rec["query"], _pick(pos, c.positives, rng), _pick(neg, c.negatives, rng) if c.negatives else [],
                           rec.get("instruction") or c.retrieval_instruction, self.index.refs[i].dataset)


def _pick(items: list[str], n: int, rng: random.Random) -> list[str]:
    """n of ``items``: a random sample, cycled when there are fewer (a fixed count keeps the label layout)."""
    chosen = rng.sample(items, min(n, len(items)))
    while len(chosen) < n:
        chosen.append(chosen[len(chosen) % len(items)])
    return chosen


def make_data(stage: str, cfg: DataConfig, batch: int, seed: int) -> AlignData | PairData:
    return AlignData(cfg, batch, seed) if stage == "align" else PairData(cfg, batch, seed)


def iterate(data: AlignData | PairData, start_epoch: int, start_batch: int, epochs: int) -> Iterator[tuple[int, int, list[int]]]:
    """(epoch, batch index, record ids) from a resume position on."""
    for epoch in range(start_epoch, epochs):
        plan = data.plan(epoch)
        for b in range(start_batch if epoch == start_epoch else 0, len(plan)):
            yield epoch, b, plan[b]
