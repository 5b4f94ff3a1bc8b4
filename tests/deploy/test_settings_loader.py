"""One settings loader for every command: `.env` of the working folder under the shell's environment.

`flow doctor` and `flow serve` read the same settings, so they agree (on Ollama above all).
"""

from __future__ import annotations

import json

import click
import pytest
from deploy_support import add_docker

from cli_run import load_environ, load_settings


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A working folder, and a shell environment without the variables these tests set."""
    for name in ("FLOW_OLLAMA_URL", "FLOW_WORKERS", "FLOW_PORT", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_load_settings_reads_dotenv_and_the_shell_wins(folder, monkeypatch):
    (folder / ".env").write_text('# comment\nFLOW_WORKERS=3\nexport FLOW_PORT="8123"  \nHF_TOKEN=hf_x # mine\n')
    assert load_settings().workers == 3 and load_settings().port == 8123
    assert load_environ()["HF_TOKEN"] == "hf_x"
    monkeypatch.setenv("FLOW_WORKERS", "5")
    assert load_settings().workers == 5  # the shell wins
    assert load_settings(workers=7).workers == 7  # a command-line option wins over both


def test_load_settings_without_dotenv_uses_the_defaults(folder):
    assert load_settings().ollama_url == "" and load_settings().port == 8000


def test_load_settings_names_dotenv_when_a_value_does_not_parse(folder):
    (folder / ".env").write_text("FLOW_WORKERS=many\n")
    with pytest.raises(click.UsageError, match=r"FLOW_WORKERS='many'.*\.env"):
        load_settings()


def _doctor(folder, fake_bin) -> dict:
    from click.testing import CliRunner

    from cli import main

    add_docker(fake_bin)
    result = CliRunner().invoke(main, ["doctor", "--json", "--profile", "cpu"], env={"PATH": fake_bin.path},
                                catch_exceptions=False)
    return {c["name"]: c for c in json.loads(result.output)["checks"]}


def test_doctor_without_ollama_configured_says_that_is_fine(folder, fake_bin):
    (folder / ".env").write_text(f"FLOW_OLLAMA_URL=\nFLOW_MODELS_DIR={folder}\n")
    assert load_settings().ollama_url == ""  # what `flow serve` runs with: text in process
    ollama = _doctor(folder, fake_bin)["ollama"]
    assert ollama["status"] == "pass", ollama
    assert "no Ollama configured" in ollama["message"] and "in process" in ollama["message"]
    assert "11434" not in ollama["message"]


def test_doctor_checks_the_ollama_serve_would_use(folder, fake_bin, ollama_server):
    (folder / ".env").write_text(f"FLOW_OLLAMA_URL={ollama_server.url}\nFLOW_MODELS_DIR={folder}\n")
    assert load_settings().ollama_url == ollama_server.url
    ollama = _doctor(folder, fake_bin)["ollama"]
    assert ollama["status"] == "pass" and ollama["details"]["url"] == ollama_server.url
