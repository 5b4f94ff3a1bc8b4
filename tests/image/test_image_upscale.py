"""image.upscale (Lanczos, no model) and the saved image_hires workflow: generate small, upscale, img2img refine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from image_helpers import TINY, pixels

from engine import Workflow

ROOT = Path(__file__).resolve().parents[2]


def _upscale_doc(picture, **inputs):
    import base64
    import io

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    data = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"nodes": {"load": {"type": "image.load", "inputs": {"data": data}},
                      "up": {"type": "image.upscale", "inputs": {"images": {"from": "load", "output": "image"},
                                                                 **inputs}}},
            "outputs": {"images": {"from": "up", "output": "images"}}}


def _picture(size=(64, 48)):
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def test_upscale_doubles_the_size_with_lanczos(image_engine):
    from PIL import Image

    picture = _picture()
    out = image_engine.run_sync(Workflow.from_dict(_upscale_doc(picture))).outputs["images"]
    assert out.size == (128, 96)
    assert np.array_equal(pixels(out), np.asarray(picture.resize((128, 96), Image.Resampling.LANCZOS)))
    assert out.params[0]["upscale"] == {"scale": 2.0, "method": "lanczos"}
    assert out.recipes[0]["nodes"]["up"]["inputs"]["images"] == {"from": "load", "output": "image"}


def test_upscale_rounds_to_multiples_and_refuses_huge_results(image_engine):
    from engine.errors import NodeError

    odd = image_engine.run_sync(Workflow.from_dict(_upscale_doc(_picture((70, 50)), scale=1.5))).outputs["images"]
    assert odd.size == (104, 72)  # 105x75 rounded down to multiples of 8
    with pytest.raises(NodeError, match="more than"):
        image_engine.run_sync(Workflow.from_dict(_upscale_doc(_picture((1024, 1024)), scale=8)))


@pytest.mark.slow  # over 3 s: a generate, an upscale and a refine on the tiny model
def test_image_hires_workflow_end_to_end(image_engine):
    from engine.embedded import WORKFLOW_KEY, png_text

    workflow = Workflow.load(ROOT / "workflows" / "image_hires.json")
    assert workflow.endpoint == "/image/hires"
    params = {"prompt": "a castle", "model": TINY, "width": 64, "height": 64, "steps": 2, "seed": 5}
    result = image_engine.run_sync(workflow, params)
    path = result.outputs["file"]
    assert pixels(path).shape == (128, 128, 3)  # twice the small image
    assert {"gen", "up", "refine", "save"} <= set(result.executed)
    again = image_engine.run_sync(workflow, {**params, "strength": 0.75})
    assert "up" in again.cached and "gen" not in again.executed and "refine" in again.executed  # only the refine
    embedded = json.loads(png_text(path)[WORKFLOW_KEY])
    assert embedded["nodes"]["up"]["type"] == "image.upscale"
