"""video.generate, video.save and video.mux on a tiny Wan pipeline loaded by reference through the model store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageSequence

from readback import audio_stream, decode, probe
from engine import InvalidWorkflow, NodeError
from nodes.avmedia import Audio, Video, read_video_comment
from zoo import G, link

SMALL = {"frames": 9, "fps": 8.0, "width": 32, "height": 32, "steps": 2}


def video(seed=5, fmt="mp4", model="wan-tiny", metadata=None, **changes):
    """A workflow: generate a small clip, save it as `fmt`."""
    inputs = {**SMALL, **changes}
    return (G().node("gen", "video.generate", prompt="a bird flying over the ocean", seed=seed, model=model, **inputs)
            .node("save", "video.save", video=link("gen", "video"), format=fmt, metadata=metadata)
            .output("video", "gen", "video").output("file", "save", "path").build())


def test_video_generate_writes_an_h264_mp4_with_frames_fps_and_the_parameters(media_engine, events):
    result = media_engine.run_sync(video(metadata={"name": "video_gen"}), listener=events)
    meta, count = probe(result.outputs["file"])
    assert (meta["codec"], meta["fps"], meta["size"], count) == ("h264", 8.0, (32, 32), 9)
    assert "audio_codec" not in meta
    stored = json.loads(read_video_comment(result.outputs["file"]))
    assert stored["params"]["seed"] == 5 and stored["params"]["frames"] == 9
    assert stored["workflow"] == {"name": "video_gen"}
    clip = result.outputs["video"]
    assert clip.frames.shape == (9, 32, 32, 3) and clip.frames.dtype == np.uint8 and clip.fps == 8.0
    steps = [(e.done, e.total) for e in events if e.kind == "node.progress" and e.node == "gen"
             and not (e.message or "").startswith("loading model")]
    assert steps == [(1, 2), (2, 2)]


def test_video_generate_same_seed_same_frames_other_seed_other_frames(media_engine):
    first = media_engine.run_sync(video(seed=11))
    media_engine.cache.clear()
    again = media_engine.run_sync(video(seed=11))
    other = media_engine.run_sync(video(seed=12), outputs=["video"])
    assert np.array_equal(first.outputs["video"].frames, again.outputs["video"].frames)
    assert np.array_equal(decode(first.outputs["file"]), decode(again.outputs["file"]))
    assert not np.array_equal(first.outputs["video"].frames, other.outputs["video"].frames)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_video_save_animations_keep_frames_timing_and_parameters(media_engine, fmt):
    path = media_engine.run_sync(video(fmt=fmt, metadata={"name": "anim"}, fps=10.0)).outputs["file"]
    with Image.open(path) as image:
        assert (image.format, image.size, image.n_frames) == (fmt.upper(), (32, 32), 9)
        assert image.info["loop"] == 0
        durations = []
        for frame in ImageSequence.Iterator(image):
            frame.load()
            durations.append(frame.info["duration"])
        assert durations == [100] * 9
    stored = json.loads(read_video_comment(path))
    assert stored["workflow"] == {"name": "anim"} and stored["params"]["fps"] == 10.0


def test_video_mux_puts_the_music_into_the_mp4(media_engine):
    doc = (G().node("clip", "video.generate", prompt="sunset city", seed=1, model="wan-tiny", **SMALL)
           .node("tune", "music.generate", prompt="calm piano", duration=2.0, seed=1, model="musicgen-tiny")
           .node("mux", "video.mux", video=link("clip", "video"), audio=link("tune", "audio"), fade_out=0.5)
           .node("save", "video.save", video=link("mux", "video"))
           .output("video", "mux", "video").output("file", "save", "path").build())
    result = media_engine.run_sync(doc)
    clip = result.outputs["video"]
    assert clip.audio.samples.shape == (1, 9 * 16000 // 8)  # trimmed to the video's 1.125 s
    assert clip.audio.samples[0, -1] == 0.0  # faded out
    assert clip.params["soundtrack"]["seed"] == 1 and clip.params["soundtrack"]["fade_out"] == 0.5
    meta, count = probe(result.outputs["file"])
    assert (meta["codec"], meta["audio_codec"], count) == ("h264", "aac", 9)
    assert "16000 Hz" in audio_stream(result.outputs["file"])
    assert json.loads(read_video_comment(result.outputs["file"]))["params"]["soundtrack"]["prompt"] == "calm piano"


def test_video_mux_pads_short_music_with_silence():
    from nodes.video import Mux

    clip = Video(np.zeros((16, 8, 8, 3), np.uint8), 8.0)
    tune = Audio(np.full((2, 8000), 0.5, np.float32), 16000)
    out = Mux().run(None, clip, tune, volume=2.0, fade_out=0.0)["video"]
    assert out.audio.samples.shape == (2, 32000)
    assert out.audio.samples[0, 0] == 1.0 and out.audio.samples[0, -1] == 0.0


def test_video_save_pads_odd_sizes_for_h264(tmp_path):
    from engine.paths import OutputFiles

    frames = np.random.default_rng(0).integers(0, 255, (3, 7, 9, 3), dtype=np.uint8)
    path = Video(frames, 4.0).write_file(OutputFiles(tmp_path), "odd")
    meta, count = probe(path)
    assert meta["size"] == (10, 8) and count == 3


@pytest.mark.parametrize("changes, input_", [({"fps": 0}, "fps"), ({"frames": 0}, "frames"), ({"width": 30}, "width")])
def test_video_generate_refuses_bad_literals_before_running(media_engine, manager, changes, input_):
    with pytest.raises(InvalidWorkflow) as caught:
        media_engine.run_sync(video(**changes))
    assert [(p.node, p.input) for p in caught.value.problems] == [("gen", input_)]
    assert manager.counters.loads == 0


@pytest.mark.parametrize("changes, message", [
    ({"frames": 10}, r"frames must be 4k\+1, got 10; use 9 or 13"),
    ({"width": 40}, "width must be a multiple of 16, got 40; use 32"),
])
def test_video_generate_refuses_shapes_the_model_cannot_make(media_engine, changes, message):
    with pytest.raises(NodeError, match=message) as caught:
        media_engine.run_sync(video(**changes))
    assert caught.value.node == "gen" and "WanPipeline" in str(caught.value)


def test_video_generate_names_a_model_that_is_not_text_to_video(media_engine):
    with pytest.raises(NodeError, match="musicgen-tiny is not a text-to-video pipeline"):
        media_engine.run_sync(video(model="musicgen-tiny"))


def test_video_generate_out_of_memory_retries_with_the_vae_tiled(media_engine, manager):
    import torch

    media_engine.run_sync(video(seed=1), outputs=["video"])  # loads the pipeline
    with manager.lease("wan-tiny", lambda path: pytest.fail("already loaded"), variant="t2v-float32") as pipe:
        pass
    failures = [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")]

    def run_out_of_memory_once(module, args):
        if failures:
            raise failures.pop()

    hook = pipe.transformer.register_forward_pre_hook(run_out_of_memory_once)
    try:
        result = media_engine.run_sync(video(seed=2), outputs=["video"])
    finally:
        hook.remove()
    assert result.outputs["video"].frames.shape == (9, 32, 32, 3)
    assert manager.counters.oom_retries == 1 and pipe.vae.use_tiling
