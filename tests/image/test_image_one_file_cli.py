"""One file per result on the CLI: `flow run image_gen` shows the files the save node wrote, no copies."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from image_helpers import TINY


@pytest.mark.slow  # over 3 s
def test_cli_image_gen_batch_of_two_is_two_files_and_one_list(monkeypatch, tmp_path, models_dir):
    from cli import main

    out = tmp_path / "cli-out"
    monkeypatch.setenv("FLOW_OUTPUT_DIR", str(out))
    monkeypatch.setenv("FLOW_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("FLOW_MODEL_DEVICE", "cpu")
    result = CliRunner().invoke(main, ["run", "image_gen", "-p", "prompt=a cat", "-p", f"model={TINY}",
                                       "-p", "width=64", "-p", "height=64", "-p", "seed=5", "-p", "batch_size=2",
                                       "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    pngs = sorted(str(p) for p in out.rglob("*.png"))
    assert len(pngs) == 2, pngs  # nothing under outputs/outputs/ beside the saved ones
    assert sorted(body["outputs"]["files"]) == pngs  # the batch: one list of the saved files
    assert body["outputs"]["file"] == body["outputs"]["files"][0]
