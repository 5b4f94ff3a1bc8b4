"""Cancelling music.generate and video.generate: each stops at its next step and lets go of its model."""

from __future__ import annotations

import time

import pytest

from engine import CancelToken, Cancelled
from zoo import G


@pytest.mark.parametrize("node_type, inputs, most_steps", [
    # cancelled at the first progress report, out of 503 tokens (10 s of music) and 50 diffusion steps
    ("music.generate", {"prompt": "calm piano song", "duration": 10.0, "seed": 7, "model": "musicgen-tiny"}, 20),
    ("video.generate", {"prompt": "a bird flying over the ocean", "seed": 5, "model": "wan-tiny", "frames": 9,
                        "fps": 8.0, "width": 32, "height": 32, "steps": 50}, 10),
], ids=["music", "video"])
def test_media_generate_stops_at_the_next_step_when_cancelled(media_engine, manager, node_type, inputs, most_steps):
    token = CancelToken()
    seen = []

    def listener(event):
        if event.kind == "node.progress":
            seen.append(event.done)
            token.cancel("stop")

    workflow = G().node("gen", node_type, **inputs).build()
    with pytest.raises(Cancelled):
        media_engine.run_sync(workflow, listener=listener, cancel=token)
    assert seen and max(seen) < most_steps
    # The engine answers the cancel at once; the worker thread lets go of the model at its next step.
    deadline = time.monotonic() + 30
    while any(m.pinned for m in manager.loaded()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(m.pinned == 0 for m in manager.loaded())
