"""One import namespace: the installed package is ``lusifer_rag`` and nothing else.

The repository keeps its top-level folders (``app/ embedder/ ingest/ rag/``); pyproject's ``package-dir`` maps
them to ``lusifer_rag.app`` etc. These tests hold that mapping to what users see: the wheel's top level, a user's
own ``app``/``rag``/``ingest``/``embedder`` packages beside it, and no code of ours using the bare folder names
(which a checkout's root on ``sys.path`` would otherwise hide in the test run).
"""

from __future__ import annotations

import ast
import json
import shutil
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("app", "embedder", "ingest", "rag", "train")  # mapped to lusifer_rag.<folder>
SOURCE_DIRS = ("lusifer_rag",) + FOLDERS
CODE_DIRS = SOURCE_DIRS + ("tests", "bench", "scripts")


def _python_files(dirs=CODE_DIRS):
    for d in dirs:
        yield from (p for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def test_no_code_imports_the_bare_folder_names():
    offenders = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in FOLDERS]
    assert not offenders, "import through lusifer_rag.<folder> instead:\n" + "\n".join(offenders)


def test_every_source_package_is_declared():
    """A package folder missing from pyproject's explicit list would be left out of the wheel."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    dir_of = {v: k for k, v in cfg["package-dir"].items()}  # folder -> dotted name
    found = set()
    for init in _python_files(SOURCE_DIRS):
        if init.name == "__init__.py":
            rel = init.parent.relative_to(ROOT).parts
            found.add(".".join([dir_of[rel[0]], *rel[1:]]))
    assert found == declared


def _build_wheel(tmp: Path) -> Path:
    """Build from a copy of the source tree, so the checkout gets no build/ or egg-info of ours."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for d in SOURCE_DIRS:
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp / "dist"
    # --no-build-isolation: the project's own setuptools (the dev extra) builds it, no download
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = out.glob("lusifer_rag-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new venv holding only the wheel; the dependencies come from this environment's site-packages through a
    .pth line (a path added that way is searched after the venv's own site-packages, and its own .pth files, such
    as the editable install's finder, are not run)."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "project_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def _users_project(tmp: Path) -> Path:
    """A user's project with its own packages of the same names (FastAPI's `app/` layout, a `rag/` of theirs)."""
    proj = tmp / "userproj"
    for name in FOLDERS:
        (proj / name).mkdir(parents=True)
        (proj / name / "__init__.py").write_text(f"OWNER = 'user:{name}'\n")
    return proj


@pytest.mark.slow
def test_wheel_installs_only_lusifer_rag_beside_a_users_own_packages(tmp_path):
    wheel = _build_wheel(tmp_path)

    # (a) the wheel's top level: the package and its metadata, nothing else; run-time data in, test data out
    names = zipfile.ZipFile(wheel).namelist()
    version = wheel.name.split("-")[1]
    assert {n.split("/")[0] for n in names} == {"lusifer_rag", f"lusifer_rag-{version}.dist-info"}
    for d in SOURCE_DIRS:  # every module of the source tree is in the wheel, at its namespaced path
        prefix = "lusifer_rag/" if d == "lusifer_rag" else f"lusifer_rag/{d}/"
        base = ROOT / d
        for py in _python_files([d]):
            if d == "app" and py.parent.name == "sample_corpus":
                continue  # the corpus builder reads tests/data: source tree only
            assert prefix + py.relative_to(base).as_posix() in names
    corpus = sorted(n for n in names if n.startswith("lusifer_rag/app/sample_corpus/"))
    assert len([n for n in corpus if "/documents/" in n]) == len(list((ROOT / "app/sample_corpus/documents").iterdir()))
    assert "lusifer_rag/app/sample_corpus/README.md" in corpus
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n or n.endswith("build_sample.py")]

    venv = _fresh_venv(tmp_path, wheel)
    proj = _users_project(tmp_path)
    probe = textwrap.dedent("""
        import json, pkgutil, importlib, sys
        FOLDERS = __FOLDERS__
        for n in FOLDERS:  # the user's own packages
            importlib.import_module(n)
        from lusifer_rag.langchain import LusiferRetriever, LusiferEmbeddings
        import lusifer_rag
        from lusifer_rag.app.service import SAMPLE_CORPUS
        failed = {}
        for m in pkgutil.walk_packages(lusifer_rag.__path__, "lusifer_rag."):  # every module of ours imports here
            if m.name.endswith(".__main__"):
                continue  # runs the CLI
            try:
                importlib.import_module(m.name)
            except Exception as e:
                failed[m.name] = repr(e)
        print(json.dumps({
            "owners": [sys.modules[n].OWNER for n in FOLDERS],
            "users": [sys.modules[n].__file__ for n in FOLDERS],
            "ours": [importlib.import_module("lusifer_rag." + n).__file__ for n in FOLDERS],
            "classes": [LusiferRetriever.__module__, LusiferEmbeddings.__module__],
            "sample": sorted(p.name for p in SAMPLE_CORPUS.iterdir()),
            "failed": failed,
        }))
    """).replace("__FOLDERS__", repr(FOLDERS))
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=proj, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    # (b) the user's imports still resolve to the user's packages, after all of ours were imported
    assert got["owners"] == [f"user:{n}" for n in FOLDERS]
    assert all(Path(f).is_relative_to(proj) for f in got["users"])
    site_dir = venv.resolve()
    assert all(Path(f).resolve().is_relative_to(site_dir) for f in got["ours"]), got["ours"]
    assert got["failed"] == {}
    # (c) the LangChain classes at the short path; the sample corpus comes with the wheel
    assert got["classes"] == ["lusifer_rag.rag.langchain"] * 2
    assert got["sample"] == sorted(p.name for p in (ROOT / "app/sample_corpus/documents").iterdir())

    cli = subprocess.run([str(venv / "bin" / "lusifer-rag"), "--help"], cwd=proj, env=env, capture_output=True,
                         text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-3000:]
    for cmd in ("ingest", "search", "ask", "eval", "serve"):  # each command module was found in the wheel
        assert f"    {cmd} " in cli.stdout
