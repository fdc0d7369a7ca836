"""``lusifer-rag search`` and ``lusifer-rag ask``."""

from __future__ import annotations

import argparse
import json
import sys

from lusifer_rag.cli import command, server_args, store_args
from lusifer_rag.settings import Settings


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("query")
    store_args(p)
    server_args(p)
    p.add_argument("--k", type=int, default=10, help="results to return")
    p.add_argument("--lang", action="append", help="only documents in this language (repeatable)")
    p.add_argument("--source", action="append", help="only this source (repeatable)")
    p.add_argument("--mode", choices=["dense", "hybrid", "sparse"], help="retrieval mode (default: settings)")
    p.add_argument("--mmr", action="store_true", help="diversify results (maximal marginal relevance)")
    p.add_argument("--min-score", type=float, help="drop results scoring below this")
    p.add_argument("--debias", choices=["off", "offsets", "reference", "centre", "auto", "on"],
                   help="language-bias correction: off (default), reference (finds more across languages), offsets, "
                        "centre (parallel collections); auto/on: old names")
    p.add_argument("--same-language-pivot", action="store_true", default=None,
                   help="parallel collection (translated editions): expand the query with its best same-language "
                        "match (default: settings)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--device", help="cpu, cuda, cuda:N")


def make_retriever(settings: Settings, store):
    from lusifer_rag.runtime import collection_embedder

    from .retrieval import Retriever

    emb = collection_embedder(store, settings.collection, settings)
    return Retriever.from_settings(store, settings.collection, emb, settings)


@command("search", "search a collection in any language", _search_args)
def search_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from lusifer_rag.frontdoor import remote_search, server_for
    from lusifer_rag.runtime import open_store_from

    from .retrieval import SearchFilters

    client = server_for(args, settings, "search")
    if client is not None:
        with client:
            return print_hits(remote_search(client, args, settings), args.json)
    with open_store_from(settings) as store:
        retriever = make_retriever(settings, store)
        hits = retriever.search(args.query, k=args.k, filters=SearchFilters(languages=args.lang, sources=args.source),
                                mode=args.mode, score_threshold=args.min_score, mmr=args.mmr, debias=args.debias)
    return print_hits(hits, args.json)


def print_hits(hits, as_json: bool) -> int:
    """A search's hits (RetrievedChunks) as the command prints them: ranked lines, or JSON."""
    if as_json:
        print(json.dumps([{"rank": i + 1, "score": round(h.score, 6), "source": h.source, "page": h.page,
                           "page_end": h.page_end, "language": h.language, "chunk_id": h.id, "text": h.text}
                          for i, h in enumerate(hits)], ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("no results")
    for i, h in enumerate(hits, 1):
        page = f" p.{h.page}" + (f"-{h.page_end}" if h.page_end and h.page_end != h.page else "") if h.page else ""
        text = " ".join(h.text.split())
        print(f"{i:>2}. {h.score:.3f}  [{h.language}] {h.source}{page}\n    {text[:300]}")
    return 0


def _ask_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("question")
    store_args(p)
    server_args(p)
    p.add_argument("--k", type=int, help="passages to retrieve (default: settings top_k)")
    p.add_argument("--answer-lang", help="answer language code (default: the question's language)")
    p.add_argument("--lang", action="append", help="only documents in this language (repeatable)")
    p.add_argument("--llm", dest="llm_backend", help="openai, transformers or extractive")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--device", help="cpu, cuda, cuda:N")


def make_answerer(settings: Settings, embedder):
    from .answer import Answerer
    from .llm import load_llm

    backend = settings.llm_backend or ("openai" if settings.llm_base_url else "extractive")
    options = {"embedder": embedder} if backend == "extractive" else {
        "openai": {"base_url": settings.llm_base_url, "model": settings.llm_model, "api_key": settings.llm_api_key,
                   "timeout": settings.llm_timeout, "max_tokens": settings.llm_max_tokens},
        "transformers": {"model_dir": settings.llm_model, "max_new_tokens": settings.llm_max_tokens},
    }.get(backend, {})
    return Answerer(load_llm(backend, **options), embedder=embedder)


@command("ask", "answer a question from a collection, with citations, in the question's language", _ask_args)
def ask_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from lusifer_rag.frontdoor import remote_ask, server_for
    from lusifer_rag.runtime import open_store_from

    from .retrieval import SearchFilters

    client = server_for(args, settings, "ask")
    if client is not None:
        with client:
            answer = remote_ask(client, args, settings)
        if args.json:
            print(json.dumps(answer, ensure_ascii=False, indent=2))
            return 0
        sys.stdout.write(answer.get("answer", ""))
        print()
        print_sources([(c.get("n"), c.get("source", ""), c.get("page"), c.get("language", ""))
                       for c in answer.get("citations") or []])
        return 0
    if args.llm_backend:
        settings.llm_backend = args.llm_backend
    with open_store_from(settings) as store:
        retriever = make_retriever(settings, store)
        contexts = retriever.search(args.question, k=args.k or settings.top_k, filters=SearchFilters(languages=args.lang))
        answerer = make_answerer(settings, retriever.embedder)
        if args.json:
            answer = answerer.answer(args.question, contexts, answer_language=args.answer_lang)
            print(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
            return 0
        answer = None
        for part in answerer.stream(args.question, contexts, answer_language=args.answer_lang):
            if isinstance(part, str):
                sys.stdout.write(part)
                sys.stdout.flush()
            else:
                answer = part
    print()
    if answer is not None:
        print_sources([(c.number, c.chunk.source, c.chunk.page, c.chunk.language) for c in answer.citations])
    return 0


def print_sources(citations: list[tuple]) -> None:
    """An answer's sources: (number, source, page, language) each."""
    if citations:
        print("\nSources:")
        for number, source, page, language in citations:
            where = f", p.{page}" if page else ""
            print(f"  [{number}] {source}{where} ({language})")
