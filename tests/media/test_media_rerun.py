"""`flow run FILE.wav` and `flow run FILE.mp4`: a saved sound or clip re-runs from what it carries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from engine.embedded import read_description
from readback import decode
from zoo import G, link


@pytest.fixture
def flow(monkeypatch, tmp_path, models_dir):
    """``flow(*args) -> the --json body`` of the `flow` command over the tiny media models."""
    from cli import main

    monkeypatch.setenv("FLOW_OUTPUT_DIR", str(tmp_path / "cli-out"))
    monkeypatch.setenv("FLOW_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("FLOW_MODEL_DEVICE", "cpu")
    runner = CliRunner()

    def invoke(*args) -> dict:
        result = runner.invoke(main, [*args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return invoke


def write(tmp_path, graph: G) -> str:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(graph.doc))
    return str(path)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_media_rerun_flow_run_a_saved_sound_makes_the_same_samples(flow, tmp_path, fmt):
    graph = (G().node("gen", "music.generate", prompt="calm piano", duration=0.5, model="musicgen-tiny")
             .node("save", "audio.save", audio=link("gen", "audio"), format=fmt).output("file", "save", "path"))
    first = flow("run", write(tmp_path, graph))
    path = first["outputs"]["file"]
    assert read_description(path)["workflow"]["nodes"]["gen"]["inputs"]["seed"] == first["seeds"]["gen"]
    again = flow("run", path)
    assert again["seeds"] == first["seeds"] and again["outputs"]["file"] != path
    assert np.array_equal(sf.read(again["outputs"]["file"])[0], sf.read(path)[0])


def test_media_rerun_flow_run_a_saved_clip_makes_the_same_frames(flow, tmp_path):
    graph = (G().node("gen", "video.generate", prompt="a bird", frames=5, fps=4.0, width=32, height=32, steps=2,
                      model="wan-tiny")
             .node("save", "video.save", video=link("gen", "video")).output("file", "save", "path"))
    first = flow("run", write(tmp_path, graph))
    path = first["outputs"]["file"]
    assert read_description(path)["format"] == "mp4"
    again = flow("run", path)
    assert again["seeds"] == first["seeds"]
    assert np.array_equal(decode(again["outputs"]["file"]), decode(path))


def test_media_rerun_flow_run_a_file_of_the_music_endpoint(flow):
    """music_gen names itself in its files: `flow run` finds the saved workflow and the params used."""
    first = flow("run", "music_gen", "-p", "prompt=slow jazz", "-p", "duration=0.5", "-p", "model=musicgen-tiny")
    path = first["outputs"]["file"]
    again = flow("run", path)
    assert again["seeds"] == first["seeds"]
    assert np.array_equal(sf.read(again["outputs"]["file"])[0], sf.read(path)[0])
