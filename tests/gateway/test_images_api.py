"""The official `openai` client's Images API against a real `flow serve`: generate (b64_json and url, n, size,
seed) and edit (multipart image and mask), served by workflows/image_gen.json and image_edit.json."""

from __future__ import annotations

import base64
import io
import urllib.request

import pytest

from gateway_support import ROOT, Served

pytestmark = pytest.mark.slow  # one real `flow serve` over tiny Stable Diffusion pipelines

TOKEN = "images-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import tiny_stable_diffusion

    root = tmp_path_factory.mktemp("images-api-models")
    tiny_stable_diffusion(root / "local" / "tiny-sd", unet_channels=4)
    served = Served(tmp_path_factory.mktemp("images-api"), {
        "FLOW_MODELS_DIR": str(root), "FLOW_PROBE_DEVICE": "false", "HF_HUB_OFFLINE": "1", "FLOW_API_TOKEN": TOKEN,
        "FLOW_WORKFLOWS_DIR": str(ROOT / "workflows"), "FLOW_PULL_ON_DEMAND": "false", "OMP_NUM_THREADS": "1"})
    served.start(timeout=60)
    yield served
    served.stop()


@pytest.fixture
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0, timeout=180)


def _image(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))


def test_images_generate_b64_and_url(client, server):
    result = client.images.generate(model="tiny-sd", prompt="a red fox", n=2, size="64x64",
                                    response_format="b64_json", extra_body={"seed": 7})
    images = [_image(base64.b64decode(d.b64_json)) for d in result.data]
    assert [i.size for i in images] == [(64, 64), (64, 64)] and images[0].tobytes() != images[1].tobytes()
    again = client.images.generate(model="tiny-sd", prompt="a red fox", n=1, size="64x64",
                                   response_format="url", extra_body={"seed": 7})
    request = urllib.request.Request(again.data[0].url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert _image(response.read()).tobytes() == images[0].tobytes()  # seed 7 again: the same picture


def test_images_edit_with_image_and_mask(client):
    from PIL import Image, ImageDraw

    picture, mask = Image.new("RGB", (64, 64), (20, 120, 200)), Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((32, 32, 63, 63), fill=(0, 0, 0, 0))  # transparent: repaint here (as OpenAI)

    def png(image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def edit(**extra):
        answer = client.images.edit(model="tiny-sd", image=("in.png", png(picture), "image/png"), prompt="a cat",
                                    response_format="b64_json", extra_body={"seed": 3}, **extra)
        return [_image(base64.b64decode(d.b64_json)).convert("RGB") for d in answer.data]

    masked = edit(mask=("mask.png", png(mask), "image/png"))
    assert len(masked) == 1 and masked[0].size == (64, 64)
    assert masked[0].tobytes() != picture.tobytes()
    plain = edit(n=2)  # image i uses seed + i
    assert len(plain) == 2 and plain[0].tobytes() != plain[1].tobytes()
    assert masked[0].tobytes() != plain[0].tobytes()  # the mask was used (inpainting), not dropped
    assert edit()[0].tobytes() == plain[0].tobytes()  # the same seed: the same picture


def test_images_unsupported_fields_are_400(client):
    import openai

    with pytest.raises(openai.BadRequestError) as quality:
        client.images.generate(model="tiny-sd", prompt="x", quality="hd", size="64x64")
    assert quality.value.body["param"] == "quality"
    with pytest.raises(openai.BadRequestError) as size:
        client.images.generate(model="tiny-sd", prompt="x", size="huge")
    assert size.value.body["param"] == "size"
