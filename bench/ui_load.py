"""50 concurrent searches through the web app's HTTP API: errors, p50/p95 latency, throughput.

    .venv/bin/python bench/ui_load.py                      # starts its own apps (e5-small, sample corpus, tmp store)
    .venv/bin/python bench/ui_load.py --url http://127.0.0.1:7860/ [--auth user:password]

Without ``--url`` the same load runs against four apps on one store, one after the other, for a before/after in
one run: the previous defaults (every request embeds its query and its hits' sentences alone, 4 searches at a
time), dynamic batching (concurrent requests share forward passes, embedder/queue.py) still embedding the hits'
sentences per search, then sentence vectors stored at ingest (ingest/sentence_vectors.py: a highlight is dot
products) with one-at-a-time embedding and with batching (the new defaults). Apps that embed sentences per search
use a collection ingested without sentence vectors. Each app gets two bursts of different queries, the second with
the passages of the first already in the app's highlight-sentence cache. Latency is what a client sees (submit →
result, queue wait included). The client runs in a process of its own, as real clients never share the server's interpreter lock:
``--client http`` (default) calls Gradio's HTTP API from one asyncio loop; ``--client gradio_client`` runs one
gradio_client thread per search, which takes more CPU than the server does. Exit code 1 if any search failed.

    .venv/bin/python bench/ui_load.py --while-ingesting    # searches while the adversarial corpus is ingested

``--while-ingesting``: a steady load (``--clients`` searches in flight at a time) on an app, quiet, then while it
ingests the adversarial corpus of tests/adversarial.py (three DOCX bombs, 100,000 nested ``<div>``s, one-line
Markdown, a form PDF); search p50/p95 side by side, with the files parsed in this process (``ingest_workers=0``, the
previous default with a CPU embedder) and in a worker process (the default now).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _common import table  # noqa: E402



def queries(n: int) -> list[str]:
    """n distinct real queries: the first clause of UDHR articles in 20 languages (tests/data/udhr), so no
    search is answered from the retriever's query cache."""
    import json
    import re

    texts = []
    for path in sorted((ROOT / "tests" / "data" / "udhr").glob("*.json")):
        articles = json.loads(path.read_text(encoding="utf-8"))["articles"]
        texts += [re.split(r"[.;。,،]", articles[str(a)])[0][:120] for a in range(1, 31)]
    texts = list(dict.fromkeys(t for t in texts if t.strip()))
    step = max(1, len(texts) // n)
    return texts[::step][:n]


@contextlib.contextmanager
def own_app(tmp: str, concurrency: int, batching: bool, sentence_vectors: bool = True,
            ingest_workers: int | None = None):
    """An app on a free port: e5-small, the sample corpus in an embedded store under ``tmp`` (collection ``bench``
    with sentence vectors stored at ingest, ``bench-nosv`` without)."""
    from lusifer_rag.app.access import LOCAL
    from lusifer_rag.app.service import AppOptions
    from lusifer_rag.app.ui import build_app, launch
    from lusifer_rag.app.workspace import Workspace
    from lusifer_rag.runtime import open_store_from
    from lusifer_rag.settings import Settings
    import socket

    settings = Settings.from_env(env={}, store=f"{tmp}/store", data_dir=Path(tmp),
                                 collection="bench" if sentence_vectors else "bench-nosv", embed_queue=batching,
                                 sentence_vectors=sentence_vectors)
    with open_store_from(settings) as store:
        t0 = time.time()
        ws = Workspace(settings, store, options=AppOptions(search_concurrency=concurrency,
                                                           ingest_workers=ingest_workers))
        service = ws.service()
        report = service.ingest_sample(principal=LOCAL)
        print(f"setup: {report.summary()} (with model load: {time.time() - t0:.1f}s)", file=sys.stderr)
        demo = build_app(ws)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = launch(demo, ws, port=port, block=False, quiet=True)
        try:
            yield f"http://127.0.0.1:{port}/", service
        finally:
            server.close()
            demo.close()


async def _search_once(client, url: str, q: str, k: int, highlight: bool) -> tuple[float, str | None]:
    """One search through Gradio's HTTP API: (latency s, error or None)."""
    import json

    t = time.perf_counter()
    try:
        r = await client.post(f"{url}gradio_api/call/search", json={"data": [q, [], [], k, highlight, None]})
        r.raise_for_status()
        event = r.json()["event_id"]
        kind, data = None, None
        async with client.stream("GET", f"{url}gradio_api/call/search/{event}") as resp:
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    data = line[5:].strip()
                    break
        hits = json.loads(data)[0] if kind == "complete" and data else None
        # an empty list is an answer (no passage above the relevance floor), not an error
        err = None if isinstance(hits, list) else f"{kind}: {data!r:.120}"
    except Exception as e:  # counted and shown, the run goes on
        err = f"{type(e).__name__}: {e}"
    return time.perf_counter() - t, err


def steady_load(url: str, clients: int, k: int, seconds: float, stop=None) -> list[tuple[float, str | None]]:
    """``clients`` searches in flight at a time (each client searches again as soon as it has its answer) for
    ``seconds``, or until ``stop`` (a multiprocessing Event) is set: [(latency s, error or None)]."""
    import asyncio

    import httpx

    qs = queries(200)

    async def client(i: int, out: list, t_end: float) -> None:
        async with httpx.AsyncClient(timeout=600) as c:
            n = i
            while time.monotonic() < t_end and not (stop is not None and stop.is_set()):
                out.append(await _search_once(c, url, qs[n % len(qs)], k, True))
                n += clients

    async def main() -> list:
        out: list = []
        async with httpx.AsyncClient(timeout=600) as c:
            await _search_once(c, url, "warm-up", k, True)
        t_end = time.monotonic() + seconds
        await asyncio.gather(*(client(i, out, t_end) for i in range(clients)))
        return out

    return asyncio.run(main())


def _latency_row(results: list[tuple[float, str | None]]) -> dict:
    lat = sorted(r[0] for r in results) or [float("nan")]
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
    return {"searches": len(results), "errors": sum(1 for r in results if r[1]), "p50 s": statistics.median(lat),
            "p95 s": p95, "max s": lat[-1]}


def while_ingesting(clients: int, k: int, quiet_seconds: float, md_words: int) -> list[dict]:
    """Search latency quiet and while the adversarial corpus ingests, parsing in this process and in a worker."""
    import multiprocessing
    import shutil
    import threading

    sys.path.insert(0, str(ROOT / "tests"))
    from adversarial import build_corpus

    from lusifer_rag.app.access import LOCAL

    ctx = multiprocessing.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_corpus(Path(tmp) / "corpus", md_words=md_words)
        for label, workers in (("in this process (workers=0, previous default)", 0),
                               ("worker process (default)", None)):
            with own_app(f"{tmp}/{workers}", 32, True, True, ingest_workers=workers) as (url, service):
                with ctx.Pool(1) as pool:
                    quiet = pool.apply(steady_load, (url, clients, k, quiet_seconds))
                rows.append({"parsing": label, "phase": "quiet", "ingest s": "", **_latency_row(quiet)})
                copies = Path(tmp) / f"copies-{workers}"
                copies.mkdir()
                files = [(p.name, shutil.copyfile(p, copies / p.name)) for p in corpus.values()]
                done: dict = {}

                def ingest():
                    t0 = time.monotonic()
                    done["report"] = service.ingest(files, principal=LOCAL)
                    done["seconds"] = time.monotonic() - t0
                    stop.set()

                with ctx.Manager() as manager:
                    stop = manager.Event()
                    with ctx.Pool(1) as pool:
                        loaded = pool.apply_async(steady_load, (url, clients, k, 3600, stop))
                        time.sleep(2)  # the clients are searching before the first file is read
                        worker = threading.Thread(target=ingest)
                        worker.start()
                        worker.join()
                        results = loaded.get()
                report = done["report"]
                print(f"{label}: {report.summary()}", file=sys.stderr)
                for r in report.by_status("failed"):
                    print(f"  failed: {r.source} [{r.reason}] {r.message[:140]}", file=sys.stderr)
                rows.append({"parsing": label, "phase": "ingesting", "ingest s": f"{done['seconds']:.1f}",
                             **_latency_row(results)})
    return rows


def http_burst(url: str, qs: list[str], k: int, highlight: bool, auth: tuple[str, str] | None) -> tuple[list, float]:
    """The searches at once through Gradio's HTTP API (POST ``/gradio_api/call/search`` → event id, then its
    server-sent events), from one asyncio loop: ([(latency s, error or None)], wall s). A light client, so the
    2 cores measure the server rather than 50 client threads."""
    import asyncio
    import json

    import httpx

    async def one(client, q: str) -> tuple[float, str | None]:
        return await _search_once(client, url, q, k, highlight)

    async def burst() -> tuple[list, float]:
        limits = httpx.Limits(max_connections=len(qs) + 1)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client:
            if auth:
                (await client.post(f"{url}login", data={"username": auth[0], "password": auth[1]})).raise_for_status()
            await one(client, "warm-up")  # the first search estimates language means
            t0 = time.perf_counter()
            results = await asyncio.gather(*(one(client, q) for q in qs))
            return list(results), time.perf_counter() - t0

    return asyncio.run(burst())


def gradio_client_burst(url: str, qs: list[str], k: int, highlight: bool, auth: tuple[str, str] | None) -> tuple[list, float]:
    """The same through gradio_client, one thread per search (heavier: its client threads take more CPU than
    the server on 2 cores)."""
    from gradio_client import Client

    client = Client(url, auth=auth, verbose=False)
    client.predict("warm-up", [], [], k, api_name="/search")

    def one(q: str) -> tuple[float, str | None]:
        t = time.perf_counter()
        try:
            hits = client.submit(q, [], [], k, highlight, api_name="/search").result(timeout=600)
            err = None if isinstance(hits, list) and hits else f"unexpected result {hits!r:.80}"
        except Exception as e:  # counted and shown, the run goes on
            err = f"{type(e).__name__}: {e}"
        return time.perf_counter() - t, err

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(qs)) as pool:
        results = list(pool.map(one, qs))
    return results, time.perf_counter() - t0


CLIENTS = {"http": http_burst, "gradio_client": gradio_client_burst}


def run(url: str, n: int, k: int, auth: tuple[str, str] | None, highlight: bool = True, offset: int = 0,
        client: str = "http") -> dict:
    """n searches at once; ``offset`` picks other queries (a second burst after the first: the app's sentence cache
    then holds the passages the first burst highlighted, as in steady use)."""
    qs = queries(offset + n)[offset:]
    qs = [qs[i % len(qs)] for i in range(n)]
    results, wall = CLIENTS[client](url, qs, k, highlight, auth)
    lat = sorted(r[0] for r in results)
    errors = [r[1] for r in results if r[1]]
    p50 = statistics.median(lat)
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
    print(f"{n} concurrent searches (k={k}, highlight={highlight}): {len(errors)} errors; latency p50 {p50 * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms; wall {wall:.2f}s ({n / wall:.1f} searches/s)",
          file=sys.stderr)
    for e in errors[:5]:
        print("  error:", e, file=sys.stderr)
    return {"errors": len(errors), "p50 s": p50, "p95 s": p95, "max s": lat[-1], "searches/s": n / wall}


def run_client(url: str, n: int, k: int, auth: tuple[str, str] | None, highlight: bool = True, offset: int = 0,
               client: str = "http") -> dict:
    """``run`` in a client process of its own (spawned: no state shared with the server)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run, (url, n, k, auth, highlight, offset, client))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running app (default: start one)")
    p.add_argument("--auth", help="user:password for an app with basic auth")
    p.add_argument("-n", type=int, default=50, help="concurrent searches (default 50)")
    p.add_argument("-k", type=int, default=5, help="results per search")
    p.add_argument("--no-highlight", action="store_true", help="skip the best-sentence highlight")
    p.add_argument("--concurrency", type=int, default=32, help="search concurrency of the new-default apps")
    p.add_argument("--client", choices=sorted(CLIENTS), default="http",
                   help="http: Gradio's HTTP API from one asyncio loop (default); gradio_client: a thread per search")
    p.add_argument("--while-ingesting", action="store_true",
                   help="a steady search load, quiet and while the adversarial corpus ingests (see above)")
    p.add_argument("--clients", type=int, default=4, help="with --while-ingesting: searches in flight at a time")
    p.add_argument("--quiet-seconds", type=float, default=20, help="with --while-ingesting: the quiet phase")
    p.add_argument("--md-words", type=int, default=150_000,
                   help="with --while-ingesting: words of the one-line Markdown file (150,000: about 1 MB)")
    args = p.parse_args()
    if args.while_ingesting:
        from _common import header

        header(f"ui_load --while-ingesting: {args.clients} searches in flight, k={args.k}, e5-small")
        rows = while_ingesting(args.clients, args.k, args.quiet_seconds, args.md_words)
        table(rows)
        return 1 if any(r["errors"] for r in rows) else 0
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.url:
        row = run_client(args.url, args.n, args.k, auth, not args.no_highlight, client=args.client)  # type: ignore[arg-type]
        table([{"app": args.url, **row}])
        return 1 if row["errors"] else 0
    from _common import header

    header(f"ui_load: {args.n} concurrent searches, k={args.k}, highlight={not args.no_highlight}, e5-small, "
           f"client {args.client}")
    rows = []
    configs = [("previous defaults: one at a time, 4 concurrent", "per search", 4, False),
               ("batched, 32 concurrent", "per search", args.concurrency, True),
               ("one at a time, 32 concurrent", "stored", args.concurrency, False),
               ("batched, 32 concurrent (default)", "stored", args.concurrency, True)]
    with tempfile.TemporaryDirectory() as tmp:
        for label, sentences, concurrency, batching in configs:
            with own_app(tmp, concurrency, batching, sentences == "stored") as (url, service):
                row = run_client(url, args.n, args.k, None, not args.no_highlight, client=args.client)
                rows.append({"embedding": label, "sentence vectors": sentences, "burst": "first", **row})
                row = run_client(url, args.n, args.k, None, not args.no_highlight, offset=args.n,
                                 client=args.client)
                rows.append({"embedding": label, "sentence vectors": sentences, "burst": "second", **row})
                if batching:
                    from lusifer_rag.embedder.queue import queue_for

                    st = queue_for(service.embedder).stats
                    print(f"queue: {st.requests} requests in {st.rounds} rounds (largest {st.largest_round}), "
                          f"{st.texts} texts, {st.unique_texts} embedded after de-duplication", file=sys.stderr)
    for r in rows:
        base = next(b for b in rows if b["burst"] == r["burst"])["searches/s"]
        r["throughput vs previous"] = f"{r['searches/s'] / base:.1f}x"
    table(rows)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
