"""Settings (env overrides, validation) and the CLI's error edge."""

from __future__ import annotations

import pytest

from lusifer_rag.cli import main
from lusifer_rag.errors import ConfigError
from lusifer_rag.settings import Settings


def test_env_overrides_and_types(tmp_path):
    s = Settings.from_env(env={"LUSIFER_RAG_MAX_BATCH_TOKENS": "4096", "LUSIFER_RAG_CACHE_DIR": str(tmp_path),
                               "LUSIFER_RAG_EMBEDDER": "hf:/x"})
    assert s.max_batch_tokens == 4096 and s.cache_dir == tmp_path and s.embedder == "hf:/x"
    # explicit overrides win over the environment; None means "not given"
    s2 = Settings.from_env(env={"LUSIFER_RAG_EMBEDDER": "hf:/x"}, embedder="e5-small", device=None)
    assert s2.embedder == "e5-small" and s2.device is None


def test_bad_env_value_names_variable():
    with pytest.raises(ConfigError, match="LUSIFER_RAG_MAX_BATCH_TOKENS='lots'"):
        Settings.from_env(env={"LUSIFER_RAG_MAX_BATCH_TOKENS": "lots"})


def test_every_setting_is_documented():
    rows = Settings.describe()
    assert rows and all(doc for _, _, doc in rows)
    assert all(env.startswith("LUSIFER_RAG_") for env, _, _ in rows)


def test_cli_unknown_embedder_is_a_usage_error(capsys):
    code = main(["embed", "--embedder", "nope:x", "hello"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown embedder spec 'nope:x'" in err and "lusifer:<dir or hub id>" in err and "e5-small" in err


def test_cli_models_lists_kinds_and_settings(capsys):
    assert main(["models", "--settings"]) == 0
    out = capsys.readouterr().out
    for kind in ("e5-small", "hf", "lusifer"):
        assert kind in out
    assert "LUSIFER_RAG_MAX_BATCH_TOKENS" in out


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_cli_search_flags_reach_the_settings(monkeypatch):
    """``search --same-language-pivot`` (like --store and --collection) overrides the environment's settings;
    without the flag the environment decides. The command's run is replaced to read the settings it gets."""
    from lusifer_rag import cli

    cli.build_parser()  # registers the commands
    add_arguments, _, help = cli._COMMANDS["search"]
    got = []
    monkeypatch.setitem(cli._COMMANDS, "search", (add_arguments, lambda args, settings: got.append(settings) or 0, help))
    for name in ("LUSIFER_RAG_SAME_LANGUAGE_PIVOT", "LUSIFER_RAG_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    assert main(["search", "q", "--same-language-pivot", "--collection", "c1"]) == 0
    assert main(["search", "q"]) == 0
    monkeypatch.setenv("LUSIFER_RAG_SAME_LANGUAGE_PIVOT", "1")
    assert main(["search", "q"]) == 0
    assert [(s.same_language_pivot, s.collection) for s in got] == [(True, "c1"), (False, "documents"), (True, "documents")]
