"""docker-compose.yml is validated by the real Compose CLI (no engine needed for `config`); the Dockerfile
installs what the app needs; `lusifer-rag serve` is registered with its options."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def _compose_cmd() -> list[str] | None:
    """`docker compose` (v2 plugin) if present, else a `docker-compose` binary (v1.28+ knows profiles and GPUs)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _config(*profiles: str, env: dict | None = None) -> dict:
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("no Compose CLI: apt-get install -y --no-install-recommends docker-compose (or the docker compose plugin)")
    args = [*cmd, "-f", str(COMPOSE)] + [a for p in profiles for a in ("--profile", p)] + ["config"]
    run = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)


def test_compose_validates_and_wires_the_app_to_qdrant():
    cfg = _config()
    services = cfg["services"]
    assert {"qdrant", "app"} <= set(services)
    assert not services["app"].get("profiles") and not services["qdrant"].get("profiles")
    # the LLM server only with its profile (compose v2 leaves it out here; v1 lists it with its profile)
    assert "llm" not in services or services["llm"]["profiles"] == ["llm"]
    app, qdrant = services["app"], services["qdrant"]
    env = app["environment"]
    assert env["LUSIFER_RAG_STORE"] == "http://qdrant:6333"
    assert env["LUSIFER_RAG_QDRANT_API_KEY"] == qdrant["environment"]["QDRANT__SERVICE__API_KEY"]
    # v2 gives volumes as mappings, v1 as "source:target[:mode]" strings
    targets = [v["target"] if isinstance(v, dict) else str(v).split(":")[1] for v in qdrant["volumes"]]
    assert "/qdrant/storage" in targets
    devices = app["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    # published on the loopback interface only
    for svc in services.values():
        for port in svc.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", port


def test_compose_llm_profile_adds_an_openai_compatible_server():
    cfg = _config("llm")
    llm = cfg["services"]["llm"]
    assert llm["image"].startswith("vllm/vllm-openai")
    assert llm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "--model" in llm["command"]


def test_dockerfile_installs_the_app_and_serves_it():
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert '".[offline]"' in text and "gradio" in text
    assert "ARG TORCH_INDEX" in text  # the GPU variant is a build argument
    assert 'CMD ["lusifer-rag", "serve"' in text
    assert "tesseract-ocr" in text  # OCR in the image too
    for copied in ("lusifer_rag", "embedder", "ingest", "rag", "app", "train"):
        assert f"COPY {copied} ./{copied}" in text and (ROOT / copied).is_dir()


def test_serve_command_is_registered():
    from lusifer_rag.cli import build_parser

    args = build_parser().parse_args(["serve", "--collection", "c1", "--port", "7999", "--ingest-sample"])
    assert (args.command, args.collection, args.port, args.host, args.ingest_sample) == ("serve", "c1", 7999, "127.0.0.1", True)


def test_serve_reports_bad_auth_settings(monkeypatch, capsys):
    from lusifer_rag.cli import main

    monkeypatch.setenv("LUSIFER_RAG_AUTH_USER", "only-user")
    monkeypatch.delenv("LUSIFER_RAG_AUTH_PASSWORD", raising=False)
    assert main(["serve", "--port", "7999"]) == 2
    assert "LUSIFER_RAG_AUTH_PASSWORD" in capsys.readouterr().err


def test_sample_corpus_is_small_and_multiscript():
    docs = ROOT / "app" / "sample_corpus" / "documents"
    files = sorted(docs.iterdir())
    assert sum(f.stat().st_size for f in files) < 1024 * 1024
    assert {f.suffix for f in files} == {".txt", ".md", ".html", ".pdf"}
    assert (docs.parent / "README.md").read_text().count("Licence") + (docs.parent / "README.md").read_text().count("MIT") >= 1


@pytest.mark.slow
def test_serve_ingests_the_sample_and_answers_searches(tmp_path):
    """The README's main command, as a user runs it: `lusifer-rag serve --ingest-sample`."""
    import os
    import sys
    import time

    from app_fixtures import free_port
    from gradio_client import Client

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUSIFER_RAG_") or k == "LUSIFER_RAG_CACHE_DIR"}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), LUSIFER_RAG_DATA_DIR=str(tmp_path / "data"))
    cmd = [sys.executable, "-c", "import sys; from lusifer_rag.cli import main; sys.exit(main())", "serve",
           "--ingest-sample", "--store", str(tmp_path / "store"), "--collection", "sample", "--port", str(port)]
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url, deadline, client = f"http://127.0.0.1:{port}/", time.time() + 300, None
        while client is None and time.time() < deadline and proc.poll() is None:
            try:
                client = Client(url, verbose=False)
            except Exception:  # not up yet
                time.sleep(1)
        log.seek(0)
        output = log.read()
        assert client is not None, f"server did not come up (exit {proc.poll()}):\n{output[-3000:]}"
        assert "10 ingested" in output and "open http://127.0.0.1:" in output
        hits = client.predict("Jeder hat das Recht auf Bildung", [], [], 3, api_name="/search")
        assert hits and all(h["source"].startswith("sample/udhr_") for h in hits)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
