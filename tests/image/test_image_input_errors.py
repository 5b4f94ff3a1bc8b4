"""The image endpoints' workflows given bad inputs fail as InvalidInput naming node and input (a 422, not a 500);
an integral float for an INT input (batch_size 2.0) is taken as the int."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from image_helpers import INPAINT, TINY, gen_doc, png_bytes

from engine import InvalidInput, NodeError, Workflow
from zoo import G, link

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def picture(size=(64, 64), color=(200, 40, 40)):
    from PIL import Image

    return Image.new("RGB", size, color)


def data_url(image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def mask(size=(64, 64)):
    from PIL import Image

    return Image.new("L", size, 255)


# params of workflows/image_edit.json -> (failing node, input named, words in the message)
EDIT_CASES = {
    "no image": ({}, "load", "data", "no image given"),
    "image_path of a folder": ({"image_path": "."}, "load", "path", "is a folder"),
    "image_path of a missing file": ({"image_path": "gone.png"}, "load", "path", "no file 'gone.png'"),
    "image_path of a 999-character name": ({"image_path": "x" * 999}, "load", "path", "cannot read"),
    "a 1x1 image": ({"image": data_url(picture((1, 1)))}, "edit", "image", "1x1"),
    "a mask of another size": ({"image": data_url(picture()), "mask": data_url(mask((64, 32)))}, "edit", "mask",
                               "64x32, but input 'image' is 64x64"),
    "a mask in img2img mode": ({"image": data_url(picture()), "mask": data_url(mask()), "mode": "img2img"},
                               "edit", "mask", "only used for inpainting"),
    "instruct mode on a text-to-image model": ({"image": data_url(picture()), "mode": "instruct"}, "edit", "model",
                                               "not an InstructPix2Pix model"),
    "img2img on an inpainting model": ({"image": data_url(picture()), "model": INPAINT}, "edit", "model",
                                       "inpainting model"),
    "steps x strength under one step": ({"image": data_url(picture()), "steps": 1, "strength": 0.5}, "edit",
                                        "strength", "must reach 1 denoising step, got 1 x 0.5"),
}


@pytest.mark.parametrize("case", EDIT_CASES)
def test_image_edit_endpoint_bad_inputs_fail_as_invalid_input(image_engine, case):
    params, node, input_, words = EDIT_CASES[case]
    image_engine.files.root.mkdir(parents=True, exist_ok=True)
    workflow = Workflow.load(WORKFLOWS / "image_edit.json")
    with pytest.raises(NodeError) as caught:
        image_engine.run_sync(workflow, {"model": TINY, "steps": 2, "seed": 1, **params})
    cause = caught.value.cause
    assert caught.value.node == node and isinstance(cause, InvalidInput), repr(cause)
    assert cause.input == input_ and words in str(cause)


def test_image_generate_integral_float_batch_size_makes_that_many_images(image_engine):
    out = image_engine.run_sync(Workflow.from_dict(gen_doc(batch_size=2.0, steps=1))).outputs["images"]
    assert len(out) == 2 and [p["seed"] for p in out.params] == [7, 8]


def test_image_generate_linked_width_off_the_grid_fails_before_loading(image_engine, manager):
    doc = (G().node("w", "primitive.int", value=500)
           .node("gen", "image.generate", prompt="a cat", width=link("w", "value"), steps=1, seed=1, model=TINY)
           .output("images", "gen", "images"))
    with pytest.raises(NodeError) as caught:
        image_engine.run_sync(doc.build())
    cause = caught.value.cause
    assert isinstance(cause, InvalidInput) and cause.input == "width" and "multiple of 8" in str(cause)
    assert manager.counters.loads == 0
