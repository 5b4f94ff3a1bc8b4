"""Files: outputs under the output folder and the web page's own, through the one path helper."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from engine.paths import UnsafePath, servable_file

from .keys import SETTINGS

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


async def files(request: web.Request) -> web.StreamResponse:
    """An output file, only from the output folder: never a hidden, database or temporary file."""
    try:
        path = servable_file(request.app[SETTINGS].output_dir, request.match_info["path"])
    except UnsafePath:
        raise web.HTTPNotFound(text="no such file") from None
    return web.FileResponse(path)


async def web_file(request: web.Request) -> web.StreamResponse:
    """The web page's own files (through the same path helper as outputs)."""
    try:
        path = servable_file(WEB_DIR, request.match_info["path"])
    except UnsafePath:
        raise web.HTTPNotFound(text="no such file of the web page") from None
    return web.FileResponse(path)


async def index(request: web.Request) -> web.StreamResponse:
    page = WEB_DIR / "index.html"
    if page.is_file():
        return web.FileResponse(page)
    raise web.HTTPFound("/docs")
