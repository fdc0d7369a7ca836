"""``lusifer-rag serve``: the web app (search, cited answers, uploads) on one collection."""

from __future__ import annotations

import argparse
import sys

from lusifer_rag.cli import command, store_args
from lusifer_rag.settings import Settings


def _serve_args(p: argparse.ArgumentParser) -> None:
    store_args(p)
    p.add_argument("--embedder", help="embedder spec for a new collection (an existing one keeps its own)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or cuda:N,M")
    p.add_argument("--dtype", help="float32, bfloat16 or float16")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 to serve the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--ingest-sample", action="store_true",
                   help="first ingest the bundled multilingual sample corpus (unchanged files are skipped)")
    p.add_argument("--max-upload-mb", type=int, help="largest file accepted (default 50, or LUSIFER_RAG_MAX_UPLOAD_MB)")


@command("serve", "serve the web app: search, cited answers and uploads in the browser", _serve_args)
def serve_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from lusifer_rag.errors import ConfigError
    from lusifer_rag.runtime import open_store_from

    from .access import LOCAL, LOOPBACK
    from .service import AppOptions
    from .workspace import SAMPLE_COLLECTION, Workspace
    from .ui import build_app, launch

    options = AppOptions.from_settings(settings)
    options.host = args.host
    if args.max_upload_mb is not None:
        if args.max_upload_mb <= 0:
            raise ConfigError(f"--max-upload-mb must be positive; got {args.max_upload_mb}")
        options.max_upload_mb = args.max_upload_mb
    if args.host not in LOOPBACK and not options.auth:
        level = options.anonymous_access or "read"
        print(f"warning: serving on {args.host} without a login: anyone who reaches the port gets {level!r} access "
              "(LUSIFER_RAG_ANONYMOUS_ACCESS); set LUSIFER_RAG_AUTH_USER and LUSIFER_RAG_AUTH_PASSWORD to require one",
              file=sys.stderr)
    with open_store_from(settings) as store:
        embedder = None
        if args.embedder:  # for a new collection; an existing one keeps its own
            from lusifer_rag.runtime import get_embedder

            embedder = get_embedder(settings, args.embedder)
        workspace = Workspace(settings, store, embedder=embedder, options=options)
        service = workspace.service()
        problem = service.problem()
        if problem:  # the app still starts and shows it; the CLI says it too
            print(f"warning: {problem}", file=sys.stderr)
        if args.ingest_sample and not problem:
            print(f"lusifer-rag: ingesting the sample corpus into collection {SAMPLE_COLLECTION!r} "
                  "(unchanged files are skipped)", file=sys.stderr)
            report = workspace.ingest_sample(
                lambda u: print(f"[{u.done}/{u.total}] {u.result.status} {u.result.source}", file=sys.stderr),
                principal=LOCAL)
            print(report.summary(), file=sys.stderr)
        demo = build_app(workspace)
        print(f"lusifer-rag: collections {', '.join(workspace.collection_names())} in {settings.store_location}, "
              f"embedder {service.embedder.spec}; open http://{args.host}:{args.port}/", file=sys.stderr)
        launch(demo, workspace, host=args.host, port=args.port, block=True)
    return 0
