"""Reading requests with limits: JSON bodies (depth, number size, no NaN), query parameters.

Every parser here answers a hostile value with :class:`InvalidRequest` (400) naming the part
of the request at fault; nothing a client sends reaches a handler as an exception of Python's.
"""

from __future__ import annotations

import asyncio
import math
import re

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from engine.errors import InvalidRequest
from engine.jsonsafe import loads
from engine.large import quiet_gc

#: bodies larger than this are parsed off the event loop
_THREAD_PARSE_BYTES = 256 << 10


def _loads_large(data: bytes):
    with quiet_gc():  # a large graph is ~200k dicts: no full garbage collection while they are built
        return loads(data)


async def json_body(request: web.Request, *, required: bool = True) -> dict:
    """The request's JSON object (an empty body is ``{}`` when not required)."""
    data = await request.read()
    if not data.strip():
        if required:
            raise InvalidRequest("the request needs a JSON object body")
        return {}
    try:
        if len(data) > _THREAD_PARSE_BYTES:  # a large workflow: parse without stalling other requests
            body = await asyncio.get_running_loop().run_in_executor(None, _loads_large, data)
        else:
            body = loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"the body must be a JSON object, got {type(body).__name__}")
    return body


def wants_async(request: web.Request, default: bool = False) -> bool:
    """``Prefer: respond-async`` or ``?wait=false`` (``?wait=true`` asks to wait where 202 is the default)."""
    if "respond-async" in request.headers.get("Prefer", ""):
        return True
    wait = query_choice(request, "wait", ("true", "false", "1", "0", "yes", "no"), None)
    return default if wait is None else wait in ("false", "0", "no")


def query_number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    """A numeric query parameter within bounds, or a 400 naming it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw) if len(raw) <= 32 else math.nan
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        raise InvalidRequest(f"query parameter {name} must be a number between {low:g} and {high:g}, "
                             f"got {raw[:40]!r}")
    return value


def query_int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    """A whole-number query parameter within bounds (ASCII digits only), or a 400 naming it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,18}", raw) or not low <= int(raw) <= high:
        raise InvalidRequest(f"query parameter {name} must be a whole number between {low} and {high}, "
                             f"got {raw[:40]!r}")
    return int(raw)


def query_choice(request: web.Request, name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    """A query parameter that takes one of ``choices`` (case-insensitive), or a 400 listing them."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() not in choices:
        raise InvalidRequest(f"query parameter {name} must be one of {', '.join(choices)}, got {raw[:40]!r}")
    return raw.lower()


async def read_limited(stream, limit: int, too_large: str) -> bytes:
    """A body or multipart part read in chunks, refused (413, ``too_large``) as soon as it passes ``limit`` bytes."""
    from engine.errors import TooLarge

    chunks, size = [], 0
    read = getattr(stream, "read_chunk", None) or stream.read
    try:
        while chunk := await read(1 << 16):
            size += len(chunk)
            if size > limit:
                raise TooLarge(too_large)
            chunks.append(chunk)
    except (HttpProcessingError, ValueError) as exc:  # a part cut short, a broken boundary
        raise _malformed(exc) from None
    return b"".join(chunks)


def _malformed(exc: Exception) -> InvalidRequest:
    return InvalidRequest(f"the request body is malformed: {parser_problem(exc)}")


def parser_problem(exc: Exception) -> str:
    """What a body parser (aiohttp's multipart reader) found wrong, on one line of at most 200 characters."""
    return " ".join(str(getattr(exc, "message", None) or exc).split())[:200]


async def form_parts(request: web.Request, max_parts: int, what: str = "a form"):
    """The parts of a multipart/form-data body, at most ``max_parts``; a part that is itself multipart
    (a nested form) or one part too many answers 400."""
    from aiohttp import BodyPartReader

    try:
        reader = await request.multipart()
    except (HttpProcessingError, ValueError, AssertionError) as exc:  # no boundary, not multipart at all
        raise _malformed(exc) from None
    for count in range(max_parts + 1):
        try:
            part = await reader.next()
        except (HttpProcessingError, ValueError) as exc:  # e.g. a part's header line that is not a header
            raise _malformed(exc) from None
        if part is None:
            return
        if count == max_parts:
            raise InvalidRequest(f"{what} takes at most {max_parts} form parts")
        if not isinstance(part, BodyPartReader):
            raise InvalidRequest("a form part may not be a multipart body itself; send each file as a part of its own")
        yield part
