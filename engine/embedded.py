"""The one reader of what saved files carry: `flow run FILE`, the gateway and the web page re-run a file with it.

Every save node stores the same description (:mod:`engine.provenance`): ``{"params",
"workflow"}``. PNG keeps it as text chunks (:data:`PARAMETERS_KEY`, :data:`WORKFLOW_KEY`, plus
the ``parameters`` text other image tools read); WebP and JPEG as JSON in the EXIF
ImageDescription; GIF in its comment; WAV, FLAC, OGG and MP3 in the comment tag; MP4 in its
``©cmt`` metadata; text, JSON, and files whose format could not hold it, in a ``<file>.json``
sidecar. The format is found by the bytes, never by the name.

The bytes are untrusted (an upload, a file from anywhere): every size is bounded, the JSON is
strict (:mod:`engine.jsonsafe`), and whatever goes wrong is :class:`NoEmbeddedWorkflow`.
PNG and MP4 are read with the standard library; the other formats import Pillow or soundfile.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import NoEmbeddedWorkflow
from .jsonsafe import loads
from .provenance import rerunnable, sidecar

#: the PNG text entry holding the workflow document (JSON) that re-makes the image
WORKFLOW_KEY = "flow.workflow"
#: the PNG text entry holding the parameters of the image (JSON: prompt, seed, steps, model...)
PARAMETERS_KEY = "flow.parameters"
#: EXIF tag where WebP and JPEG files carry the same entries, as one JSON object
EXIF_DESCRIPTION = 0x010E
#: the formats read back, as `format` names them
FORMATS = ("png", "webp", "jpg", "gif", "wav", "flac", "ogg", "mp3", "mp4", "json")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_TEXT = 64 << 20  # a description (or a compressed chunk inflated) may not be larger (zip bombs)
_MAX_BOXES = 100_000  # MP4 boxes walked at one level before the file is called broken
_KINDS = {".png": "an image", ".webp": "an image", ".jpg": "an image", ".jpeg": "an image", ".gif": "a video",
          ".mp4": "a video", ".wav": "audio", ".flac": "audio", ".ogg": "audio", ".mp3": "audio"}
_LISTED = "PNG, WebP, JPEG, WAV, FLAC, OGG, MP3, MP4 or GIF file flow saved (or its .json sidecar)"


def read_description(source: str | os.PathLike | bytes, *, name: str | None = None) -> dict:
    """``{"format", "params", "workflow"}`` stored in a file flow saved (a path, or the file's bytes).

    ``workflow`` is the document that re-makes the file (None when the file names none), ``params``
    the parameters of what it holds. Given a path, a ``<file>.json`` sidecar answers when the file
    itself holds nothing readable. Raises :class:`NoEmbeddedWorkflow`, and nothing else, when there
    is no description or the file is broken or hostile.
    """
    return _read_description(source, name, beside=True)


def _read_description(source, name: str | None, beside: bool) -> dict:
    if isinstance(source, (bytes, bytearray, memoryview)):
        path, shown = None, name or "the file"
        opened: Callable[[], BinaryIO] = lambda: io.BytesIO(bytes(source))  # noqa: E731
    else:
        path = Path(source)
        shown = repr(name or str(path))
        opened = lambda: open(path, "rb")  # noqa: E731
    fmt, found, failure = None, None, None
    try:
        with opened() as fh:
            fmt = sniff(fh.read(64))
            if fmt is not None:
                fh.seek(0)
                found = _read(fh, fmt)
    except NoEmbeddedWorkflow as exc:
        failure = str(exc)
    except Exception as exc:  # untrusted bytes: whatever a parser raised, the file is at fault
        failure = f"cannot read {shown} as {fmt.upper() if fmt else 'a file'}: {_reason(exc)}"
    if found is None and beside and path is not None and _is_file(sidecar(path)):
        return {**_read_description(sidecar(path), None, beside=False), "format": fmt or "json"}
    if failure is not None:
        raise NoEmbeddedWorkflow(failure)
    if fmt is None:
        suffix = path.suffix.lower() if path is not None else ""
        if suffix in _KINDS:
            raise NoEmbeddedWorkflow(f"cannot read {shown} as {_KINDS[suffix]}: not a {suffix[1:].upper()} file "
                                     f"(its bytes are none of the formats flow saves); give a {_LISTED}")
        raise NoEmbeddedWorkflow(f"{shown} is not one of the files flow saves; give a {_LISTED}")
    if found is None:
        raise NoEmbeddedWorkflow(f"{shown} carries no workflow (no flow metadata in this {fmt.upper()} file); only "
                                 "files written by flow's save nodes, with their metadata, can be re-run")
    return {"format": fmt, **found}


def workflow_from_file(path: str | os.PathLike, registry=None, saved: Callable[[str], dict | None] | None = None):
    """The :class:`~engine.workflow.Workflow` that re-makes a file flow saved (see :func:`read_description`).

    ``registry`` and ``saved`` (a saved workflow's document by name) re-run older files that carry
    only a generator's params or a saved workflow's name (:func:`engine.provenance.rerunnable`).
    """
    from .workflow import Workflow

    doc, _ = rerunnable(read_description(path), registry, saved)
    return Workflow.from_dict(doc, source=str(path))


def sniff(head: bytes) -> str | None:
    """The format of a file from its first bytes (one of :data:`FORMATS`), None when flow saves no such file."""
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head[:4] == b"RIFF":
        return {b"WEBP": "webp", b"WAVE": "wav"}.get(head[8:12])
    if head[:3] == b"\xff\xd8\xff":
        return "jpg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        return "json"
    return None


def _read(fh: BinaryIO, fmt: str) -> dict | None:
    """The description in ``fh`` (a file of format ``fmt``), None when it holds none."""
    if fmt == "png":
        return _from_entries(_png_entries(fh))
    if fmt == "json":
        body = _json(_bounded(fh.read(_MAX_TEXT + 1)), "the file")
        return _described(body, "the file") if "nodes" not in body else {"params": {}, "workflow": body}
    text = container_comment(fh, fmt)
    if not text:
        return None
    body = _json(text, f"the {fmt.upper()} file's metadata")
    if fmt in ("webp", "jpg") and (WORKFLOW_KEY in body or PARAMETERS_KEY in body):
        return _from_entries({k: v for k, v in body.items() if isinstance(v, str)})  # an image's text entries
    return _described(body, f"the {fmt.upper()} file's metadata")


def container_comment(source: str | os.PathLike | BinaryIO, fmt: str | None = None) -> str:
    """The description text a non-PNG file stores ('' when none): EXIF, GIF comment, audio tag or MP4 ©cmt."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fh:
            return container_comment(fh, fmt)
    fh = source
    if fmt is None:
        fmt = sniff(fh.read(64))
        fh.seek(0)
    if fmt == "mp4":
        return _mp4_comment(fh)
    if fmt in ("wav", "flac", "ogg", "mp3"):
        import soundfile as sf

        with sf.SoundFile(fh) as audio:
            return _bounded(audio.comment or "")
    if fmt in ("webp", "jpg", "gif"):
        from PIL import Image

        with Image.open(fh) as image:
            if fmt == "gif":
                return _bounded(image.info.get("comment", b"")).decode("utf-8")
            return _bounded(str(image.getexif().get(EXIF_DESCRIPTION) or ""))
    raise ValueError(f"flow stores no description in {fmt or 'this kind of'} file")


def _described(body: dict, what: str) -> dict | None:
    """``{"params", "workflow"}`` from a stored JSON object, None when it holds neither."""
    if "params" not in body and "workflow" not in body:
        return None
    params, workflow = body.get("params", {}), body.get("workflow")
    if not isinstance(params, dict) or not isinstance(workflow, (dict, type(None))):
        raise NoEmbeddedWorkflow(f"{what} is not a description flow wrote (params must be an object, workflow an "
                                 "object or null)")
    return {"params": params, "workflow": workflow}


def _from_entries(entries: dict[str, str]) -> dict | None:
    """The description an image's text entries hold (``flow.parameters`` and ``flow.workflow``)."""
    if WORKFLOW_KEY not in entries and PARAMETERS_KEY not in entries:
        return None
    body = {"params": _json(entries.get(PARAMETERS_KEY, "{}"), f"the {PARAMETERS_KEY!r} entry")}
    if WORKFLOW_KEY in entries:
        body["workflow"] = _json(entries[WORKFLOW_KEY], f"the {WORKFLOW_KEY!r} entry")
    return _described(body, "the image's entries")


def _json(text: str | bytes, what: str) -> dict:
    try:
        value = loads(text)
    except ValueError as exc:  # UnicodeDecodeError included
        raise NoEmbeddedWorkflow(f"{what} is not valid JSON: {_reason(exc)}") from None
    if not isinstance(value, dict):
        raise NoEmbeddedWorkflow(f"{what} is not a JSON object")
    return value


def _bounded(text):
    if len(text) > _MAX_TEXT:
        raise NoEmbeddedWorkflow(f"the stored description is larger than {_MAX_TEXT >> 20} MiB")
    return text


def _reason(exc: BaseException) -> str:
    text = re.sub(r"^Error opening .*?: ", "", str(exc))  # libsndfile names the file object: noise
    return (text or type(exc).__name__)[:300]


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long, a folder not readable: no sidecar to read
        return False


# -- PNG ---------------------------------------------------------------------------------------


def png_text(path: str | Path) -> dict[str, str]:
    """Every tEXt, zTXt and iTXt entry of a PNG file (keyword -> text)."""
    with open(path, "rb") as fh:
        return _png_entries(fh)


def _png_entries(fh: BinaryIO) -> dict[str, str]:
    if fh.read(8) != _PNG_SIGNATURE:
        raise ValueError("not a PNG file")
    entries: dict[str, str] = {}
    total = 0
    while True:
        head = fh.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            data = fh.read(min(length, _MAX_TEXT + 1))
            if len(data) < length:
                break  # truncated (or larger than any description): what came before stands
            key, text = _text_chunk(kind, data)
            total += len(text)
            if total > _MAX_TEXT:
                raise ValueError(f"the text chunks hold more than {_MAX_TEXT >> 20} MiB")
            entries[key] = text
        elif kind == b"IEND":
            break
        else:
            fh.seek(length, io.SEEK_CUR)  # pixels: skipped, never read
        fh.read(4)  # CRC
    return entries


def _text_chunk(kind: bytes, data: bytes) -> tuple[str, str]:
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
        raise ValueError(f"a text chunk inflates beyond {_MAX_TEXT >> 20} MiB")
    return out


def image_entries(path: str | Path) -> dict[str, str]:
    """The text entries embedded in a saved image (PNG chunks, or the JSON in WebP/JPEG EXIF)."""
    with open(path, "rb") as fh:
        if sniff(fh.read(64)) == "png":
            fh.seek(0)
            return _png_entries(fh)
        fh.seek(0)
        text = container_comment(fh)
    try:
        found = loads(text) if text else {}
    except ValueError:
        return {}
    return {k: v for k, v in found.items() if isinstance(v, str)} if isinstance(found, dict) else {}


# -- MP4 ---------------------------------------------------------------------------------------

#: where ffmpeg's mp4 muxer puts the `comment` tag: moov/udta/meta/ilst/©cmt/data
_COMMENT_PATH = (b"moov", b"udta", b"meta", b"ilst", b"\xa9cmt", b"data")


def _mp4_comment(fh: BinaryIO) -> str:
    """The comment an MP4 file stores in its iTunes-style metadata ('' when none), read box by box."""
    start, end = 0, fh.seek(0, io.SEEK_END)
    for want in _COMMENT_PATH:
        for kind, body, box_end in _boxes(fh, start, end):
            if kind == want:
                start, end = body, box_end
                break
        else:
            return ""
        if want == b"meta":  # an ISO full box (version and flags first); QuickTime's has none
            fh.seek(start)
            if fh.read(8)[4:8] != b"hdlr":
                start += 4
    fh.seek(start + 8)  # data: a type indicator and a locale, then the text
    return _bounded(fh.read(end - start - 8)).decode("utf-8")


def _boxes(fh: BinaryIO, start: int, end: int):
    """(type, body start, end) of each box between ``start`` and ``end``; ValueError when one overflows."""
    offset = start
    for _ in range(_MAX_BOXES):
        if offset + 8 > end:
            return
        fh.seek(offset)
        size, kind = struct.unpack(">I4s", fh.read(8))
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", fh.read(8))
            header = 16
        elif size == 0:
            size = end - offset  # to the end of the enclosing box
        if size < header or offset + size > end:
            raise ValueError(f"a broken MP4 box ({kind!r} of {size} bytes at {offset})")
        yield kind, offset + header, offset + size
        offset += size
    raise ValueError(f"more than {_MAX_BOXES} MP4 boxes at one level")
