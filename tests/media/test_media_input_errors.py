"""Music and video inputs the loaded model cannot use fail as InvalidInput naming the input (a 422, not a 500)."""

from __future__ import annotations

import pytest

from engine import InvalidInput, NodeError
from zoo import G

VIDEO = {"prompt": "a bird", "frames": 9, "fps": 8.0, "width": 32, "height": 32, "steps": 1, "seed": 1,
         "model": "wan-tiny"}
MUSIC = {"prompt": "calm piano", "duration": 0.5, "seed": 1, "model": "musicgen-tiny"}


@pytest.mark.parametrize(("node_type", "inputs", "input_", "words"), [
    ("video.generate", {**VIDEO, "frames": 10}, "frames", "frames must be 4k+1, got 10; use 9 or 13"),
    ("video.generate", {**VIDEO, "width": 40}, "width", "width must be a multiple of 16, got 40; use 32"),
    ("video.generate", {**VIDEO, "height": 24.0}, "height", "height must be a multiple of 16, got 24; use 16"),
    ("video.generate", {**VIDEO, "model": "musicgen-tiny"}, "model", "is not a text-to-video pipeline"),
    ("music.generate", {**MUSIC, "model": "not-a-model"}, "model", "is not a MusicGen model"),
    ("music.generate", {**MUSIC, "model": "wan-tiny"}, "model", "is not a MusicGen model"),
])
def test_media_input_errors_fail_as_invalid_input_naming_the_input(media_engine, node_type, inputs, input_, words):
    output = {"video.generate": "video", "music.generate": "audio"}[node_type]
    graph = G().node("gen", node_type, **inputs).output("out", "gen", output)
    with pytest.raises(NodeError) as caught:
        media_engine.run_sync(graph.build())
    cause = caught.value.cause
    assert caught.value.node == "gen" and isinstance(cause, InvalidInput), repr(cause)
    assert cause.input == input_ and words in str(cause)
