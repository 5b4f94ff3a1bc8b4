"""The catalogue: node types, saved workflows, endpoints, the OpenAPI document and the docs page."""

from __future__ import annotations

from aiohttp import web

from engine import version

from .keys import CATALOGUE, ENGINE


async def nodes(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].registry.describe())


async def workflows(request: web.Request) -> web.Response:
    return web.json_response(request.app[CATALOGUE].describe_workflows())


async def workflow(request: web.Request) -> web.Response:
    found = request.app[CATALOGUE].workflows.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(text=f"no saved workflow {request.match_info['name']!r}; GET /workflows lists them")
    return web.json_response(found.doc)


async def endpoints(request: web.Request) -> web.Response:
    return web.json_response([e.describe() for _, e in sorted(request.app[CATALOGUE].endpoints.items())])


async def openapi(request: web.Request) -> web.Response:
    from .openapi import build_openapi  # the document is made from the route table, which lists this handler
    from .routes import active_routes

    return web.json_response(build_openapi(request.app[CATALOGUE], active_routes(request.app[ENGINE]), version()))


async def docs(request: web.Request) -> web.Response:
    from .docs import render_docs
    from .routes import active_routes

    engine = request.app[ENGINE]
    return web.Response(text=render_docs(request.app[CATALOGUE], engine.registry, active_routes(engine)),
                        content_type="text/html")
