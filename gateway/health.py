"""Operations: health (no token needed) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from engine import version
from engine.models.device import torch_info

from .keys import CATALOGUE, ENGINE, JOBS, METRICS, STARTED


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body: dict[str, Any] = {"status": "ok", "version": version(),
                            "uptime": time.time() - request.app[STARTED],
                            "jobs": await asyncio.to_thread(request.app[JOBS].counts),  # off the loop: a query
                            "endpoints": sorted(request.app[CATALOGUE].endpoints)}
    stuck = engine.stuck_workers()  # node threads still running work of jobs that ended (a stalled backend)
    body["workers"] = {"stuck": len(stuck),
                       "stuck_nodes": [{"node_type": s["node_type"], "stuck_s": s["stuck_s"]} for s in stuck]}
    if engine.models is not None:
        body["models"] = await asyncio.get_running_loop().run_in_executor(None, _model_health, engine.models)
    dispatch = request.app[JOBS].dispatch
    if dispatch is not None:  # worker mode: the workers that answer, their queues, models and memory
        body["broker"] = await asyncio.get_running_loop().run_in_executor(None, dispatch.health)
    problems = request.app[CATALOGUE].problems
    if problems:
        body["workflow_problems"] = problems
    return web.json_response(body)


def _model_health(models) -> dict:
    report = models.report().to_json()
    if report["device"] is None and models.probing:
        report["device"] = "probing"
    torch = torch_info() or models.torch  # this process's once a model loaded it, else what the probe saw
    if torch is not None:
        report["torch"] = torch
    ollama = getattr(models, "ollama", None)
    if ollama is not None:
        try:
            report["ollama"] = {"reachable": True, "loaded": [m.name for m in ollama.loaded()]}
        except Exception as exc:  # reported, not raised: health must answer
            report["ollama"] = {"reachable": False, "error": str(exc)}
    return report


async def metrics(request: web.Request) -> web.Response:
    text = request.app[METRICS].render(await asyncio.to_thread(request.app[JOBS].counts), request.app[ENGINE])
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
