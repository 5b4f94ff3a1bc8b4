"""POST /workflows/extract: the workflow a file flow saved carries, read back for the graph editor.

The body is the file (PNG, WebP, JPEG, WAV, FLAC, OGG, MP3, MP4, GIF, or a JSON sidecar). The
reader is the engine's one reader (:func:`engine.embedded.read_description`), the same that
`flow run FILE` uses; a file that carries nothing readable answers 400 ``no_embedded_workflow``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from aiohttp import web

from .keys import CATALOGUE, ENGINE


def extract(data: bytes, registry, saved: Callable[[str], dict | None]) -> dict[str, Any]:
    """The response body for a saved file's bytes: ``{"format", "workflow", "params", "parameters"}``.

    ``workflow`` is a document the web page loads as is, ``params`` the values to fill its params
    with, ``parameters`` what the file says made it (prompt, seed, model...).
    """
    from engine.embedded import read_description
    from engine.provenance import rerunnable

    found = read_description(data, name="the uploaded file")
    doc, params = rerunnable(found, registry, saved)
    return {"format": found["format"], "workflow": doc, "params": params, "parameters": found["params"]}


async def workflow_extract(request: web.Request) -> web.Response:
    """The workflow a file flow saved carries; the body is the file."""
    data = await request.read()
    catalogue, registry = request.app[CATALOGUE], request.app[ENGINE].registry

    def saved(name: str) -> dict | None:
        found = catalogue.workflows.get(name)
        return found.doc if found is not None else None

    body = await asyncio.get_running_loop().run_in_executor(None, extract, data, registry, saved)
    return web.json_response(body)
