"""The gateway: every saved endpoint workflow as a route, jobs, events, catalogue, models, health.

`create_app(engine, settings)` builds the aiohttp application; `flow serve` runs it. Handlers
stay short: parse, call the engine (through the job queue), respond. One middleware turns
named errors into JSON bodies with the right status; no traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from engine import Engine, FlowError, Problem, Workflow
from engine.catalogue import Catalogue, Endpoint
from engine.errors import ModelNotFound, redact_paths
from engine.jobs import JobQueue, QueueFull, terminal_event
from engine.jobstore import STATES, JobRecord, JobStore
from engine.openapi import build_openapi
from engine.paths import UnsafePath, servable_file
from engine.settings import Settings
from gateway.metrics import Metrics
from gateway.parse import InvalidRequest, json_body, loads, query_choice, query_int, query_number, wants_async
from gateway.present import Presenter, dumps, job_status
from gateway.security import Policy, cors_middleware, guard_middleware, security_headers

VERSION = "0.1.0"
WEB_DIR = Path(__file__).resolve().parent / "web"
log = logging.getLogger("flow.server")

ENGINE = web.AppKey("engine", Engine)
SETTINGS = web.AppKey("settings", Settings)
CATALOGUE = web.AppKey("catalogue", Catalogue)
JOBS = web.AppKey("jobs", JobQueue)
PRESENTER = web.AppKey("presenter", Presenter)
METRICS = web.AppKey("metrics", Metrics)
STARTED = web.AppKey("started", float)

MAX_PROBLEMS = 100  # an error body lists at most this many problems, and their count


def error_body(kind: str, message: str, problems: list[Problem] | None = None, **extra) -> dict:
    """The one error shape: ``{"error": {"type", "message", "problems"?, "count"?}}``."""
    body: dict[str, Any] = {"type": kind, "message": message, **extra}
    if problems:
        body["problems"] = [p.to_json() for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            body["count"] = len(problems)
    return {"error": body}


def _openai_shape(status: int, body: dict) -> dict:
    """``/v1`` answers in OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    error = body["error"]
    first = (error.get("problems") or [{}])[0]
    return {"error": {"message": error["message"], "type": "server_error" if status >= 500 else
                      "invalid_request_error", "param": first.get("input") or first.get("param"),
                      "code": error["type"]}}


def _error_response(request: web.Request, status: int, body: dict, headers=None) -> web.Response:
    if request.path.startswith("/v1/"):
        body = _openai_shape(status, body)
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


_HTTP_KINDS = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}


@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Named errors -> JSON with a status; HTTP errors -> the same shape; anything else -> a plain 500."""
    try:
        return await handler(request)
    except FlowError as exc:
        status = exc.status if 400 <= exc.status < 600 else 500
        extra = {}
        if isinstance(exc, ModelNotFound):
            extra["pull_command"] = exc.pull_command
        headers = {}
        if isinstance(exc, QueueFull):
            headers["Retry-After"] = str(exc.retry_after)
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="flow"'
        body = error_body(exc.kind, redact_paths(str(exc)), getattr(exc, "problems", None), **extra)
        return _error_response(request, status, body, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = _HTTP_KINDS.get(exc.status, "http_error")
        text = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else ""
        message = text or {404: "nothing is at this path; GET /docs lists the routes",
                           405: f"{request.method[:16]} is not allowed on this path; GET /docs lists the routes",
                           413: "the request body is too large (FLOW_MAX_BODY_BYTES)"}.get(exc.status, exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return _error_response(request, exc.status, error_body(kind, message), headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error_response(request, 500, error_body("internal", "internal error; the server log has the details"))


def job_url(request: web.Request, job_id: str) -> str:
    return str(request.app.router["job"].url_for(id=job_id))


def _inline(request: web.Request) -> bool:
    return query_choice(request, "media", ("url", "base64"), "url") == "base64"


async def answer(request: web.Request, record: JobRecord, *, async_default: bool = False) -> web.Response:
    """202 with the job URL, or wait (bounded) and answer the result; a failed job answers its error."""
    jobs, settings = request.app[JOBS], request.app[SETTINGS]
    accepted = {"id": record.id, "state": record.state, "url": job_url(request, record.id)}
    inline = _inline(request)
    if wants_async(request, async_default):
        return web.json_response(accepted, status=202, headers={"Location": accepted["url"]})
    timeout = query_number(request, "timeout", settings.request_timeout, 0, 24 * 3600)
    record = await jobs.wait(record.id, timeout)
    if not record.terminal:
        return web.json_response({**accepted, "state": record.state}, status=202,
                                 headers={"Location": accepted["url"]})
    body = request.app[PRESENTER].job_json(record, inline=inline)
    if record.state == "finished":
        return web.json_response(body, dumps=dumps)
    return web.json_response({**body, "error": record.error or {}}, status=job_status(record.error), dumps=dumps)


# -- handlers ------------------------------------------------------------------------------------

def endpoint_handler(endpoint: Endpoint):
    """The handler of one saved endpoint: the body fills the workflow's params."""

    async def handle(request: web.Request) -> web.Response:
        params = await json_body(request, required=False)
        record = request.app[JOBS].submit(endpoint.workflow, params, name=endpoint.name)
        return await answer(request, record)

    handle.__name__ = f"endpoint_{endpoint.name}"
    return handle


async def post_job(request: web.Request) -> web.Response:
    body = await json_body(request)
    if "workflow" not in body:
        raise InvalidRequest("the body needs a 'workflow' (a workflow document) and may give 'params', 'outputs'")
    params, outputs = body.get("params") or {}, body.get("outputs")
    if not isinstance(params, dict):
        raise InvalidRequest("'params' must be an object of param name -> value")
    if outputs is not None and not (isinstance(outputs, list) and all(isinstance(o, str) for o in outputs)):
        raise InvalidRequest("'outputs' must be a list of output names")
    engine = request.app[ENGINE]

    def prepare() -> Workflow:
        # Parsing and validating a large graph takes a while: do it off the event loop.
        workflow = Workflow.from_dict(body["workflow"])
        engine.compile(workflow).bind(params)
        return workflow

    workflow = await asyncio.get_running_loop().run_in_executor(None, prepare)
    record = request.app[JOBS].submit(workflow, params, name=workflow.name, outputs=outputs)
    return await answer(request, record, async_default=True)


async def list_jobs(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 50, 1, 500)
    before = query_int(request, "before", None, 0, 2**62)
    state = query_choice(request, "state", STATES, None)
    records = request.app[JOBS].page(state=state, limit=limit, before=before)
    jobs = [{**r.to_json(), "seq": r.seq, "url": job_url(request, r.id)} for r in records]
    page = {"jobs": jobs, "counts": request.app[JOBS].counts()}
    if len(records) == limit:
        page["next"] = str(request.rel_url.update_query(before=records[-1].seq))
    return web.json_response(page, dumps=dumps)


async def get_job(request: web.Request) -> web.Response:
    record = request.app[JOBS].get(request.match_info["id"])
    body = request.app[PRESENTER].job_json(record, inline=_inline(request), with_workflow=True)
    return web.json_response(body, dumps=dumps)


async def delete_job(request: web.Request) -> web.Response:
    record = request.app[JOBS].cancel(request.match_info["id"])
    return web.json_response(request.app[PRESENTER].job_json(record))


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of one job; ends after its one terminal event."""
    jobs = request.app[JOBS]
    job_id = request.match_info["id"]
    subscription = jobs.subscribe(job_id)  # before reading the state: no event falls between
    try:
        record = jobs.get(job_id)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await _sse(response, "job.state", request.app[PRESENTER].job_json(record))
        if record.terminal:
            event = terminal_event(record)  # the same event a live listener got
            await _sse(response, event.kind, event.to_json())
            return response
        while True:
            try:
                event = await subscription.next(timeout=15)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event is None:  # dropped for falling behind
                break
            await _sse(response, event.kind, event.to_json())
            if event.terminal:
                break
        return response
    finally:
        jobs.unsubscribe(subscription)


async def _sse(response: web.StreamResponse, kind: str, data: dict) -> None:
    await response.write(f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode())


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Every job's events as JSON messages; ``?job=ID`` keeps one job's."""
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    jobs = request.app[JOBS]
    subscription = jobs.subscribe(request.query.get("job"))
    reader = asyncio.create_task(_drain(ws))
    try:
        while not ws.closed and not reader.done():
            try:
                event = await subscription.next(timeout=1)
            except asyncio.TimeoutError:
                continue
            if event is None:
                if subscription.closed:
                    await ws.close(code=1001, message=b"the server is shutting down")
                else:
                    await ws.close(code=1013, message=b"too slow: events were dropped; reconnect")
                break
            await asyncio.wait_for(ws.send_json(event.to_json(), dumps=lambda o: json.dumps(o, default=str)), 10)
    except (ConnectionResetError, asyncio.TimeoutError):
        pass
    finally:
        jobs.unsubscribe(subscription)
        reader.cancel()
        await ws.close()
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break


async def nodes(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].registry.describe())


async def workflows(request: web.Request) -> web.Response:
    return web.json_response(request.app[CATALOGUE].describe_workflows())


async def workflow(request: web.Request) -> web.Response:
    found = request.app[CATALOGUE].workflows.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(text=f"no saved workflow {request.match_info['name']!r}; GET /workflows lists them")
    return web.json_response(found.doc)


async def workflow_extract(request: web.Request) -> web.Response:
    """The workflow a file flow saved carries (PNG/WebP/JPEG, audio, video, or its JSON sidecar); the body is the file."""
    data = await request.read()
    found = await asyncio.get_running_loop().run_in_executor(None, _embedded_description, data)
    workflow_, params = found.get("workflow"), found.get("params")
    params = params if isinstance(params, dict) else {}
    catalogue, registry = request.app[CATALOGUE], request.app[ENGINE].registry
    run_params: dict = {}
    if isinstance(workflow_, dict) and "nodes" in workflow_:
        doc = workflow_  # images carry the whole re-runnable document
    elif isinstance(workflow_, dict) and isinstance(workflow_.get("workflow"), str) \
            and workflow_["workflow"] in catalogue.workflows:
        doc = catalogue.workflows[workflow_["workflow"]].doc  # audio and video name their saved workflow
        run_params = {k: v for k, v in params.items() if k in doc.get("params", {})}
    elif registry.get(str(params.get("node"))) is not None:
        cls = registry.get(params["node"])
        doc = {"name": params["node"], "nodes": {"gen": {"type": cls.type,
                                                         "inputs": {k: v for k, v in params.items() if k in cls.inputs}}}}
    else:
        raise InvalidRequest("the file carries no workflow flow can re-run; only files saved by flow's nodes do")
    return web.json_response({"format": found["format"], "workflow": doc, "params": run_params, "parameters": params})


def _embedded_description(data: bytes) -> dict:
    """``{"format", "workflow", "params"}`` read from a saved file's own metadata (its kind found by its bytes)."""
    import tempfile

    kinds = [(data[:8] == b"\x89PNG\r\n\x1a\n", "png"), (data[:4] == b"RIFF" and data[8:12] == b"WEBP", "webp"),
             (data[:3] == b"\xff\xd8\xff", "jpg"), (data[:4] == b"RIFF" and data[8:12] == b"WAVE", "wav"),
             (data[:4] == b"fLaC", "flac"), (data[:4] == b"OggS", "ogg"), (data[:3] == b"ID3", "mp3"),
             (data[4:8] == b"ftyp", "mp4"), (data[:4] == b"GIF8", "gif"), (data.lstrip()[:1] == b"{", "json")]
    fmt = next((name for hit, name in kinds if hit), None)
    if fmt is None:
        raise InvalidRequest("not a file flow saves: send a PNG, WebP, JPEG, WAV, FLAC, OGG, MP3, MP4 or GIF file")
    try:
        if fmt == "json":
            body = loads(data)
            if not isinstance(body, dict):
                raise ValueError("the JSON is not an object")
            return {"format": fmt, "workflow": body} if "nodes" in body else {"format": fmt, **body}
        with tempfile.TemporaryDirectory(prefix="flow-extract-") as tmp:
            path = Path(tmp) / f"upload.{fmt}"
            path.write_bytes(data)
            if fmt in ("png", "webp", "jpg"):
                from engine.embedded import PARAMETERS_KEY, WORKFLOW_KEY, image_entries

                entries = image_entries(path)
                return {"format": fmt, "workflow": loads(entries.get(WORKFLOW_KEY, "null")),
                        "params": loads(entries.get(PARAMETERS_KEY, "{}"))}
            from nodes.avmedia import read_audio_comment, read_video_comment  # the files' own readers

            text = read_video_comment(path) if fmt in ("mp4", "gif") else read_audio_comment(path)
            found = loads(text) if text else {}
            if not isinstance(found, dict):
                raise ValueError("the embedded description is not a JSON object")
            return {"format": fmt, **found}
    except Exception as exc:  # a hostile or broken file: whatever its reader raised, the file is at fault
        log.info("unreadable %s upload: %r", fmt, exc)
        raise InvalidRequest(f"could not read the {fmt} file's metadata: {exc}") from None


async def endpoints(request: web.Request) -> web.Response:
    return web.json_response([e.describe() for _, e in sorted(request.app[CATALOGUE].endpoints.items())])


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(request.app[CATALOGUE], VERSION))


async def docs(request: web.Request) -> web.Response:
    from gateway.docs import render_docs

    return web.Response(text=render_docs(request.app[CATALOGUE], request.app[ENGINE].registry),
                        content_type="text/html")


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body: dict[str, Any] = {"status": "ok", "version": VERSION,
                            "uptime": time.time() - request.app[STARTED],
                            "jobs": request.app[JOBS].counts(),
                            "endpoints": sorted(request.app[CATALOGUE].endpoints)}
    stuck = engine.stuck_workers()  # node threads still running work of jobs that ended (a stalled backend)
    body["workers"] = {"stuck": len(stuck),
                       "stuck_nodes": [{"node_type": s["node_type"], "stuck_s": s["stuck_s"]} for s in stuck]}
    if engine.models is not None:
        body["models"] = await asyncio.get_running_loop().run_in_executor(None, _model_health, engine.models)
    problems = request.app[CATALOGUE].problems
    if problems:
        body["workflow_problems"] = problems
    return web.json_response(body)


def _model_health(models) -> dict:
    report = models.report().to_json()
    torch = sys.modules.get("torch")  # only once a model (or the start-up probe) loaded it
    if torch is not None:
        gpu = torch.cuda.is_available()
        report["torch"] = {"version": torch.__version__, "hip": getattr(torch.version, "hip", None),
                           "cuda": torch.version.cuda,
                           "gpu": torch.cuda.get_device_name(0) if gpu else None}
    ollama = getattr(models, "ollama", None)
    if ollama is not None:
        try:
            report["ollama"] = {"reachable": True, "loaded": [m.get("name") for m in ollama.loaded()]}
        except Exception as exc:  # reported, not raised: health must answer
            report["ollama"] = {"reachable": False, "error": str(exc)}
    return report


async def metrics(request: web.Request) -> web.Response:
    text = request.app[METRICS].render(request.app[JOBS].counts(), request.app[ENGINE])
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


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


# -- models --------------------------------------------------------------------------------------

async def models_list(request: web.Request) -> web.Response:
    models = request.app[ENGINE].models
    local = await asyncio.get_running_loop().run_in_executor(None, models.store.list)
    return web.json_response({"models": [m.to_json() for m in local]})


async def models_loaded(request: web.Request) -> web.Response:
    models = request.app[ENGINE].models

    def report():
        models.device  # probe the device and budget first (imports torch once) so the report names them
        return models.report().to_json()

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
    record = request.app[JOBS].submit(workflow, {}, name="model.pull")
    return await answer(request, record, async_default=True)


async def models_unload(request: web.Request) -> web.Response:
    body = await json_body(request, required=False)
    ref = body.get("ref")
    models = request.app[ENGINE].models
    result = await asyncio.get_running_loop().run_in_executor(None, lambda: models.unload(ref))
    return web.json_response(result)


# -- the application -----------------------------------------------------------------------------

#: routes whose bodies are not JSON (every other body must be application/json)
BODY_TYPES = {"/workflows/extract": frozenset({"application/octet-stream", "application/json", "image/png",
                                               "image/jpeg", "image/webp", "image/gif", "audio/wav", "audio/x-wav",
                                               "audio/wave", "audio/flac", "audio/ogg", "audio/mpeg", "video/mp4"})}

def create_app(engine: Engine, settings: Settings, *, catalogue: Catalogue | None = None,
               store: JobStore | None = None) -> web.Application:
    """The gateway application over ``engine``; the job queue starts and stops with it."""
    policy = Policy.from_settings(settings, body_types=BODY_TYPES)
    middlewares = [errors_middleware, guard_middleware(policy)]
    if policy.origins:
        middlewares.insert(0, cors_middleware(policy.origins))
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes,
                          handler_args={"max_field_size": 16 << 10})
    app.on_response_prepare.append(security_headers)
    catalogue = catalogue or Catalogue(engine, settings.workflows_dir)
    presenter = Presenter(settings.output_dir)
    jobs = JobQueue(engine, store or JobStore(settings.jobs_db), present=presenter.result_json,
                    workers=settings.job_workers, max_queued=settings.max_queued,
                    requeue_limit=settings.requeue_limit, time_limit=settings.job_time_limit or None)
    metrics_ = Metrics()
    engine.subscribe(metrics_.observe)
    app[ENGINE], app[SETTINGS], app[CATALOGUE], app[JOBS] = engine, settings, catalogue, jobs
    app[PRESENTER], app[METRICS], app[STARTED] = presenter, metrics_, time.time()

    routes = [
        web.get("/", index), web.get("/health", health), web.get("/metrics", metrics),
        web.get("/nodes", nodes), web.get("/workflows", workflows), web.get("/workflows/{name:.+}", workflow),
        web.post("/workflows/extract", workflow_extract),
        web.get("/endpoints", endpoints), web.get("/openapi.json", openapi), web.get("/docs", docs),
        web.post("/jobs", post_job), web.get("/jobs", list_jobs),
        web.get("/jobs/{id}", get_job, name="job"), web.delete("/jobs/{id}", delete_job),
        web.get("/jobs/{id}/events", job_events), web.get("/ws", websocket),
        web.get("/files/{path:.+}", files),
    ]
    if engine.models is not None:
        routes += [web.get("/models", models_list), web.get("/models/loaded", models_loaded),
                   web.post("/models/pull", models_pull), web.post("/models/unload", models_unload)]
    if "text.chat" in engine.registry and "text.embed" in engine.registry:
        from gateway.openai_compat import openai_routes

        routes += openai_routes(JOBS, ENGINE)  # /v1: for front ends written against OpenAI's API
    routes += [web.post(path, endpoint_handler(ep)) for path, ep in sorted(catalogue.endpoints.items())]
    app.add_routes(routes)
    if WEB_DIR.is_dir():
        app.router.add_get("/web/{path:.+}", web_file)

    async def lifecycle(app: web.Application):
        await jobs.start()
        probe = None
        if engine.models is not None and settings.probe_device:
            # Find the GPU and its budget in the background: /health answers at once, and
            # reports the device as soon as torch is imported (seconds).
            probe = asyncio.get_running_loop().run_in_executor(None, lambda: engine.models.device)
        yield
        if probe is not None:
            await asyncio.wait([probe], timeout=30)
        await jobs.stop()
        jobs.store.close()

    app.cleanup_ctx.append(lifecycle)

    async def close_streams(app: web.Application) -> None:
        app[JOBS].close_subscriptions()  # open WebSockets and SSE streams end now, not at a timeout

    app.on_shutdown.append(close_streams)
    return app


def serve(settings: Settings, engine: Engine) -> None:
    """Run the gateway until interrupted (what ``flow serve`` calls)."""
    app = create_app(engine, settings)
    url = f"http://{settings.host}:{settings.port}"
    print(f"flow gateway on {url}  (docs: {url}/docs, web page: {url}/)", flush=True)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None,
                handle_signals=True)
