"""`flow pull` and `flow models` against the local hub, in-process through click's runner."""

from __future__ import annotations

import json

from click.testing import CliRunner

import cli
from test_pull import local_hub_only, tiny_model_repo  # noqa: F401  (the autouse fixture applies here too)


def test_cli_pull_then_models_lists_it(tmp_path, hub, monkeypatch):
    hub.add_repo("acme/tiny", tiny_model_repo())
    monkeypatch.setenv("FLOW_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("FLOW_HF_ENDPOINT", hub.url)
    runner = CliRunner()
    pulled = runner.invoke(cli.main, ["pull", "hf:acme/tiny"])
    assert pulled.exit_code == 0, pulled.output
    assert "pulled hf:acme/tiny" in pulled.stdout and "MiB" in pulled.stderr
    listed = runner.invoke(cli.main, ["models", "--json"])
    [model] = json.loads(listed.stdout)
    assert model["ref"] == "hf:acme/tiny" and model["source"] == "hf" and model["size"] > 16_000


def test_cli_pull_refuses_a_hostile_ref(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOW_MODELS_DIR", str(tmp_path))
    result = CliRunner().invoke(cli.main, ["pull", "file:///etc/passwd"])
    assert result.exit_code == 1 and "scheme 'file' is not supported" in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_models_loaded_names_the_device(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOW_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("FLOW_MODEL_DEVICE", "cpu")
    monkeypatch.setenv("FLOW_GPU_BUDGET_BYTES", str(1 << 30))
    result = CliRunner().invoke(cli.main, ["models", "loaded", "--json"])
    body = json.loads(result.stdout)
    assert body["device"] == "cpu" and body["budget"] == 1 << 30 and "no GPU" in body["budget_source"]
