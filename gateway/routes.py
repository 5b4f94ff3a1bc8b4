"""The one route table: every fixed route of the gateway, with its handler and its description.

`server.create_app` registers these; the OpenAPI document (gateway/openapi.py), the docs page,
the catalogue's reserved prefixes (saved endpoints may not shadow a route) and the README's
route table are all made from this list. Saved endpoint workflows add one `POST` each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from . import catalogue, files, health, jobs, models, openai_compat
from .api_schemas import CHAT_STREAM, REF, STATES, job_stream_schema
from .extract import workflow_extract
from .spec import (MEDIA, answer_json, errors, file_answers, get_op, job_answers, json_content, op, openai_errors,
                   path_param, query, run_params)

#: what an uploaded file may be sent as (every other body must be application/json)
FILE_TYPES = frozenset({"application/octet-stream", "application/json", "image/png", "image/jpeg", "image/webp",
                        "image/gif", "audio/wav", "audio/x-wav", "audio/wave", "audio/flac", "audio/ogg",
                        "audio/mpeg", "video/mp4"})


@dataclass(frozen=True)
class Route:
    """One route: method, path (aiohttp syntax), handler, a one-line summary, its OpenAPI operation."""

    method: str
    path: str
    handler: Callable
    summary: str
    operation: Callable[[str], dict]  # summary -> the OpenAPI operation
    #: registered only when the engine has it: "models" (a model manager) or "openai" (chat and embed nodes)
    needs: str | None = None
    name: str | None = None
    #: Content-Types a body may have, when not JSON only
    body_types: frozenset[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spec_path(self) -> str:
        """The path as OpenAPI writes it (``/files/{path}``, not ``/files/{path:.+}``)."""
        return "/".join(part.split(":")[0] + "}" if ":" in part and part.startswith("{") else part
                        for part in self.path.split("/"))


_JOB_ID = path_param("id", "the job id (from 202's url, or GET /jobs)")
_STREAMS = [{"bearer": []}, {"token_query": []}, {}]  # a browser's EventSource and WebSocket send ?token=
_OPEN = [{}]  # no token needed
_ANY_OBJECT, _ARRAY = {"type": "object"}, {"type": "array", "items": {"type": "object"}}
_HTML = {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}
_REF = {"type": "string", "description": "hf:ORG/NAME[@REV], ollama:NAME[:TAG], or a local folder"}
_OPENAI_ERRORS = (400, 404, 409, 413, 415, 422, 429, 502, 503)


def _tagged(tag: str, build: Callable[[str, str], dict]) -> Callable[[str], dict]:
    return lambda summary: build(summary, tag)


ROUTES: list[Route] = [
    # -- the web page and operations
    Route("GET", "/", files.index, "the web page (no token needed; it asks for one)", _tagged("catalogue", lambda s, t: op(
        s, t, {**_HTML, "302": {"description": "no web page installed: to /docs"}, **errors(token=False)},
        security=_OPEN))),
    Route("GET", "/health", health.health, "alive; GPU, budget, backends, stuck workers (no token needed)",
          _tagged("operations", lambda s, t: op(s, t, {
              "200": answer_json({"type": "object", "required": ["status", "version", "uptime", "jobs", "endpoints"]},
                                 "OK"), **errors(token=False)}, security=_OPEN))),
    Route("GET", "/metrics", health.metrics, "Prometheus text format", _tagged("operations", lambda s, t: get_op(
        s, {"type": "string"}, t, content_type="text/plain"))),
    # -- jobs and events
    Route("POST", "/jobs", jobs.post_job, "run any workflow graph as a job (202; ?wait=true to wait)",
          _tagged("jobs", lambda s, t: op(s, t, job_answers(default_async=True), params=run_params(True),
                                          body=json_content("JobRequest")))),
    Route("GET", "/jobs", jobs.list_jobs, "queue and history, newest first (?state=, ?before=, ?limit=)",
          _tagged("jobs", lambda s, t: get_op(s, "JobPage", t, 400, params=[
              query("state", {"enum": STATES}, "only jobs in this state"),
              query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
              query("before", {"type": "integer", "minimum": 0, "maximum": 2**62},
                    "continue after this seq (the previous page's next URL carries it)")]))),
    Route("GET", "/jobs/{id}", jobs.get_job,
          "one job: state, queue position, current node, progress, outputs, error, workflow",
          _tagged("jobs", lambda s, t: get_op(s, "Job", t, 400, 404, params=[_JOB_ID, MEDIA])), name="job"),
    Route("DELETE", "/jobs/{id}", jobs.delete_job, "cancel: a queued job now, a running one at its next check",
          _tagged("jobs", lambda s, t: op(s, t, {"200": answer_json("Job", "cancelled, or asked to stop"),
                                                 **errors(404, 409, 415)}, params=[_JOB_ID]))),
    Route("GET", "/jobs/{id}/events", jobs.job_events, "the job's events as Server-Sent Events",
          _tagged("jobs", lambda s, t: op(s, t, {
              "200": {"description": "first `job.state` (the job), then each event as it happens, ending after the "
                                     "one terminal event; `: keep-alive` comments every 15 s",
                      "content": {"text/event-stream": {"schema": job_stream_schema()}}},
              **errors(404)}, params=[_JOB_ID], security=_STREAMS))),
    Route("GET", "/ws", jobs.websocket, "a WebSocket of every job's events (?job=ID for one job's)",
          _tagged("jobs", lambda s, t: op(s, t, {
              "101": {"description": "switching to WebSocket: each message is one `Event` as JSON",
                      "x-websocket-message": {"$ref": REF + "Event"}},
              **errors(400)}, params=[query("job", {"type": "string"}, "only this job's events")], security=_STREAMS,
              description="Send `Upgrade: websocket`; any other request answers 400. The server closes with 1001 "
                          "when it shuts down and 1013 when the client fell too far behind."))),
    # -- the catalogue
    Route("GET", "/nodes", catalogue.nodes, "every node type with its input and output schemas",
          _tagged("catalogue", lambda s, t: get_op(s, _ANY_OBJECT, t))),
    Route("GET", "/workflows", catalogue.workflows, "saved workflows",
          _tagged("catalogue", lambda s, t: get_op(s, _ARRAY, t))),
    Route("POST", "/workflows/extract", workflow_extract,
          "the workflow a file flow saved carries (PNG, WebP, JPEG, WAV, FLAC, OGG, MP3, MP4, GIF, or its sidecar)",
          _tagged("catalogue", lambda s, t: op(s, t, {
              "200": answer_json({"type": "object", "required": ["format", "workflow", "params", "parameters"],
                                  "properties": {"format": {"type": "string"}, "workflow": _ANY_OBJECT,
                                                 "params": _ANY_OBJECT, "parameters": _ANY_OBJECT}},
                                 "the re-runnable workflow, its params and every parameter the file carries"),
              **errors(400, 413, 415)},
              body={"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}})),
          body_types=FILE_TYPES),
    Route("GET", "/workflows/{name:.+}", catalogue.workflow, "a saved workflow's document",
          _tagged("catalogue", lambda s, t: get_op(s, _ANY_OBJECT, t, 404, params=[
              path_param("name", "its name, e.g. text_gen or presets/portrait")]))),
    Route("GET", "/endpoints", catalogue.endpoints, "the endpoint table with request schemas",
          _tagged("catalogue", lambda s, t: get_op(s, _ARRAY, t))),
    Route("GET", "/openapi.json", catalogue.openapi, "this API as an OpenAPI 3.1 document",
          _tagged("catalogue", lambda s, t: get_op(s, _ANY_OBJECT, t))),
    Route("GET", "/docs", catalogue.docs, "this API as a readable page",
          _tagged("catalogue", lambda s, t: op(s, t, {**_HTML, **errors()}))),
    # -- models
    Route("GET", "/models", models.models_list, "local models (Hugging Face, Ollama, folders)",
          _tagged("models", lambda s, t: get_op(s, {"type": "object", "required": ["models"],
                                                    "properties": {"models": {"type": "array"}}}, t)),
          needs="models"),
    Route("GET", "/models/loaded", models.models_loaded, "the model manager's view: sizes, places, budget",
          _tagged("models", lambda s, t: get_op(s, {"type": "object"}, t)), needs="models"),
    Route("POST", "/models/pull", models.models_pull, "pull a model (a job with progress; resumable)",
          _tagged("models", lambda s, t: op(s, t, job_answers(default_async=True), params=run_params(True),
                                            body=json_content({"type": "object", "required": ["ref"], "properties": {
                                                "ref": _REF, "variant": {"type": "string"}}}))),
          needs="models"),
    Route("POST", "/models/unload", models.models_unload, "unload one model (ref) or all; frees VRAM",
          _tagged("models", lambda s, t: op(s, t, {
              "200": answer_json({"type": "object", "properties": {"unloaded": {"type": "array"},
                                                                   "busy": {"type": "array"}}},
                                 "what was unloaded, and what stayed because a job uses it"),
              **errors(400, 413, 415)}, body=json_content({"type": "object", "properties": {"ref": _REF}}),
              body_required=False)),
          needs="models"),
    # -- files
    Route("GET", "/files/{path:.+}", files.files, "an output file (no hidden, database or temporary file)",
          _tagged("files", lambda s, t: op(s, t, file_answers(), params=[
              path_param("path", "the file's path under the output folder (a job's files name it)")]))),
    Route("GET", "/web/{path:.+}", files.web_file, "the web page's own files (no token needed)",
          _tagged("files", lambda s, t: op(s, t, file_answers(token=False), params=[
              path_param("path", "e.g. js/app.js")], security=_OPEN))),
    # -- OpenAI-compatible
    Route("POST", "/v1/chat/completions", openai_compat.chat_completions,
          "OpenAI-compatible chat completions (plain, or Server-Sent Events with stream)",
          _tagged("openai", lambda s, t: op(s, t, {
              "200": {"description": "the completion",
                      "content": {"application/json": {"schema": {"$ref": REF + "OpenAIChatCompletion"}},
                                  "text/event-stream": {"schema": CHAT_STREAM}}},
              **openai_errors(*_OPENAI_ERRORS)}, body=json_content("OpenAIChatRequest"))),
          needs="openai"),
    Route("POST", "/v1/embeddings", openai_compat.embeddings, "OpenAI-compatible embeddings",
          _tagged("openai", lambda s, t: op(s, t, {"200": answer_json("OpenAIEmbeddings", "one vector per input"),
                                                   **openai_errors(*_OPENAI_ERRORS)},
                                            body=json_content("OpenAIEmbeddingsRequest"))),
          needs="openai"),
    Route("GET", "/v1/models", openai_compat.models, "OpenAI-compatible list of local models",
          _tagged("openai", lambda s, t: op(s, t, {"200": answer_json("OpenAIModels", "OK"), **openai_errors()})),
          needs="openai"),
]


def active_routes(engine) -> list[Route]:
    """The routes this engine serves (model routes need a model manager; /v1 needs the chat and embed nodes)."""
    has = {"models": engine.models is not None,
           "openai": "text.chat" in engine.registry and "text.embed" in engine.registry}
    return [route for route in ROUTES if route.needs is None or has[route.needs]]


def reserved_prefixes() -> tuple[str, ...]:
    """Path prefixes a saved endpoint may not take: the first part of every fixed route."""
    return tuple(sorted({"/" + route.path.split("/")[1] for route in ROUTES if route.path != "/"} |
                        {route.path for route in ROUTES if "{" not in route.path and route.path != "/"}))


def body_types() -> dict[str, frozenset[str]]:
    """Route path -> the Content-Types its body may have, for routes that take more than JSON."""
    return {route.path: route.body_types for route in ROUTES if route.body_types}


def markdown_table() -> str:
    """The README's route table, one row per route."""
    rows = ["| route | what |", "|---|---|"]
    rows += [f"| `{route.method} {route.spec_path}` | {route.summary} |" for route in ROUTES]
    return "\n".join(rows)


if __name__ == "__main__":  # prints the README's table: python -m gateway.routes
    print(markdown_table())
