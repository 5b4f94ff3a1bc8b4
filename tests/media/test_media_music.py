"""music.generate and audio.save on a tiny MusicGen loaded by reference through the model store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from engine import InvalidWorkflow, NodeError
from nodes.avmedia import read_audio_comment, sidecar
from zoo import G, link


def music(duration=1.0, seed=7, model="musicgen-tiny", fmt="wav", metadata=None, **extra):
    """A workflow: generate `duration` seconds of music, save it as `fmt`."""
    return (G().node("gen", "music.generate", prompt="calm piano song", duration=duration, seed=seed, model=model,
                     **extra)
            .node("save", "audio.save", audio=link("gen", "audio"), format=fmt, metadata=metadata)
            .output("audio", "gen", "audio").output("file", "save", "path").build())


def test_music_generate_writes_a_wav_with_rate_duration_and_the_parameters(media_engine, events):
    result = media_engine.run_sync(music(metadata={"name": "music_gen", "params": {"prompt": "calm"}}),
                                   listener=events)
    with sf.SoundFile(result.outputs["file"]) as wav:
        assert (wav.format, wav.samplerate, wav.channels, wav.frames) == ("WAV", 16000, 1, 16000)
        stored = json.loads(wav.comment)
    assert stored["params"]["seed"] == 7 and stored["params"]["prompt"] == "calm piano song"
    assert stored["params"]["model"] == "musicgen-tiny" and stored["workflow"]["name"] == "music_gen"
    audio = result.outputs["audio"]
    assert audio.sample_rate == 16000 and audio.samples.shape == (1, 16000) and audio.duration == 1.0
    assert result.seeds == {"gen": 7}
    # progress in tokens (at most every 50 ms): 50 audio frames + 3 for the codebook delay pattern
    steps = [(e.done, e.total) for e in events if e.kind == "node.progress" and e.node == "gen"
             and not (e.message or "").startswith("loading model")]
    assert steps[0] == (1, 53) and steps[-1] == (53, 53) and all(t == 53 for _, t in steps)
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)


def test_music_generate_same_seed_same_samples_other_seed_other_samples(media_engine):
    first = media_engine.run_sync(music(seed=3), outputs=["audio"]).outputs["audio"]
    media_engine.cache.clear()
    again = media_engine.run_sync(music(seed=3), outputs=["audio"]).outputs["audio"]
    other = media_engine.run_sync(music(seed=4), outputs=["audio"]).outputs["audio"]
    assert np.array_equal(first.samples, again.samples)
    assert not np.array_equal(first.samples, other.samples)


def test_music_generate_leases_the_model_once_and_releases_it(media_engine, manager):
    media_engine.run_sync(music(seed=1), outputs=["audio"])
    media_engine.run_sync(music(seed=2), outputs=["audio"])
    assert manager.counters.loads == 1 and manager.counters.hits == 1
    [loaded] = manager.loaded()
    assert loaded.ref.endswith("musicgen-tiny") and loaded.pinned == 0 and loaded.place == "device"


@pytest.mark.parametrize("fmt, container", [("flac", "FLAC"), ("ogg", "OGG"), ("mp3", "MP3")])
def test_audio_save_stores_the_parameters_in_each_format(media_engine, fmt, container):
    path = media_engine.run_sync(music(fmt=fmt, metadata={"big": "x" * 20000})).outputs["file"]
    assert path.endswith(f".{fmt}")
    with sf.SoundFile(path) as f:
        assert f.format == container and f.samplerate == 16000
        assert abs(f.frames / f.samplerate - 1.0) < 0.1  # lossy codecs pad a little
    assert json.loads(read_audio_comment(path))["workflow"]["big"] == "x" * 20000
    assert not sidecar(path).exists()


def test_audio_save_writes_a_sidecar_when_wav_cannot_hold_the_metadata(media_engine):
    path = media_engine.run_sync(music(metadata={"big": "x" * 20000})).outputs["file"]
    stored = json.loads(sidecar(path).read_text())
    assert stored["workflow"]["big"] == "x" * 20000 and stored["params"]["seed"] == 7
    assert sf.info(path).frames == 16000


@pytest.mark.parametrize("duration", [0, 3600])
def test_music_generate_refuses_a_duration_out_of_bounds_before_running(media_engine, manager, duration):
    with pytest.raises(InvalidWorkflow) as caught:
        media_engine.run_sync(music(duration=duration))
    [problem] = caught.value.problems
    assert (problem.node, problem.input) == ("gen", "duration")
    assert manager.counters.loads == 0


def test_music_generate_names_a_model_that_is_not_musicgen(media_engine):
    with pytest.raises(NodeError, match="not-a-model is not a MusicGen model.*musicgen-small") as caught:
        media_engine.run_sync(music(model="not-a-model"))
    assert caught.value.node == "gen"


def test_music_generate_missing_model_says_how_to_pull_it(media_engine):
    with pytest.raises(NodeError, match="flow pull hf:facebook/musicgen-small"):
        media_engine.run_sync(music(model="hf:facebook/musicgen-small"))


def test_audio_save_embeds_the_run_reproducibly_and_rerunning_it_gives_the_same_samples(media_engine):
    """With no metadata input, the file holds the run's own workflow with the drawn seed filled in."""
    from engine import Workflow

    first = media_engine.run_sync(music(seed=None, fmt="flac"))
    stored = json.loads(read_audio_comment(first.outputs["file"]))["workflow"]
    assert stored["nodes"]["gen"]["inputs"]["seed"] == first.seeds["gen"]
    media_engine.cache.clear()
    again = media_engine.run_sync(Workflow.from_dict(stored))
    a, _ = sf.read(first.outputs["file"])
    b, _ = sf.read(again.outputs["file"])
    assert np.array_equal(a, b)
