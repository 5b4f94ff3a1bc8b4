"""Models: what is on disk, what the manager holds, pulling (a job) and unloading."""

from __future__ import annotations

import asyncio

from aiohttp import web

from engine import Workflow
from engine.errors import InvalidRequest

from .jobs import answer
from .keys import ENGINE, JOBS
from .parse import json_body


async def models_list(request: web.Request) -> web.Response:
    models = request.app[ENGINE].models
    local = await asyncio.get_running_loop().run_in_executor(None, models.store.list)
    return web.json_response({"models": [m.to_json() for m in local]})


async def models_loaded(request: web.Request) -> web.Response:
    models = request.app[ENGINE].models

    def report():
        models.device  # probe the device and budget first (imports torch once) so the report names them
        body = models.report().to_json()
        if dispatch is not None:  # worker mode: each worker's models and memory (they run the jobs)
            body["workers"] = dispatch.health()["workers"]
        return body

    dispatch = request.app[JOBS].dispatch
    return web.json_response(await asyncio.get_running_loop().run_in_executor(None, report))


async def models_pull(request: web.Request) -> web.Response:
    body = await json_body(request)
    ref = body.get("ref")
    if not isinstance(ref, str):
        raise InvalidRequest("the body needs 'ref', e.g. {\"ref\": \"hf:stabilityai/sd-turbo\"}")
    request.app[ENGINE].models.store.parse(ref)  # a bad reference is a 400 now, not a failed job later
    inputs = {"ref": ref}
    if body.get("variant"):
        inputs["variant"] = body["variant"]
    workflow = Workflow.from_dict({"name": "pull", "nodes": {"pull": {"type": "model.pull", "inputs": inputs}}})
    record = await request.app[JOBS].accept(workflow, {}, name="model.pull")
    return await answer(request, record, async_default=True)


async def models_unload(request: web.Request) -> web.Response:
    body = await json_body(request, required=False)
    ref = body.get("ref")
    models = request.app[ENGINE].models
    result = await asyncio.get_running_loop().run_in_executor(None, lambda: models.unload(ref))
    return web.json_response(result)
