"""The image-edit form in a real browser: upload, paint a mask, send it; "send to edit"; model pickers that
start on "(default)" and offer only models of their kind."""

from __future__ import annotations

import base64
import io
import urllib.request

from web_helpers import TINY, open_page, shot


def _png(color=(40, 120, 220), size=(64, 64)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _image(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))


def _result_pixels(server, record):
    import numpy as np

    url = record["files"]["file"]
    with urllib.request.urlopen(server.url + (url if isinstance(url, str) else url[0]), timeout=30) as response:
        return np.asarray(_image(response.read()).convert("RGB")).astype(int)


def _pick_tiny(page):
    model = page.get_by_label("model", exact=True)
    tiny = next(o for o in model.evaluate("s => [...s.options].map(o => o.value)") if o.endswith(TINY))
    model.select_option(tiny)


def test_mask_painter_paints_erases_and_sends_the_mask(page, server):
    import numpy as np

    open_page(page, server, "endpoints/image/edit")
    painter = page.locator(".mask-painter")
    painter.get_by_label("upload an image to edit").set_input_files(
        {"name": "photo.png", "mimeType": "image/png", "buffer": _png()})
    page.locator('.mask-painter[data-loaded="true"]').wait_for()
    assert page.get_by_label("image_path", exact=True).input_value().startswith("input:")  # uploaded: POST /inputs
    canvas = painter.locator("canvas")
    box = canvas.bounding_box()
    assert page.evaluate("() => document.querySelector('.mask-canvas').width") == 64  # the image's own size

    def stroke(x0, y0, x1, y1):
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=8)
        page.mouse.up()

    painter.get_by_label("brush size").fill("40")
    for x in (0.06, 0.16, 0.26, 0.36):  # the left third, top to bottom
        stroke(x, 0.0, x, 1.0)
    painter.get_by_role("radio", name="erase").check()
    stroke(0.0, 0.9, 0.45, 0.9)  # erase a band near the bottom
    painter.get_by_role("radio", name="paint").check()
    shot(page, "mask-painted")

    page.get_by_role("textbox", name="prompt", exact=True).fill("a red square")
    _pick_tiny(page)
    page.get_by_label("steps", exact=True).fill("2")
    page.get_by_label("strength", exact=True).fill("1")
    page.get_by_label("seed", exact=True).fill("3")
    page.get_by_role("button", name="Run").click()
    result = page.locator('form.endpoint-form .result-body[data-state="finished"]')
    result.wait_for(timeout=120_000)
    job_id = result.get_attribute("data-job")
    status, record = server.call("GET", f"/jobs/{job_id}")
    assert status == 200 and record["state"] == "finished", record
    mask_url = record["params"]["mask"]
    assert mask_url.startswith("data:image/png;base64,")
    mask = np.asarray(_image(base64.b64decode(mask_url.split(",", 1)[1])).convert("L"))
    assert mask.shape == (64, 64)
    assert mask[20, 10] == 255 and mask[30, 20] == 255  # painted
    assert mask[20, 55] == 0 and mask[56, 10] == 0  # never painted; erased (the strokes end below it)
    edited = _result_pixels(server, record)
    assert edited.shape == (64, 64, 3)

    # the edited region changes: another seed with the same painted mask repaints the left (painted) side
    # and keeps the right side (only the VAE's round trip differs there)
    page.get_by_label("seed", exact=True).fill("4")
    page.get_by_role("button", name="Run").click()
    page.locator(f'form.endpoint-form .result-body[data-state="finished"]:not([data-job="{job_id}"])').wait_for(
        timeout=120_000)
    job_id = page.locator("form.endpoint-form .result-body").get_attribute("data-job")
    status, record = server.call("GET", f"/jobs/{job_id}")
    assert record["params"]["mask"] == mask_url  # the same painted mask, sent again
    other = _result_pixels(server, record)
    inside, outside = np.abs(other - edited)[:, :16].mean(), np.abs(other - edited)[:, 40:].mean()
    assert inside > 5 * outside and inside > 10, (inside, outside)

    # clear and invert act on the mask: inverted, the unpainted right side becomes the mask
    painter.get_by_role("button", name="Invert mask").click()
    inverted = page.evaluate("""() => { const c = document.querySelector('.mask-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return [d[(20 * 64 + 10) * 4 + 3], d[(20 * 64 + 55) * 4 + 3]]; }""")
    assert inverted[0] == 0 and inverted[1] == 255
    painter.get_by_role("button", name="Clear mask").click()
    assert page.evaluate("""() => { const c = document.querySelector('.mask-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return d.every((v, i) => i % 4 != 3 || v == 0); }""")
    # cleared, the next run sends no mask (an img2img of the whole picture), not the mask sent before
    page.get_by_role("button", name="Run").click()
    page.locator(f'form.endpoint-form .result-body[data-state="finished"]:not([data-job="{job_id}"])').wait_for(
        timeout=120_000)
    second = page.locator("form.endpoint-form .result-body").get_attribute("data-job")
    status, record = server.call("GET", f"/jobs/{second}")
    assert status == 200 and not record["params"].get("mask"), record["params"]


def test_send_to_edit_puts_a_result_into_the_edit_form(page, server, web_root):
    body = {"prompt": "a blue cat", "width": 64, "height": 64, "steps": 1, "seed": 4,
            "model": str(web_root / "models" / "local" / TINY)}
    status, job = server.call("POST", "/image/gen", body)
    assert status == 200, job
    open_page(page, server, "outputs")
    card = page.locator(f'#output-grid .card[data-job="{job["id"]}"]')
    card.get_by_role("button", name="Send to edit").first.click()
    page.locator('.mask-painter[data-loaded="true"]').wait_for()
    assert page.evaluate("location.hash") == "#endpoints/image/edit"
    data = page.get_by_label("image", exact=True).input_value()
    assert data.startswith("data:image/png;base64,")
    assert _image(base64.b64decode(data.split(",", 1)[1])).size == (64, 64)


def test_model_pickers_start_on_default_and_offer_their_kind(page, server):
    open_page(page, server, "endpoints/text/gen")
    model = page.get_by_label("model", exact=True)
    assert model.input_value() == ""  # "(default)": the server's default model applies
    assert model.evaluate("s => s.options[s.selectedIndex].text").startswith("(default)")
    offered = model.evaluate("s => [...s.options].map(o => o.value)")
    assert not any(o.endswith(TINY) for o in offered)  # an image model is not offered for text
    open_page(page, server, "endpoints/image/gen")
    model = page.get_by_label("model", exact=True)
    assert model.input_value() == ""
    assert "hf:stabilityai/sd-turbo" in model.evaluate("s => s.options[0].text")
    assert any(o.endswith(TINY) for o in model.evaluate("s => [...s.options].map(o => o.value)"))
