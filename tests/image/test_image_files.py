"""Saved images carry their parameters and workflow; `flow run FILE.png` re-makes identical pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from image_helpers import TINY, gen_doc, pixels, png_bytes

from engine import Workflow
from engine.embedded import PARAMETERS_KEY, WORKFLOW_KEY, image_entries, png_text, workflow_from_file
from engine.errors import InvalidWorkflow

ROOT = Path(__file__).resolve().parents[2]


def saved_doc(fmt="png", **gen_inputs) -> dict:
    doc = gen_doc(**gen_inputs)
    doc["nodes"]["save"] = {"type": "image.save", "inputs": {
        "images": {"from": "gen", "output": "images"}, "prefix": "image/test", "format": fmt,
        "metadata": {"job": "test", "tags": ["a", "b"]}}}
    doc["outputs"]["files"] = {"from": "save", "output": "paths"}
    return doc


def run(engine, doc, params=None):
    return engine.run_sync(Workflow.from_dict(doc), params)


def test_save_png_embeds_parameters_workflow_and_extras_as_text_chunks(image_engine):
    result = run(image_engine, saved_doc(seed=5, batch_size=2))
    first, second = result.outputs["files"]
    assert Path(first).suffix == ".png" and Path(first).parent.name == "image"
    entries = png_text(first)
    params = json.loads(entries[PARAMETERS_KEY])
    assert params["seed"] == 5 and params["prompt"] == "a red cat" and params["model"] == TINY
    assert json.loads(png_text(second)[PARAMETERS_KEY])["seed"] == 6
    assert "Seed: 5" in entries["parameters"] and "Size: 64x64" in entries["parameters"]
    assert entries["job"] == "test" and json.loads(entries["tags"]) == ["a", "b"]
    workflow = json.loads(entries[WORKFLOW_KEY])
    gen = workflow["nodes"]["gen"]["inputs"]
    assert gen["seed"] == 5 and gen["batch_size"] == 1 and gen["steps"] == 2
    assert np.array_equal(pixels(first), pixels(result.outputs["images"].images[0]))


@pytest.mark.parametrize("index", [0, 1])
def test_rerun_from_a_saved_png_gives_identical_pixels(image_engine, make_engine, index):
    result = run(image_engine, saved_doc(seed=40, batch_size=2))
    path = result.outputs["files"][index]
    again = make_engine(cache=False).run_sync(workflow_from_file(path))
    assert again.executed == ["gen", "save"]
    (new_path,) = again.outputs["files"]
    assert new_path != path and np.array_equal(pixels(new_path), pixels(path))


def test_rerun_of_an_edit_rebuilds_its_whole_chain(image_engine, make_engine):
    from PIL import Image

    import base64

    picture = Image.new("RGB", (64, 64), (10, 200, 90))
    data = base64.b64encode(png_bytes(picture)).decode()
    doc = {"nodes": {
        "load": {"type": "image.load", "inputs": {"data": data}},
        "edit": {"type": "image.edit", "inputs": {"image": {"from": "load", "output": "image"},
                                                 "prompt": "a dog", "seed": 9, "model": TINY}},
        "save": {"type": "image.save", "inputs": {"images": {"from": "edit", "output": "image"}}}},
        "outputs": {"file": {"from": "save", "output": "path"}}}
    path = run(image_engine, doc).outputs["file"]
    workflow = workflow_from_file(path)
    assert set(workflow.nodes) == {"load", "edit", "save"}
    again = make_engine(cache=False).run_sync(workflow)
    assert np.array_equal(pixels(again.outputs["files"][0]), pixels(path))


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_save_webp_and_jpeg_carry_the_same_entries_in_exif(image_engine, fmt):
    path = run(image_engine, saved_doc(fmt=fmt, seed=3)).outputs["files"][0]
    assert Path(path).suffix == {"webp": ".webp", "jpeg": ".jpg"}[fmt]
    entries = image_entries(path)
    assert json.loads(entries[PARAMETERS_KEY])["seed"] == 3
    assert workflow_from_file(path).nodes["gen"].literals["seed"] == 3


def test_save_without_embedding_writes_only_the_extras(image_engine):
    doc = saved_doc()
    doc["nodes"]["save"]["inputs"]["embed"] = False
    path = run(image_engine, doc).outputs["files"][0]
    assert set(png_text(path)) == {"job", "tags"}
    with pytest.raises(InvalidWorkflow, match="carries no workflow"):
        workflow_from_file(path)


def test_image_value_write_file_embeds_the_workflow(image_engine):
    images = run(image_engine, gen_doc(seed=4)).outputs["images"]
    path = images.write_file(image_engine.files, "outputs/images")
    assert workflow_from_file(path).nodes["gen"].literals["seed"] == 4


def test_workflow_from_a_file_that_is_not_an_image_is_a_clear_error(tmp_path):
    bogus = tmp_path / "fake.png"
    bogus.write_bytes(b"hello")
    with pytest.raises(InvalidWorkflow, match="cannot read .* as an image: not a PNG file"):
        workflow_from_file(bogus)


@pytest.fixture
def cli_env(monkeypatch, tmp_path, models_dir):
    monkeypatch.setenv("FLOW_OUTPUT_DIR", str(tmp_path / "cli-out"))
    monkeypatch.setenv("FLOW_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("FLOW_MODEL_DEVICE", "cpu")
    return CliRunner()


def cli_json(runner, *args) -> dict:
    from cli import main

    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow  # over 3 s
def test_cli_runs_saved_workflows_presets_and_reruns_a_png(cli_env):
    body = cli_json(cli_env, "run", "image_gen", "-p", "prompt=a cat", "-p", f"model={TINY}", "-p", "width=64",
                    "-p", "height=64", "-p", "seed=123")
    assert body["seeds"] == {"gen": 123}
    path = body["outputs"]["file"]
    rerun = cli_json(cli_env, "run", path)
    assert rerun["seeds"] == {"gen": 123}
    assert np.array_equal(pixels(rerun["outputs"]["files"][0]), pixels(path))
    preset = cli_json(cli_env, "run", "presets/watercolor", "-p", "subject=a dog", "-p", f"model={TINY}",
                      "-p", "seed=1")
    assert preset["outputs"]["file"].endswith(".webp")
    assert json.loads(image_entries(preset["outputs"]["file"])[PARAMETERS_KEY])["prompt"].startswith("a dog, watercolor")


def test_cli_runs_the_edit_workflow_with_a_mask_file(cli_env, tmp_path):
    from PIL import Image

    out = tmp_path / "cli-out"
    (out / "inputs").mkdir(parents=True)
    Image.new("RGB", (64, 64), (120, 30, 30)).save(out / "inputs" / "photo.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    mask.save(out / "inputs" / "mask.png")
    body = cli_json(cli_env, "run", "image_edit", "-p", "image_path=inputs/photo.png", "-p", "mask_path=inputs/mask.png",
                    "-p", "prompt=a cat", "-p", f"model={TINY}", "-p", "seed=2", "-p", "strength=1.0")
    params = json.loads(png_text(body["outputs"]["file"])[PARAMETERS_KEY])
    assert params["task"] == "inpaint" and params["seed"] == 2
