"""Helpers shared by the image tests: model names, pixels of values and files, workflow documents."""

from __future__ import annotations

import io
from pathlib import Path

TINY = "tiny-sd"  # text-to-image, 4-channel UNet
INPAINT = "tiny-sd-inpaint"  # 9-channel inpainting UNet
PIX2PIX = "tiny-pix2pix"  # 8-channel InstructPix2Pix UNet


def pixels(value_or_path):
    """The pixels of an IMAGE value's first image, a PIL image, or an image file, as a numpy array."""
    import numpy as np
    from PIL import Image

    if isinstance(value_or_path, (str, Path)):
        with Image.open(value_or_path) as image:
            return np.asarray(image.convert("RGB"))
    image = value_or_path.images[0] if hasattr(value_or_path, "images") else value_or_path
    return np.asarray(image)


def png_bytes(image) -> bytes:
    """A PIL image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def gen_doc(model: str = TINY, **inputs) -> dict:
    """generate -> outputs `images`; inputs default to a 64x64, 2-step, seeded run of the tiny model."""
    body = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "seed": 7, "model": model, **inputs}
    return {"nodes": {"gen": {"type": "image.generate", "inputs": body}},
            "outputs": {"images": {"from": "gen", "output": "images"}}}
