"""Follow-up questions in a conversation: does the follow-up's right passage come back in the top 5?

Data: bench/data/conversations.jsonl, two-turn conversations written as users ask (each line: the first question and
its right source/pages, the follow-up as typed, "And how do I undo that with apt?", "Et s'il est orphelin ?", and its
right source/pages; ``contains``: a phrase the right chunk holds, for documents without pages). Documents
(bench/conversation_data.py): the app's sample corpus (UDHR excerpts in 10 languages) and real PDF manuals from
Debian's documentation packages (the Debian FAQ in English, the New Maintainers' Guide in French and in German),
ingested by the app's own path into an embedded store in the cache dir (a rerun embeds nothing). Searches go through
the app's Workspace over every collection, as the chat does.

Each conversation's first question is asked through the app's answer path (the extractive backend, as without a
language model); its answer is the assistant message of the history the follow-up is resolved against. Rows:

- ``single-turn``: the follow-up searched alone (the baseline);
- ``fallback (joined, before)``: the no-LLM fallback as it was (the follow-up, then the earlier questions);
- ``fallback (current)``: ``rag.conversation.resolve`` without a model, as the app runs it now;
- other ``fallback: …`` rows: candidates tried on the tune half (``--candidates``);
- ``LLM rewrite``: measured only with ``--llm SPEC`` (e.g. ``transformers:/path/to/instruct-model``); without one
  the row says it was not measured.

A hit: a chunk of the right source whose pages meet the expected pages (and that holds ``contains`` where given)
among the top 5. Conversations fall in a ``tune`` or ``test`` half by a hash of their id: choices were made on
``tune``; ``--split test`` (the default) reports on the other half, ``--split all`` on both.

    .venv/bin/python bench/conversation.py [--split test|tune|all] [--candidates] [--llm SPEC] [--show-misses]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from collections import defaultdict
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, table, timed  # noqa: E402
import conversation_data as D  # noqa: E402
import xling_data as X  # noqa: E402
from lusifer_rag.app.access import LOCAL

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "conversations.jsonl"
K = 5
#: the fallback before this bench (the follow-up, then the last two questions): the ``before`` row
BEFORE_REV = "8f53566"


def load_conversations() -> list[dict]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        r["split"] = X.split_of(r["id"])
    return rows


def is_hit(chunk, target: dict) -> bool:
    if chunk.source != target["source"]:
        return False
    if target.get("contains") and target["contains"] not in chunk.text:
        return False
    pages = target.get("pages")
    if not pages:
        return True
    first = chunk.page if chunk.page is not None else 0
    last = chunk.page_end if chunk.page_end is not None else first
    return any(first <= p <= last for p in pages)


def module_at(rev: str, path: str, name: str) -> types.ModuleType:
    """``path`` as it was at git revision ``rev``, loaded as a module of the package (relative imports work)."""
    src = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType(f"lusifer_rag.rag._bench_{name}")
    mod.__package__ = "lusifer_rag.rag"
    sys.modules[mod.__name__] = mod
    exec(compile(src, f"{rev}:{path}", "exec"), mod.__dict__)
    return mod


def candidates() -> dict[str, Callable[[str, list[dict]], str]]:
    """Fallback candidates (question, history) -> query, tried on the tune half; what won is in rag/conversation.py."""
    from lusifer_rag.rag import conversation as C

    def previous_question(q, h):
        return C.followup_query(q, h, turns=1)

    def question_twice(q, h):  # the follow-up weighs more in the sparse leg and in the embedding
        return "\n".join([q, q, *[m["content"] for m in h if m["role"] == "user"][-1:]])

    def with_answer(q, h):  # the previous answer's text (its cited passage) after the question
        users = [m["content"] for m in h if m["role"] == "user"][-1:]
        answers = [m["content"] for m in h if m["role"] == "assistant"][-1:]
        return "\n".join([q, *users, *(a[:300] for a in answers)])

    return {"fallback: last question only": previous_question, "fallback: follow-up twice": question_twice,
            "fallback: + previous answer (300 chars)": with_answer}


def collection_of(conv: dict) -> str:
    return "sample" if conv["followup"]["source"].startswith("sample/") else D.MANUALS_COLLECTION


def run(ws, convs: list[dict], rows: dict[str, Callable[[str, list[dict]], str]], all_collections: bool) -> list[dict]:
    """Per conversation: turn 1 through the app's answer path, then each row's query for the follow-up searched, in
    the collection holding the conversation's documents (``all_collections``: in every collection, merged as the
    app merges them). Returns the per-conversation results."""
    out = []
    for c in convs:
        t1 = c["turn1"]
        where = None if all_collections else [collection_of(c)]
        first = ws.ask(t1["question"], collections=where, k=K, principal=LOCAL)
        history = [{"role": "user", "content": t1["question"]}, {"role": "assistant", "content": first.text}]
        res = {"id": c["id"], "language": c["language"], "split": c["split"],
               "turn 1": any(is_hit(x, t1) for x in first.contexts[:K])}
        for label, make_query in rows.items():
            query = make_query(c["followup"]["question"], history)
            hits = ws.search(query, where, k=K, highlight=False, principal=LOCAL)
            res[label] = any(is_hit(h.chunk, c["followup"]) for h in hits)
            res[label + " query"] = query
            res[label + " top"] = [f"{h.chunk.source} p{h.chunk.page}" for h in hits]
        out.append(res)
    return out


def summarize(results: list[dict], labels: list[str]) -> list[dict]:
    by_lang = defaultdict(list)
    for r in results:
        by_lang[r["language"]].append(r)
    rows = []
    for lang, rs in sorted(by_lang.items()) + [("all", results)]:
        row = {"language": lang, "n": len(rs)}
        for label in labels:
            row[label] = f"{sum(r[label] for r in rs) / len(rs):.2f}"
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="test", choices=["tune", "test", "all"])
    ap.add_argument("--candidates", action="store_true", help="also the fallback candidates (the tune half's rows)")
    ap.add_argument("--llm", default=None, help="an LLM spec for the rewrite row, e.g. transformers:/path/to/model")
    ap.add_argument("--embedder", default="e5-small")
    ap.add_argument("--all-collections", action="store_true",
                    help="search every collection at once (merged by the app's rule) instead of the conversation's")
    ap.add_argument("--show-misses", action="store_true", help="print each miss: query and the top 5")
    args = ap.parse_args()
    from lusifer_rag.embedder import load_embedder
    from lusifer_rag.rag.conversation import resolve

    emb = load_embedder(args.embedder, device="cpu")
    convs = [c for c in load_conversations() if args.split == "all" or c["split"] == args.split]
    header(f"conversation: {args.embedder}, split={args.split}, top-{K}",
           conversations=f"{len(convs)} ({', '.join(sorted({c['language'] for c in convs}))})")
    with timed() as t:
        ws, store = D.open_workspace(emb)
    print(f"documents: {', '.join(f'{c}: {store.count(c)} chunks' for c in ws.collection_names())} "
          f"(ingest {t[0]:.1f}s)\n")
    before = module_at(BEFORE_REV, "rag/conversation.py", "conversation_before")
    rows: dict[str, Callable[[str, list[dict]], str]] = {
        "single-turn": lambda q, h: q,
        "fallback (joined, before)": lambda q, h: before.resolve(q, h).query,
        "fallback (current)": lambda q, h: resolve(q, h).query,
    }
    if args.candidates:
        rows.update(candidates())
    llm_note = "LLM rewrite: not measured (no --llm given; no instruction model installs offline here)"
    if args.llm:
        from lusifer_rag.rag.llm import load_llm

        llm = load_llm(args.llm)
        answerer = ws.service().answerer()  # its language detection decides the rewrite's language, as in the app
        rows["LLM rewrite"] = lambda q, h: resolve(q, h, llm=llm, language=answerer.answer_language(q, None)).query
        llm_note = f"LLM rewrite: {args.llm}"
    try:
        with timed() as t:
            results = run(ws, convs, rows, args.all_collections)
    finally:
        store.close()
    labels = ["turn 1", *rows]
    for split in (["tune", "test", "all"] if args.split == "all" else [args.split]):
        table(summarize([r for r in results if split == "all" or r["split"] == split], labels),
              f"{split}: top-{K} hit rate of the follow-up (turn 1: the first question's own hit rate)")
    print(llm_note)
    print(f"({len(convs)} conversations in {t[0]:.1f}s)")
    if args.show_misses:
        for r in results:
            for label in rows:
                if not r[label]:
                    print(f"\nMISS {label} / {r['id']}: {r[label + ' query']!r}\n   top: {r[label + ' top']}")


if __name__ == "__main__":
    main()
