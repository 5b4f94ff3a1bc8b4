"""The input folder: images uploaded over HTTP (`POST /inputs`) or named on the command line.

An input is stored under a name made from its content (``<sha256 prefix>.<format>``), so the
same picture uploaded twice is one file, a name never points at other bytes later, and a run's
cache key (which holds the name) stays right. The answer's ``ref`` (``input:NAME``) is what
image params accept (``image.load``'s ``path``). PIL is imported inside the functions that use it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from engine.errors import FlowError, InvalidRequest, TooLarge, UnsupportedMediaType

from .parse import form_parts, read_limited

#: an upload larger than this is refused before it is decoded
MAX_INPUT_BYTES = 32 << 20
_TOO_LARGE = f"the image is more than the limit of {MAX_INPUT_BYTES} bytes; send a smaller one"
#: and a picture with more pixels than this (decompression bombs)
MAX_INPUT_PIXELS = 4096 * 4096
#: what an input may be: the formats image.load reads
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif"}
#: raw bodies POST /inputs takes besides multipart/form-data
RAW_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "application/octet-stream"})
REF_PREFIX = "input:"


def store_input(folder: str | Path, raw: bytes) -> dict:
    """Check ``raw`` is a real image within the limits, write it into ``folder``; describe it (ref, size...)."""
    from PIL import Image, UnidentifiedImageError

    if not raw:
        raise InvalidRequest("the upload is empty; send a PNG, JPEG, WebP or GIF image")
    if len(raw) > MAX_INPUT_BYTES:
        raise TooLarge(f"the image is {len(raw)} bytes, more than the limit of {MAX_INPUT_BYTES}; send a smaller one")
    try:
        with Image.open(io.BytesIO(raw)) as opened:
            fmt, (width, height) = opened.format, opened.size
            if fmt not in FORMATS:
                raise UnsupportedMediaType(f"a {fmt} image is not taken; send a PNG, JPEG, WebP or GIF image")
            if width * height > MAX_INPUT_PIXELS:
                raise TooLarge(f"the image is {width}x{height}, more than {MAX_INPUT_PIXELS} pixels; resize it first")
            opened.verify()  # a truncated or corrupt file fails here, not later in a job
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType("the upload is not an image PIL can read; send a PNG, JPEG, WebP or GIF "
                                   "image") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"the image cannot be read ({exc}); send a complete PNG, JPEG, WebP or GIF "
                             "image") from exc
    digest = hashlib.sha256(raw).hexdigest()
    name = digest[:24] + FORMATS[fmt]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not target.is_file():
        # a temporary file of its own (two uploads of one image at once must not share one), then
        # renamed: atomic, a reader never sees half a file
        handle, partial = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(raw)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return {"ref": REF_PREFIX + name, "name": name, "width": width, "height": height, "format": fmt.lower(),
            "bytes": len(raw), "sha256": digest}


async def post_input(request):
    """POST /inputs: one image (multipart/form-data with a file part, or the raw image as the body)."""
    import asyncio

    from aiohttp import web
    from aiohttp.http_exceptions import HttpProcessingError

    from .keys import SETTINGS

    if request.content_type == "multipart/form-data":
        try:
            raw = await _multipart_file(request)
        except (ValueError, LookupError, HttpProcessingError) as exc:
            raise InvalidRequest(f"the body is not a readable multipart form ({type(exc).__name__}); send "
                                 "multipart/form-data with one file part named 'file'") from exc
    else:
        limit = min(MAX_INPUT_BYTES, request.app[SETTINGS].max_body_bytes)
        raw = await read_limited(request.content, limit, f"the image is more than the limit of {limit} bytes; "
                                                         "send a smaller one")
    stored = await asyncio.to_thread(store_input, request.app[SETTINGS].input_dir, raw)
    return web.json_response(stored, status=201)


async def _multipart_file(request) -> bytes:
    found = None
    async for part in form_parts(request, 8, "an upload"):
        if part.filename is None and part.name not in ("file", "image"):
            await part.release()  # a text field: ignored
            continue
        if found is not None:
            raise InvalidRequest("send one image per upload")
        found = await read_limited(part, MAX_INPUT_BYTES, _TOO_LARGE)
    if found is None:
        raise InvalidRequest("no file in the form; send the image as a part named 'file'")
    return found


def upload(base_url: str, token: str, raw: bytes, timeout: float = 60.0) -> dict:
    """Send one image to a gateway's POST /inputs (the CLI's --server runs); its answer."""
    request = urllib.request.Request(base_url.rstrip("/") + "/inputs", data=raw, method="POST",
                                     headers={"Content-Type": "application/octet-stream",
                                              "Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read() or b"{}").get("error", {}).get("message") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        raise FlowError(f"the gateway refused the upload ({exc.code}): {message}") from None
    except urllib.error.URLError as exc:
        raise FlowError(f"cannot reach the gateway at {base_url}: {exc.reason}") from None
