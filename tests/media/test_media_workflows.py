"""The saved workflows music_gen, video_gen and the chained example clip, run end to end on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from PIL import Image

from engine import InvalidWorkflow, Workflow
from nodes.avmedia import read_video_comment
from readback import probe

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def load(name: str) -> Workflow:
    return Workflow.load(WORKFLOWS / f"{name}.json")


def test_workflow_music_gen_is_the_music_endpoint(media_engine):
    workflow = load("music_gen")
    assert workflow.endpoint == "/music/gen"
    result = media_engine.run_sync(workflow, {"prompt": "slow jazz guitar", "duration": 0.5, "seed": 9,
                                              "model": "musicgen-tiny", "format": "flac"})
    info = sf.info(result.outputs["file"])
    assert (info.format, info.samplerate, info.frames) == ("FLAC", 16000, 8000)
    with sf.SoundFile(result.outputs["file"]) as f:
        stored = json.loads(f.comment)
    assert stored["workflow"]["endpoint"] == "/music/gen" and stored["params"]["prompt"] == "slow jazz guitar"
    assert result.seeds == {"gen": 9}


def test_workflow_video_gen_is_the_video_endpoint(media_engine):
    workflow = load("video_gen")
    assert workflow.endpoint == "/video/gen"
    result = media_engine.run_sync(workflow, {"prompt": "rain over a city at night", "frames": 5, "fps": 4.0,
                                              "width": 48, "height": 32, "steps": 2, "model": "wan-tiny"})
    meta, count = probe(result.outputs["file"])
    assert (meta["codec"], meta["fps"], meta["size"], count) == ("h264", 4.0, (48, 32), 5)
    assert json.loads(read_video_comment(result.outputs["file"]))["params"]["seed"] == result.seeds["gen"]


@pytest.mark.parametrize("name", ["music_gen", "video_gen"])
def test_workflow_endpoints_require_a_prompt(media_engine, name):
    with pytest.raises(InvalidWorkflow, match="param 'prompt': required"):
        media_engine.run_sync(load(name), {})


def test_workflow_clip_chains_llm_image_video_and_music(registry, manager, clip_models, tmp_path):
    from engine import Engine, MemoryCache

    params = {"idea": "a lighthouse in a storm", "seed": 3, "width": 64, "height": 64, "frames": 5, "fps": 4.0,
              "video_steps": 2, "poster_steps": 1, "duration": 1.0, "max_tokens": 8, "text_model": "tiny-llm",
              "image_model": "tiny-sd", "video_model": "wan-tiny", "music_model": "musicgen-tiny"}
    # One worker: the branches run one after another. (Loads would be safe in parallel too: the model
    # manager serialises every loader, see engine/models/manager.py.)
    engine = Engine(registry, cache=MemoryCache(256 << 20), models=manager, output_dir=tmp_path / "out", workers=1)
    try:
        result = engine.run_sync(load("clip"), params)
    finally:
        engine.close()
    out = result.outputs
    assert out["picture_prompt"].startswith("a lighthouse in a storm, ")
    assert out["music_prompt"].endswith("(for: a lighthouse in a storm)")
    with Image.open(out["poster"]) as poster:
        assert poster.size == (64, 64)
    meta, count = probe(out["clip"])
    assert (meta["codec"], meta["audio_codec"], meta["fps"], meta["size"], count) == ("h264", "aac", 4.0, (64, 64), 5)
    stored = json.loads(read_video_comment(out["clip"]))
    assert stored["workflow"] == {"workflow": "clip"}
    assert stored["params"]["prompt"] == out["picture_prompt"]
    assert stored["params"]["soundtrack"]["prompt"] == out["music_prompt"]
    assert set(result.seeds) == {"write_picture", "write_music", "poster", "video", "music"}
    assert set(result.seeds.values()) == {3}
