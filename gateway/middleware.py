"""The one error middleware: named errors and HTTP errors become JSON bodies with their status;
and the access log (one line per request on ``flow.access``).

The status comes from the error's class (engine/errors.py declares each once); ``/v1`` routes
answer in OpenAI's error shape; nothing unexpected reaches a client but a plain 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from engine import FlowError, InvalidWorkflow, Problem
from engine.errors import ModelNotFound, QueueFull, redact_paths

from .logs import info_line
from .present import dumps

log = logging.getLogger("flow.server")

MAX_PROBLEMS = InvalidWorkflow.SHOWN  # an error body lists at most this many problems, and their count


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
    elif request.path.startswith("/api/"):  # the Ollama-compatible routes: Ollama's {"error": "message"}
        body = {"error": body["error"]["message"]}
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
        if isinstance(exc, InvalidWorkflow):  # capped in one place: its first problems and their count
            body = {"error": {**exc.to_json(), "message": redact_paths(str(exc)), **extra}}
        else:
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


access_log = logging.getLogger("flow.access")


def _job_id(request: web.Request, response: web.StreamResponse | None) -> str:
    """The job a request concerns: a ``/jobs/{id}`` route's id, else the ``Location`` of a 202; else ""."""
    route = request.match_info.route
    if route.resource is not None and "/jobs/" in (route.resource.canonical or ""):
        return request.match_info.get("id", "")
    if response is not None and response.status == 202:
        location = response.headers.get("Location", "")
        if "/jobs/" in location:
            return location.rsplit("/jobs/", 1)[1].split("/", 1)[0]
    return ""


@web.middleware
async def access_middleware(request: web.Request, handler):
    """One line per request on ``flow.access``: method, path, status, milliseconds, and the job id if any."""
    started = time.perf_counter()
    response, status = None, 499  # 499 (nginx's "client closed request"): the client went away mid-request
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects and the like escape the error middleware as exceptions
        status = exc.status
        raise
    finally:
        job = _job_id(request, response)
        # the path as sent, still percent-encoded (a decoded %0a would forge a log line), without the
        # query (where ?token= may be)
        info_line(access_log, f"{request.method[:16]} {request.rel_url.raw_path[:500]} {status} "
                              f"{(time.perf_counter() - started) * 1000:.1f} ms{f' job={job}' if job else ''}")
