"""image.edit and image.load: image-to-image, inpainting with a mask, instruction edits, and bad inputs."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from image_helpers import INPAINT, PIX2PIX, TINY, pixels, png_bytes

from engine import InvalidWorkflow, NodeError, Workflow


def source(size=(64, 64), color=(200, 40, 40), alpha_box=None):
    """A PIL test picture: a solid colour with a blue square; with `alpha_box`, transparent there."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA" if alpha_box else "RGB", size, color)
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 8, 24, 24), fill=(30, 30, 220))
    if alpha_box:
        draw.rectangle(alpha_box, fill=(0, 0, 0, 0))
    return image


def data_url(image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def edit_doc(image, model=TINY, mask=None, **inputs) -> dict:
    """load (data URL) -> edit [-> mask from a second load]; outputs `image`."""
    nodes = {
        "load": {"type": "image.load", "inputs": {"data": data_url(image)}},
        "edit": {"type": "image.edit", "inputs": {
            "image": {"from": "load", "output": "image"}, "prompt": "a blue dog", "steps": 4, "strength": 0.5,
            "seed": 3, "model": model, **inputs}},
    }
    if mask is not None:
        nodes["mask"] = {"type": "image.load", "inputs": {"data": data_url(mask), "mask_from": "luminance"}}
        nodes["edit"]["inputs"]["mask"] = {"from": "mask", "output": "mask"}
    return {"nodes": nodes, "outputs": {"image": {"from": "edit", "output": "image"}}}


def box_mask(size=(64, 64), box=(32, 32, 63, 63)):
    from PIL import Image, ImageDraw

    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def run(engine, doc, **kw):
    return engine.run_sync(Workflow.from_dict(doc), **kw)


def test_edit_image_to_image_changes_the_picture_reproducibly(make_engine, events):
    picture = source()
    first = run(make_engine(), edit_doc(picture), listener=events)
    again = run(make_engine(cache=False), edit_doc(picture))
    out = first.outputs["image"]
    assert out.size == (64, 64) and out.params[0]["task"] == "img2img" and out.params[0]["seed"] == 3
    assert not np.array_equal(pixels(out), pixels(picture))
    assert np.array_equal(pixels(out), pixels(again.outputs["image"]))
    # steps x strength = 2 denoising steps, each reported
    steps = [(e.done, e.total) for e in events if e.kind == "node.progress" and e.node == "edit"
             and not (e.message or "").startswith("loading model")]
    assert steps == [(1, 2), (2, 2)]


def test_edit_and_generate_on_one_model_share_one_load(image_engine, manager):
    from image_helpers import gen_doc

    run(image_engine, gen_doc())
    run(image_engine, edit_doc(source()))
    assert manager.counters.loads == 1 and len(manager.loaded()) == 1


@pytest.mark.parametrize("model", [INPAINT, TINY])
def test_edit_with_a_mask_inpaints(image_engine, model):
    picture = source()
    out = run(image_engine, edit_doc(picture, model=model, mask=box_mask(), strength=1.0)).outputs["image"]
    assert out.params[0]["task"] == "inpaint" and out.size == (64, 64)
    assert not np.array_equal(pixels(out), pixels(picture))
    assert out.recipes[0]["nodes"]["edit"]["inputs"]["mask"] == {"from": "mask", "output": "mask"}


def test_edit_mask_from_transparency_marks_the_transparent_area(image_engine):
    picture = source(alpha_box=(40, 40, 63, 63))
    doc = {"nodes": {"load": {"type": "image.load", "inputs": {"data": data_url(picture)}}},
           "outputs": {"mask": {"from": "load", "output": "mask"}, "image": {"from": "load", "output": "image"}}}
    result = run(image_engine, doc).outputs
    mask = pixels(result["mask"].image)
    assert mask[50, 50] == 255 and mask[10, 10] == 0
    assert result["image"].images[0].mode == "RGB"


def test_edit_instruction_with_an_instruct_pix2pix_model(image_engine):
    out = run(image_engine, edit_doc(source(), model=PIX2PIX, prompt="make it blue", guidance=3.0)).outputs["image"]
    assert out.params[0]["task"] == "instruct" and out.size == (64, 64)


def test_edit_rounds_sides_down_to_multiples_of_8(image_engine):
    out = run(image_engine, edit_doc(source(size=(70, 67)))).outputs["image"]
    assert out.size == (64, 64)


@pytest.mark.parametrize(("doc", "words"), [
    (lambda: edit_doc(source(), mask=box_mask(size=(64, 32))), "input 'mask': 64x32, but input 'image' is 64x64"),
    (lambda: edit_doc(source(), mode="instruct"), "not an InstructPix2Pix model"),
    (lambda: edit_doc(source(), model=INPAINT), "inpainting model"),
    (lambda: edit_doc(source(), mode="img2img", mask=box_mask()), "only used for inpainting"),
])
def test_edit_bad_combinations_fail_with_the_node_and_input_named(image_engine, doc, words):
    with pytest.raises(NodeError) as caught:
        run(image_engine, doc())
    assert "'edit' (image.edit)" in str(caught.value) and words in str(caught.value)


def test_edit_too_few_denoising_steps_are_refused_before_running(image_engine):
    with pytest.raises(InvalidWorkflow) as caught:
        run(image_engine, edit_doc(source(), steps=1, strength=0.5))
    (problem,) = caught.value.problems
    assert (problem.node, problem.input) == ("edit", "strength") and "1 denoising step" in problem.message


@pytest.mark.parametrize(("inputs", "words"), [
    ({"data": base64.b64encode(b"not an image at all").decode()}, "input 'data': not a readable image"),
    ({"data": "%%% not base64"}, "input 'data': not valid base64"),
    ({"data": "data:text/plain;base64,aGk="}, "not a base64 image one"),
    ({"path": "missing.png"}, "no file 'missing.png'"),
    ({"path": "../outside.png"}, "leaves the folder"),
    ({}, "input 'data': no image given"),
])
def test_load_bad_sources_fail_with_the_input_named(image_engine, inputs, words):
    doc = {"nodes": {"load": {"type": "image.load", "inputs": inputs}},
           "outputs": {"image": {"from": "load", "output": "image"}}}
    with pytest.raises(NodeError) as caught:
        run(image_engine, doc)
    assert "'load' (image.load)" in str(caught.value) and words in str(caught.value)


def test_load_reads_a_file_from_the_input_folder_and_raw_base64(image_engine):
    picture = source()
    folder = image_engine.files.root / "inputs"
    folder.mkdir(parents=True)
    (folder / "photo.png").write_bytes(png_bytes(picture))
    doc = {"nodes": {"file": {"type": "image.load", "inputs": {"path": "inputs/photo.png"}},
                     "raw": {"type": "image.load", "inputs": {"data": base64.b64encode(png_bytes(picture)).decode()}}},
           "outputs": {"file": {"from": "file", "output": "image"}, "raw": {"from": "raw", "output": "image"},
                       "w": {"from": "file", "output": "width"}}}
    out = run(image_engine, doc).outputs
    assert np.array_equal(pixels(out["file"]), pixels(picture)) and np.array_equal(pixels(out["raw"]), pixels(picture))
    assert out["w"] == 64 and out["file"].content_hash() == out["raw"].content_hash()


def test_load_optional_without_a_source_gives_nothing(image_engine):
    doc = {"nodes": {"load": {"type": "image.load", "inputs": {"optional": True}}},
           "outputs": {"mask": {"from": "load", "output": "mask"}}}
    assert run(image_engine, doc).outputs == {"mask": None}


def test_load_reads_a_replaced_file_again_and_serves_an_unchanged_one_from_cache(image_engine):
    import os

    folder = image_engine.files.root / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "swap.png").write_bytes(png_bytes(source(color=(10, 200, 10))))
    doc = {"nodes": {"file": {"type": "image.load", "inputs": {"path": "inputs/swap.png"}}},
           "outputs": {"image": {"from": "file", "output": "image"}}}
    first = run(image_engine, doc)
    assert run(image_engine, doc).cached == ["file"]
    (folder / "swap.png").write_bytes(png_bytes(source(color=(10, 10, 200))))
    os.utime(folder / "swap.png", ns=(1, 10**18))
    second = run(image_engine, doc)
    assert second.executed == ["file"]
    assert pixels(second.outputs["image"])[0, 0].tolist() != pixels(first.outputs["image"])[0, 0].tolist()
