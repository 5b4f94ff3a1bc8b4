"""One file per result on the CLI: `flow run music_gen` writes one sound, and both outputs name it."""

from __future__ import annotations

import json

from click.testing import CliRunner


def test_cli_music_gen_is_one_file(monkeypatch, tmp_path, models_dir):
    from cli import main

    out = tmp_path / "cli-out"
    monkeypatch.setenv("FLOW_OUTPUT_DIR", str(out))
    monkeypatch.setenv("FLOW_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("FLOW_MODEL_DEVICE", "cpu")
    result = CliRunner().invoke(main, ["run", "music_gen", "-p", "prompt=slow jazz", "-p", "duration=0.5",
                                       "-p", "model=musicgen-tiny", "-p", "seed=2", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    sounds = [str(p) for p in out.rglob("*.wav")]
    assert len(sounds) == 1, sounds  # no copy under outputs/outputs/
    assert body["outputs"]["audio"] == body["outputs"]["file"] == sounds[0]
