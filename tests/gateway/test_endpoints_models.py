"""Every endpoint of the table through the gateway, on tiny models built here and named by `model`."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import pytest

from gateway_support import ROOT, run

sys.path.insert(0, str(ROOT / "tests" / "text"))
sys.path.insert(0, str(ROOT / "tests" / "media"))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    from llm_tiny import build_tiny_llm
    from tiny import tiny_stable_diffusion
    from tiny_media import build_musicgen, build_wan

    root = tmp_path_factory.mktemp("gateway-models")
    build_tiny_llm(root / "local" / "llm")
    tiny_stable_diffusion(root / "local" / "sd")
    build_musicgen(root / "local" / "musicgen")
    build_wan(root / "local" / "wan")
    return root


def png_b64(size=64) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


CALLS = [
    ("/text/gen", {"prompt": "a haiku about rain", "model": "llm", "max_tokens": 8, "seed": 1}, "text"),
    ("/text/edit", {"text": "the cat sat", "instruction": "make it formal", "model": "llm", "max_tokens": 8,
                    "seed": 1}, "text"),
    ("/image/gen", {"prompt": "a red fox", "model": "sd", "width": 64, "height": 64, "steps": 2, "seed": 3}, "image"),
    ("/image/edit", {"prompt": "a blue fox", "image": png_b64(), "model": "sd", "steps": 2, "strength": 0.5,
                     "seed": 3}, "image"),
    ("/music/gen", {"prompt": "calm piano", "model": "musicgen", "duration": 0.5, "seed": 5}, "audio"),
    ("/video/gen", {"prompt": "waves", "model": "wan", "frames": 5, "width": 32, "height": 32, "steps": 2,
                    "fps": 8, "seed": 7}, "video"),
]


@pytest.mark.slow  # over 3 s
def test_gateway_serves_every_table_endpoint_on_tiny_models(tiny_models, settings, tmp_path):
    import shutil

    from aiohttp.test_utils import TestClient, TestServer

    import nodes
    from engine import Engine, MemoryCache
    from engine.models import ModelManager, ModelStore
    from server import create_app

    for name in ("text_gen", "text_edit", "image_gen", "image_edit", "music_gen", "video_gen"):
        shutil.copy(ROOT / "workflows" / f"{name}.json", settings.workflows_dir)

    async def scenario():
        models = ModelManager(ModelStore(tiny_models), device="cpu", gpu_budget=1 << 30, cpu_budget=1 << 30)
        engine = Engine(nodes.registry(), cache=MemoryCache(256 << 20), models=models,
                        output_dir=settings.output_dir, workers=1)
        client = TestClient(TestServer(create_app(engine, settings.with_(probe_device=False))))
        await client.start_server()
        try:
            listed = {e["path"] for e in await (await client.get("/endpoints")).json()}
            assert {path for path, _, _ in CALLS} <= listed
            for path, body, kind in CALLS:
                response = await client.post(path + "?media=base64", json=body)
                job = await response.json()
                assert response.status == 200, (path, job)
                assert job["params"]["model"] == body["model"] and job["timings"]
                if kind == "text":
                    assert isinstance(job["outputs"]["text"], str)
                    continue
                url = next(iter(job["files"].values()))
                data = await (await client.get(url)).read()
                magic = {"image": b"\x89PNG", "audio": b"RIFF", "video": b"\x00\x00\x00"}[kind]
                assert data.startswith(magic), (path, data[:8])
                inline = [v for v in job["outputs"].values() if isinstance(v, dict) and "b64" in v]
                assert not inline or base64.b64decode(inline[0]["b64"])[:4] in (data[:4], b"\x89PNG", b"RIFF")
            # the same request again is served from the output cache
            again = await (await client.post("/image/gen", json=CALLS[2][1])).json()
            assert again["cached"] == ["gen"] and again["executed"] == ["save"]  # saving is volatile
            loaded = await (await client.get("/models/loaded")).json()
            assert {m["ref"].rsplit("/", 1)[-1] for m in loaded["models"]} >= {"llm", "sd", "musicgen", "wan"}
        finally:
            await client.close()
            engine.close()

    run(scenario())
