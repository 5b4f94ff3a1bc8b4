"""POST /workflows/extract: the workflow a saved file carries, read back for the graph editor."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from web_helpers import TINY


def extract(server, data: bytes):
    """(status, body) of POST /workflows/extract with ``data`` as the body."""
    request = urllib.request.Request(server.url + "/workflows/extract", data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow  # over 3 s
def test_extract_reads_the_workflow_a_png_carries(server, web_root):
    status, job = server.call("POST", "/jobs?wait=true", {"workflow": {"nodes": {
        "g": {"type": "image.generate", "inputs": {"prompt": "a green hill", "width": 64, "height": 64, "steps": 1,
                                                   "seed": 11, "model": str(web_root / "models" / "local" / TINY)}},
        "s": {"type": "image.save", "inputs": {"images": {"from": "g", "output": "images"}}}}}})
    assert status == 200, job
    with open(job["outputs"]["s.path"], "rb") as fh:
        status, found = extract(server, fh.read())
    assert status == 200, found
    assert found["format"] == "png"
    generators = [n for n in found["workflow"]["nodes"].values() if n["type"] == "image.generate"]
    assert generators[0]["inputs"]["prompt"] == "a green hill" and generators[0]["inputs"]["seed"] == 11
    assert found["parameters"]["seed"] == 11
    # What came out runs again as it is.
    status, again = server.call("POST", "/jobs?wait=true", {"workflow": found["workflow"]})
    assert status == 200 and again["state"] == "finished", again


def test_extract_maps_audio_to_its_saved_workflow_and_params(server, tmp_path):
    import numpy as np

    from nodes.avmedia import Audio, write_audio

    params = {"node": "music.generate", "model": "hf:facebook/musicgen-small", "prompt": "calm piano",
              "duration": 1.0, "seed": 42, "sample_rate": 16000}
    path = tmp_path / "music.wav"
    # An older file: it names the saved workflow that made it instead of carrying the document.
    write_audio(path, Audio(np.zeros((1, 1600), np.float32), 16000, params), "wav",
                {"params": params, "workflow": {"workflow": "music_gen", "endpoint": "/music/gen"}})
    status, found = extract(server, path.read_bytes())
    assert status == 200, found
    assert found["format"] == "wav"
    assert found["workflow"]["name"] == "music_gen"
    assert found["params"] == {"model": "hf:facebook/musicgen-small", "prompt": "calm piano", "duration": 1.0,
                               "seed": 42}


def test_extract_rebuilds_a_generator_from_a_video_without_a_saved_workflow(server, tmp_path):
    import numpy as np

    from nodes.avmedia import Video, write_video

    params = {"node": "video.generate", "model": "hf:Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "prompt": "waves",
              "frames": 5, "fps": 8.0, "width": 32, "height": 32, "steps": 2, "seed": 5}
    path = tmp_path / "clip.mp4"
    write_video(path, Video(np.zeros((5, 32, 32, 3), np.uint8), 8.0, None, params), "mp4",
                {"params": params, "workflow": None})
    status, found = extract(server, path.read_bytes())
    assert status == 200, found
    assert found["format"] == "mp4"
    assert found["workflow"]["nodes"]["gen"] == {"type": "video.generate", "inputs": {
        k: v for k, v in params.items() if k != "node"}}


def test_extract_refuses_files_without_a_workflow(server):
    status, body = extract(server, b"plain text, not a saved file")
    assert status == 400
    assert "PNG" in body["error"]["message"]
    status, body = extract(server, b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG with no text chunks
    assert status == 400
    assert "no workflow" in body["error"]["message"]
