"""Workflows embedded in saved images: read them back so `flow run FILE.png` re-runs an image.

Image nodes write the re-runnable workflow as a PNG text chunk (and as JSON in the EXIF
ImageDescription of WebP and JPEG files). PNG is read here with the standard library only;
WebP and JPEG need Pillow, imported when such a file is given.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from .errors import InvalidWorkflow, Problem
from .workflow import Workflow

#: the text entry holding the workflow document (JSON) that re-makes the image
WORKFLOW_KEY = "flow.workflow"
#: the text entry holding the parameters of the image (JSON: prompt, seed, steps, model...)
PARAMETERS_KEY = "flow.parameters"
#: EXIF tag where WebP and JPEG files carry the same entries, as one JSON object
EXIF_DESCRIPTION = 0x010E
IMAGE_SUFFIXES = (".png", ".webp", ".jpg", ".jpeg")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_TEXT = 64 << 20  # a compressed chunk may not inflate beyond this (zip bombs)


def png_text(path: str | Path) -> dict[str, str]:
    """Every tEXt, zTXt and iTXt entry of a PNG file (keyword -> text)."""
    entries: dict[str, str] = {}
    with open(path, "rb") as fh:
        if fh.read(8) != _PNG_SIGNATURE:
            raise ValueError("not a PNG file")
        while True:
            head = fh.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            data = fh.read(length)
            fh.read(4)  # CRC
            if kind == b"IEND" or len(data) < length:
                break
            if kind in (b"tEXt", b"zTXt", b"iTXt"):
                key, text = _text_chunk(kind, data)
                if key is not None:
                    entries[key] = text
    return entries


def _text_chunk(kind: bytes, data: bytes) -> tuple[str | None, str]:
    keyword, _, rest = data.partition(b"\0")
    key = keyword.decode("latin-1")
    if kind == b"tEXt":
        return key, rest.decode("latin-1")
    if kind == b"zTXt":
        return key, _inflate(rest[1:]).decode("latin-1")
    compressed, rest = rest[:1] == b"\1", rest[2:]
    _, _, rest = rest.partition(b"\0")  # language tag
    _, _, rest = rest.partition(b"\0")  # translated keyword
    return key, (_inflate(rest) if compressed else rest).decode("utf-8", "replace")


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, _MAX_TEXT)
    if inflater.unconsumed_tail:
        raise ValueError(f"a text chunk inflates beyond {_MAX_TEXT} bytes")
    return out


def image_entries(path: str | Path) -> dict[str, str]:
    """The text entries embedded in a saved image (PNG chunks, or the JSON in WebP/JPEG EXIF)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return png_text(path)
    from PIL import Image  # heavy: only for WebP and JPEG files

    with Image.open(path) as image:
        raw = image.getexif().get(EXIF_DESCRIPTION)
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {k: v for k, v in found.items() if isinstance(v, str)} if isinstance(found, dict) else {}


def workflow_from_image(path: str | Path) -> Workflow:
    """The workflow embedded in an image flow saved; InvalidWorkflow saying why when there is none."""
    try:
        entries = image_entries(path)
    except (OSError, ValueError, zlib.error) as exc:
        raise InvalidWorkflow([Problem(f"cannot read {str(path)!r} as an image: {exc}")]) from exc
    text = entries.get(WORKFLOW_KEY)
    if text is None:
        raise InvalidWorkflow([Problem(
            f"{str(path)!r} carries no workflow (no {WORKFLOW_KEY!r} entry); only images saved by flow's "
            "image nodes with embedding on can be re-run")])
    return Workflow.loads(text, source=str(path))
