"""The input folder: uploads over POST /inputs (checked, limited), `input:NAME` refs image.load reads, and CLI
image params that take a path relative to the current folder."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from image_helpers import TINY, pixels, png_bytes

from engine import Workflow

ROOT = Path(__file__).resolve().parents[2]


def _picture(size=(64, 64), color=(200, 30, 30)):
    from PIL import Image

    return Image.new("RGB", size, color)


def test_store_input_names_by_content_and_refuses_what_is_not_an_image(tmp_path):
    from engine.errors import InvalidRequest, TooLarge, UnsupportedMediaType
    from gateway.inputs import store_input

    raw = png_bytes(_picture())
    first = store_input(tmp_path, raw)
    assert first["ref"] == "input:" + first["name"] and first["name"].endswith(".png")
    assert (first["width"], first["height"], first["format"]) == (64, 64, "png")
    assert store_input(tmp_path, raw) == first and len(list(tmp_path.iterdir())) == 1  # same bytes, one file
    assert (tmp_path / first["name"]).read_bytes() == raw
    with pytest.raises(UnsupportedMediaType, match="not an image"):
        store_input(tmp_path, b"%PDF-1.4 not a picture")
    with pytest.raises(InvalidRequest, match="empty"):
        store_input(tmp_path, b"")
    with pytest.raises(InvalidRequest, match="cannot be read"):
        store_input(tmp_path, raw[:60])  # a truncated PNG
    from PIL import Image

    bomb = io.BytesIO()
    Image.new("1", (5000, 5000)).save(bomb, format="PNG")  # small file, 25 megapixels
    with pytest.raises(TooLarge, match="pixels"):
        store_input(tmp_path, bomb.getvalue())
    assert len(list(tmp_path.iterdir())) == 1  # nothing refused was written


def test_post_inputs_stores_uploads_and_answers_clear_4xx(registry, tmp_path, monkeypatch):
    from aiohttp import FormData
    from aiohttp.test_utils import TestClient, TestServer

    import gateway.inputs
    from engine import Engine, MemoryCache
    from engine.errors import FlowError
    from engine.settings import Settings
    from server import create_app

    settings = Settings(output_dir=tmp_path / "out", input_dir=tmp_path / "in", jobs_db=tmp_path / "jobs.sqlite3",
                        workflows_dir=tmp_path)
    raw = png_bytes(_picture())

    async def scenario():
        engine = Engine(registry, cache=MemoryCache(1 << 20), output_dir=settings.output_dir)
        client = TestClient(TestServer(create_app(engine, settings)))
        await client.start_server()
        try:
            form = FormData()
            form.add_field("file", raw, filename="cat.png", content_type="image/png")
            response = await client.post("/inputs", data=form)
            stored = await response.json()
            assert response.status == 201, stored
            assert (settings.input_dir / stored["name"]).read_bytes() == raw
            response = await client.post("/inputs", data=raw, headers={"Content-Type": "image/png"})
            assert response.status == 201 and (await response.json())["ref"] == stored["ref"]
            # the CLI's --server path: the raw image over urllib, the same ref back
            sent = await asyncio.to_thread(gateway.inputs.upload, str(client.make_url("/")), "", raw)
            assert sent["ref"] == stored["ref"]
            with pytest.raises(FlowError, match="refused the upload \\(415\\)"):
                await asyncio.to_thread(gateway.inputs.upload, str(client.make_url("/")), "", b"not an image")
            answers = {}
            for name, body, ctype in (("text", b"hello", "text/plain"), ("not_image", b"hello", "image/png"),
                                      ("empty_form", None, None)):
                if body is None:
                    form = FormData(default_to_multipart=True)
                    form.add_field("note", "no file here")
                    response = await client.post("/inputs", data=form)
                else:
                    response = await client.post("/inputs", data=body, headers={"Content-Type": ctype})
                answers[name] = (response.status, (await response.json())["error"]["message"])
            monkeypatch.setattr(gateway.inputs, "MAX_INPUT_BYTES", 100)
            response = await client.post("/inputs", data=raw, headers={"Content-Type": "image/png"})
            answers["big"] = (response.status, (await response.json())["error"]["message"])
            return answers
        finally:
            await client.close()
            engine.close()

    answers = asyncio.run(scenario())
    assert answers["text"][0] == 415
    assert answers["not_image"][0] == 415 and "not an image" in answers["not_image"][1]
    assert answers["empty_form"][0] == 400 and "no file" in answers["empty_form"][1]
    assert answers["big"][0] == 413 and "limit" in answers["big"][1]


def _load_doc(path: str) -> dict:
    return {"nodes": {"load": {"type": "image.load", "inputs": {"path": path}}},
            "outputs": {"image": {"from": "load", "output": "image"}}}


def test_image_load_reads_input_refs_then_input_files_then_output_files(registry, tmp_path):
    from engine import Engine, NullCache
    from engine.errors import NodeError
    from gateway.inputs import store_input

    inputs = tmp_path / "in"
    red, blue, green = _picture(color=(255, 0, 0)), _picture(color=(0, 0, 255)), _picture(color=(0, 255, 0))
    ref = store_input(inputs, png_bytes(red))["ref"]
    (inputs / "both.png").write_bytes(png_bytes(blue))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "both.png").write_bytes(png_bytes(green))
    (tmp_path / "out" / "earlier.png").write_bytes(png_bytes(green))
    engine = Engine(registry, cache=NullCache(), output_dir=tmp_path / "out", config={"inputs": inputs})
    bare = Engine(registry, cache=NullCache(), output_dir=tmp_path / "out")
    try:
        def first_pixel(eng, path):
            return tuple(pixels(eng.run_sync(Workflow.from_dict(_load_doc(path))).outputs["image"])[0, 0])

        assert first_pixel(engine, ref) == (255, 0, 0)
        assert first_pixel(engine, "both.png") == (0, 0, 255)  # the input folder first
        assert first_pixel(engine, "earlier.png") == (0, 255, 0)  # then an earlier job's output
        with pytest.raises(NodeError, match="no input folder"):
            bare.run_sync(Workflow.from_dict(_load_doc(ref)))
        with pytest.raises(NodeError, match="no file"):
            engine.run_sync(Workflow.from_dict(_load_doc("input:missing.png")))
    finally:
        engine.close()
        bare.close()


@pytest.mark.slow  # over 3 s: a tiny img2img through `flow image edit`
def test_cli_image_path_is_relative_to_the_current_folder(monkeypatch, tmp_path, models_dir):
    from cli import main

    here = tmp_path / "somewhere" / "else"
    here.mkdir(parents=True)
    _picture(color=(10, 200, 10)).save(here / "photo.png")
    monkeypatch.chdir(here)
    monkeypatch.setenv("FLOW_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("FLOW_INPUT_DIR", str(tmp_path / "in"))
    monkeypatch.setenv("FLOW_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("FLOW_MODEL_DEVICE", "cpu")
    monkeypatch.setenv("FLOW_WORKFLOWS_DIR", str(ROOT / "workflows"))
    result = CliRunner().invoke(main, ["image", "edit", "a cat", "--image-path", "photo.png", "--model", TINY,
                                       "--steps", "2", "--strength", "0.5", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    stored = list((tmp_path / "in").iterdir())
    assert len(stored) == 1 and stored[0].read_bytes() == (here / "photo.png").read_bytes()
    from engine.embedded import WORKFLOW_KEY, png_text

    embedded = json.loads(png_text(body["outputs"]["file"])[WORKFLOW_KEY])
    assert json.dumps(embedded).count("input:" + stored[0].name) == 1, embedded  # re-runnable from anywhere
    assert pixels(body["outputs"]["file"]).shape == (64, 64, 3)
    # `flow run -p` too, and the same bytes are the same input (one file)
    again = CliRunner().invoke(main, ["run", "image_edit", "-p", "prompt=a cat", "-p", "image_path=photo.png", "-p",
                                      f"model={TINY}", "-p", "steps=2", "-p", "seed=3", "--json"])
    assert again.exit_code == 0, again.output
    assert list((tmp_path / "in").iterdir()) == stored
    missing = CliRunner().invoke(main, ["image", "edit", "a cat", "--image-path", "nowhere.png", "--model", TINY])
    assert missing.exit_code != 0 and "nowhere.png" in missing.output
    shutil.rmtree(tmp_path / "in")


def test_mask_from_an_opaque_rgba_image_is_its_white_area(registry, tmp_path):
    """A browser canvas writes RGBA PNGs with no transparent pixel: their mask is the white area, not nothing."""
    import base64

    from PIL import Image, ImageDraw

    from engine import Engine, NullCache

    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((0, 0, 20, 63), fill=(255, 255, 255, 255))
    data = "data:image/png;base64," + base64.b64encode(png_bytes(mask)).decode()
    doc = {"nodes": {"load": {"type": "image.load", "inputs": {"data": data}}},
           "outputs": {"mask": {"from": "load", "output": "mask"}}}
    engine = Engine(registry, cache=NullCache(), output_dir=tmp_path / "out")
    try:
        got = pixels(engine.run_sync(Workflow.from_dict(doc)).outputs["mask"].image)
    finally:
        engine.close()
    assert got[30, 10] == 255 and got[30, 50] == 0


def test_a_file_replaced_in_the_input_folder_is_read_again(registry, tmp_path):
    """The cache key of image.load by path follows the file it reads, in the input folder too."""
    import os

    from engine import Engine, MemoryCache

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    engine = Engine(registry, cache=MemoryCache(64 << 20), output_dir=tmp_path / "out", config={"inputs": inputs})
    workflow = Workflow.from_dict({"name": "load", "nodes": {"load": {"type": "image.load", "inputs": {
        "path": "cat.png"}}}, "outputs": {"width": {"from": "load", "output": "width"}}})
    try:
        (inputs / "cat.png").write_bytes(png_bytes(_picture((64, 64))))
        assert engine.run_sync(workflow).outputs["width"] == 64
        (inputs / "cat.png").write_bytes(png_bytes(_picture((32, 32))))
        os.utime(inputs / "cat.png", ns=(1, 1))  # whatever the clock: another size and mtime
        again = engine.run_sync(workflow)
        assert again.outputs["width"] == 32 and again.executed == ["load"]
    finally:
        engine.close()
