"""text.embed (texts -> vectors) and text.describe_image (image + prompt -> text: captions, OCR)."""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

from engine import IMAGE, INT, JSON, TEXT, Input, InvalidInput, Node, Output, Seed
from engine.errors import BackendFailed
from engine.paths import OutputFiles

from .backend import complete, resolve
from .ports import (MAX_CHARS, max_tokens_input, model_input, model_problems, privacy_input, temperature_input,
                    usage_output)
from .types import Request

MAX_TEXTS = 2048
_PNG, _JPEG = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


class Embed(Node):
    """Embed texts as vectors (one per text) with an embedding model."""

    type = "text.embed"
    inputs = {
        "texts": Input(JSON, f"a text, or a list of up to {MAX_TEXTS} texts",
                       anyOf=[{"type": "string", "minLength": 1, "maxLength": MAX_CHARS},
                              {"type": "array", "minItems": 1, "maxItems": MAX_TEXTS,
                               "items": {"type": "string", "minLength": 1, "maxLength": MAX_CHARS}}]),
        "model": model_input("embed"),
        "privacy": privacy_input(),
    }
    outputs = {
        "vectors": Output(JSON, "one vector (a list of numbers) per text, in order"),
        "dimensions": Output(INT, "length of each vector"),
    }

    @classmethod
    def check(cls, literals, given):
        yield from model_problems(literals)

    def run(self, ctx, texts, model, privacy):
        texts = [texts] if isinstance(texts, str) else list(texts)
        backend = resolve(ctx, model, privacy, task="embed")
        vectors = backend.embed(ctx, texts)
        if len(vectors) != len(texts):
            raise BackendFailed(f"{backend.ref} returned {len(vectors)} vectors for {len(texts)} texts")
        for index, vector in enumerate(vectors):
            if not all(map(math.isfinite, vector)):  # NaN cannot leave as JSON: a broken model, said plainly
                raise BackendFailed(f"{backend.ref} returned NaN or Infinity in the vector of text {index}; the model "
                                "is broken or not an embedding model; name another one")
        return {"vectors": vectors, "dimensions": len(vectors[0]) if vectors else 0}


class DescribeImage(Node):
    """Describe an image, or read the text in it (OCR), with a vision model."""

    type = "text.describe_image"
    inputs = {
        "image": Input(IMAGE, "the image to look at"),
        "prompt": Input(TEXT, "what to do with it, e.g. 'Describe this image.' or 'Transcribe all text in the image "
                              "exactly.' (OCR)", default="Describe this image.", minLength=1, maxLength=MAX_CHARS,
                         widget="multiline"),
        "model": model_input("vision"),
        "max_tokens": max_tokens_input(512),
        "temperature": temperature_input(0.2),
        "seed": Seed(),
        "privacy": privacy_input(),
    }
    outputs = {"text": Output(TEXT, "the description or the text read"), "usage": usage_output()}

    @classmethod
    def check(cls, literals, given):
        yield from model_problems(literals)

    def run(self, ctx, image, prompt, model, max_tokens, temperature, seed, privacy):
        request = Request([{"role": "user", "content": prompt}], max_tokens, temperature, 1.0, (), seed,
                          images=(png_bytes(image),))
        reply = complete(ctx, model, privacy, request, task="vision")
        return {"text": reply.text, "usage": reply.usage}


def png_bytes(image) -> bytes:
    """Encoded image bytes from an IMAGE value: a PIL image, encoded bytes, or any media value (its file)."""
    if isinstance(image, (bytes, bytearray)):
        if bytes(image[:8]) == _PNG or bytes(image[:3]) == _JPEG:
            return bytes(image)
        raise InvalidInput("image", "bytes that are neither PNG nor JPEG; give a PNG or JPEG image")
    pil = image.to_pil() if callable(getattr(image, "to_pil", None)) else image
    if hasattr(pil, "save") and hasattr(pil, "mode") and hasattr(pil, "size"):
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG")
        return buffer.getvalue()
    if callable(getattr(image, "write_file", None)):
        # The media protocol: let the value write its own file, in a scratch folder, and read it back.
        with tempfile.TemporaryDirectory(prefix="flow-describe-") as scratch:
            path = Path(image.to_host().write_file(OutputFiles(scratch), "image"))
            return path.read_bytes()
    raise InvalidInput("image", f"a {type(image).__name__}, not an image; link it to a node's IMAGE output")
