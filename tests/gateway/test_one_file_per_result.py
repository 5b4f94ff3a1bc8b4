"""One file per result: the save node writes it, the gateway points at it (no copy under jobs/<id>/)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

from gateway_support import ROOT, run

sys.path.insert(0, str(ROOT / "tests" / "media"))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    from tiny import tiny_stable_diffusion
    from tiny_media import build_musicgen

    root = tmp_path_factory.mktemp("one-file-models")
    tiny_stable_diffusion(root / "local" / "sd")
    build_musicgen(root / "local" / "musicgen")
    return root


def files_under(root: Path, *suffixes: str) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes)


@pytest.mark.slow  # over 3 s
def test_image_and_music_results_are_one_file_each(tiny_models, settings):
    import shutil

    from aiohttp.test_utils import TestClient, TestServer

    import nodes
    from engine import Engine, MemoryCache
    from engine.models import ModelManager, ModelStore
    from server import create_app

    for name in ("image_gen", "music_gen"):
        shutil.copy(ROOT / "workflows" / f"{name}.json", settings.workflows_dir)
    out = Path(settings.output_dir)

    async def scenario():
        models = ModelManager(ModelStore(tiny_models), device="cpu", gpu_budget=1 << 30, cpu_budget=1 << 30)
        engine = Engine(nodes.registry(), cache=MemoryCache(256 << 20), models=models, output_dir=out, workers=1)
        client = TestClient(TestServer(create_app(engine, settings.with_(probe_device=False))))
        await client.start_server()
        try:
            body = {"prompt": "a red fox", "model": "sd", "width": 64, "height": 64, "steps": 1, "seed": 3,
                    "batch_size": 2}
            job = await (await client.post("/image/gen?media=base64", json=body)).json()
            pngs = files_under(out, ".png")
            assert len(pngs) == 2, pngs  # a batch of 2: two files, no copies
            assert job["media"] == ["files"] and len(job["outputs"]["files"]) == 2  # one list of files
            assert job["files"]["files"] == [f["url"] for f in job["outputs"]["files"]]
            assert sorted(out / f["path"] for f in job["outputs"]["files"]) == pngs
            assert job["files"]["file"] == job["files"]["files"][0]  # the same file, not a copy
            for entry, png in zip(job["outputs"]["files"], pngs):
                assert base64.b64decode(entry["b64"]) == (out / entry["path"]).read_bytes()
            again = await (await client.get(f"/jobs/{job['id']}?media=base64")).json()
            assert [f["b64"] for f in again["outputs"]["files"]] == [f["b64"] for f in job["outputs"]["files"]]

            # the same seeded request again comes from the cache and writes no second copy (issue 13)
            repeat = await (await client.post("/image/gen", json=body)).json()
            assert len(files_under(out, ".png")) == 2
            assert repeat["files"]["files"] == job["files"]["files"]

            music = await (await client.post("/music/gen", json={"prompt": "calm piano", "model": "musicgen",
                                                                  "duration": 0.5, "seed": 5})).json()
            assert len(files_under(out, ".wav")) == 1  # one sound, one file, one player
            assert music["files"]["audio"] == music["files"]["file"] and music["media"] == ["audio"]

            # a media output no node saved is still written, once, under jobs/<id>/
            bare = {"workflow": {"nodes": {"gen": {"type": "image.generate", "inputs": {
                "prompt": "a cat", "model": "sd", "width": 64, "height": 64, "steps": 1, "seed": 1}}},
                "outputs": {"image": {"from": "gen", "output": "images"}}}}
            job = await (await client.post("/jobs?wait=true", json=bare)).json()
            assert job["outputs"]["image"]["path"].startswith(f"jobs/{job['id']}/")
            assert len(files_under(out / "jobs", ".png")) == 1
        finally:
            await client.close()
            engine.close()

    run(scenario())


class _Blob:
    """A stand-in media value: writes one small file."""

    nbytes = 1

    def to_host(self):
        return self

    def write_file(self, files, prefix):
        path = files.new_path(prefix, ".wav")
        path.write_bytes(b"RIFF")
        return path


def test_a_saved_path_outside_the_output_folder_or_of_another_job_is_not_shown(tmp_path):
    from types import SimpleNamespace

    from engine.executor import RunResult
    from engine.saving import remember_saved
    from gateway.present import Presenter

    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"secret")
    inside = tmp_path / "out" / "audio" / "a_00001.wav"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"RIFF")
    presenter = Presenter(tmp_path / "out")
    far, other = _Blob(), _Blob()
    remember_saved(SimpleNamespace(job_id="j1"), far, str(outside))
    remember_saved(SimpleNamespace(job_id="j0"), other, str(inside))  # saved by another job
    result = RunResult(job_id="j1", outputs={"far": far, "other": other}, executed=[], cached=[], seeds={},
                       timings={}, elapsed=0.0)
    body = presenter.result_json(None, result, "j1")
    assert body["outputs"]["far"]["path"].startswith("jobs/j1/far_")  # written here instead, never the outside file
    assert body["outputs"]["other"]["path"].startswith("jobs/j1/other_")
    assert body["media"] == ["far", "other"]
