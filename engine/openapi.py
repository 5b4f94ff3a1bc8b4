"""The gateway's OpenAPI 3.1 document: every route, every status it can answer, and its event streams.

Built from what the gateway serves: the saved endpoints' request schemas (the catalogue), the
bodies' and events' schemas (engine/api_schemas.py, events derived from their dataclasses), and
one table of what each status means. tests/gateway/test_openapi.py checks the document against
the routes and the events; tests/gateway/test_fuzz.py checks that a real server answers only
what it declares.
"""

from __future__ import annotations

from .api_schemas import CHAT_STREAM, REF, STATES, components, event_classes, event_schemas, job_stream_schema
from .catalogue import Catalogue
from .errors import named_errors

__all__ = ["STATUSES", "build_openapi", "event_classes", "event_schemas"]

# -- responses -----------------------------------------------------------------------------------

#: what each status the gateway answers means (the document's and the /docs page's words)
STATUSES = {
    400: "invalid request or workflow: every problem, located",
    401: "missing or wrong API token (only when the server has one, FLOW_API_TOKEN)",
    403: "refused: a Host that does not name this server, a foreign Origin, a cross-site request, "
         "or a remote model the privacy setting does not allow",
    404: "not found",
    409: "conflict: the job already ended, or was cancelled while this request waited",
    413: "request body too large (FLOW_MAX_BODY_BYTES)",
    415: "the body's Content-Type is not one this route takes (JSON: application/json)",
    422: "a node could not use an input value (the job failed; the error names the input)",
    429: "the queue is full; retry after Retry-After seconds",
    500: "internal error (the server log has the details)",
    502: "a backend answered with an error, or with an answer flow could not use",
    503: "a backend is unavailable (e.g. the Ollama server), or out of memory",
}
#: statuses a job that did not finish answers with (its body is the failed job; see gateway/present.py)
_JOB_FAILURES = tuple(sorted({cls.status for cls in named_errors().values()} - {401, 413, 415, 429}))
#: statuses every route can answer: the token, the Host/Origin guard, the last-resort 500
_GUARD = (401, 403, 500)
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer realm"}},
    429: {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1},
                          "description": "seconds to wait before retrying"}},
}


def _json(schema: dict | str, description: str, headers: dict | None = None) -> dict:
    ref = {"$ref": REF + schema} if isinstance(schema, str) else schema
    body: dict = {"description": description, "content": {"application/json": {"schema": ref}}}
    if headers:
        body["headers"] = headers
    return body


def _errors(*codes: int, jobs: bool = False, token: bool = True) -> dict:
    """The gateway's error responses: ``codes`` and the guard's; where ``jobs``, a failed job's body too."""
    answers = {}
    for code in sorted(set(codes) | set(_GUARD) - ({401} if not token else set())):
        options, why = ["Error"], STATUSES[code]
        if jobs and code in _JOB_FAILURES:
            options.append("FailedJob")
            why += ("; or the failed job's body" if code != 404 else
                    "; or the failed job's body (e.g. a model that is not pulled, with the command that pulls it)")
        answers[str(code)] = _response(options, why, code)
    return answers


def _openai_errors(*codes: int) -> dict:
    """The /v1 error responses: OpenAI's body, whichever part of the gateway answers."""
    return {str(code): _response(["OpenAIError"], STATUSES[code], code) for code in sorted(set(codes) | set(_GUARD))}


def _response(schemas: list[str], description: str, code: int) -> dict:
    refs = [{"$ref": REF + name} for name in schemas]
    return _json(refs[0] if len(refs) == 1 else {"anyOf": refs}, description, _HEADERS.get(code))


_LOCATION = {"Location": {"required": True, "schema": {"type": "string"}, "description": "the job's URL"}}


def _job_answers(default_async: bool) -> dict:
    """What a request that runs a job answers: 200 with the result, or 202 with the job's URL."""
    accepted = _json("JobAccepted", "accepted" + (" (the default here)" if default_async else
                                                   ": asynchronous, or still running at the timeout"), _LOCATION)
    return {"200": _json("Job", "finished: outputs, seeds, params used, timings"), "202": accepted,
            **_errors(400, 404, 409, 413, 415, 422, 429, 502, 503, jobs=True)}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
            "description": description}


_MEDIA = _query("media", {"enum": ["url", "base64"], "default": "url"}, "base64: media outputs inline as well")


def _run_params(default_async: bool) -> list[dict]:
    return [
        _query("wait", {"type": "boolean", "default": not default_async},
               "false: answer 202 with the job URL at once; true: wait for the result (bounded by timeout)"),
        _query("timeout", {"type": "number", "minimum": 0, "maximum": 86400},
               "seconds to wait before answering 202 (default FLOW_REQUEST_TIMEOUT)"),
        _MEDIA,
        {"name": "Prefer", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "respond-async: answer 202 at once (like wait=false)"},
    ]


def _op(summary: str, tag: str, responses: dict, *, params: list | None = None, body: dict | None = None,
        body_required: bool = True, op_id: str | None = None, description: str | None = None,
        security: list | None = None) -> dict:
    op: dict = {"summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if op_id:
        op["operationId"] = op_id
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": body}
    op["responses"] = responses
    if security is not None:
        op["security"] = security
    return op


def _get(summary: str, schema: dict | str, tag: str, *codes: int, params: list | None = None,
         content_type: str = "application/json", **extra) -> dict:
    ref = {"$ref": REF + schema} if isinstance(schema, str) else schema
    ok = {"200": {"description": "OK", "content": {content_type: {"schema": ref}}}}
    return _op(summary, tag, {**ok, **_errors(*codes)}, params=params, **extra)


def _json_body(schema: dict | str) -> dict:
    return {"application/json": {"schema": {"$ref": REF + schema} if isinstance(schema, str) else schema}}


def _file_answers(token: bool = True) -> dict:
    any_file = {"*/*": {"schema": {}}}
    return {"200": {"description": "the file", "content": any_file},
            "206": {"description": "the requested range", "content": any_file},
            "304": {"description": "not modified since If-Modified-Since"},
            "416": {"description": "the range is not satisfiable"}, **_errors(404, token=token)}


# -- the document --------------------------------------------------------------------------------

def build_openapi(catalogue: Catalogue, version: str) -> dict:
    """The OpenAPI document (3.1, whose schemas are JSON Schema 2020-12 like our nodes')."""
    engine = catalogue.engine
    paths: dict = {}
    for path, endpoint in sorted(catalogue.endpoints.items()):
        paths[path] = {"post": _op(
            endpoint.summary, "endpoints", _job_answers(default_async=False), params=_run_params(False),
            body=_json_body(endpoint.request_schema()), body_required=False,
            op_id="run_" + endpoint.name.replace("/", "_"), description=endpoint.workflow.description)}
    paths.update(_jobs_paths())
    paths.update(_catalogue_paths())
    if engine.models is not None:
        paths.update(_models_paths())
    if "text.chat" in engine.registry and "text.embed" in engine.registry:
        paths.update(_openai_paths())
    paths["/files/{path}"] = {"get": _op(
        "an output file (its own Content-Type; Range and conditional requests as usual)", "files", _file_answers(),
        params=[_path_param("path", "the file's path under the output folder (a job's files name it)")])}
    paths["/web/{path}"] = {"get": _op(
        "the web page's own files (no token needed)", "files", _file_answers(token=False),
        params=[_path_param("path", "e.g. js/app.js")], security=[{}])}
    return {
        "openapi": "3.1.0",
        "info": {"title": "flow", "version": version, "description": _DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "FLOW_API_TOKEN, when one is set"},
                "token_query": {"type": "apiKey", "in": "query", "name": "token",
                                "description": "the token as ?token= (only where a browser cannot send a header: "
                                               "EventSource and WebSocket)"}},
        },
        "security": [{"bearer": []}, {}],
    }


_DESCRIPTION = (
    "Text, image, music and video generation as workflow graphs on one GPU. Each endpoint is a saved "
    "workflow; its request body fills the params. Errors: `{\"error\": {\"type\", \"message\", "
    "\"problems\"?}}` (the /v1 routes: OpenAI's `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`). "
    "Every route refuses a foreign Host or Origin (403) and, when a token is set, a request without it (401); "
    "a method a path does not serve answers 405 with Allow. Events: `GET /jobs/{id}/events` (Server-Sent "
    "Events) and `GET /ws` (WebSocket), each message one `Event` (see components).")


def _jobs_paths() -> dict:
    job_id = _path_param("id", "the job id (from 202's url, or GET /jobs)")
    stream_security = [{"bearer": []}, {"token_query": []}, {}]
    return {
        "/jobs": {
            "get": _get("queue and history, newest first", "JobPage", "jobs", 400, params=[
                _query("state", {"enum": STATES}, "only jobs in this state"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
                _query("before", {"type": "integer", "minimum": 0, "maximum": 2**62},
                       "continue after this seq (the previous page's next URL carries it)")]),
            "post": _op("run any workflow graph as a job", "jobs", _job_answers(default_async=True),
                        params=_run_params(True), body=_json_body("JobRequest")),
        },
        "/jobs/{id}": {
            "get": _get("state, queue position, current node, progress, outputs, error, workflow", "Job", "jobs",
                        400, 404, params=[job_id, _MEDIA]),
            "delete": _op("cancel: a queued job now, a running one at its next check", "jobs", {
                "200": _json("Job", "cancelled, or asked to stop (its state says which)"),
                **_errors(404, 409, 415)}, params=[job_id]),
        },
        "/jobs/{id}/events": {"get": _op(
            "the job's events as Server-Sent Events", "jobs", {
                "200": {"description": "first `job.state` (the job), then each event as it happens, ending after "
                                       "the one terminal event; `: keep-alive` comments every 15 s",
                        "content": {"text/event-stream": {"schema": job_stream_schema()}}},
                **_errors(404)}, params=[job_id], security=stream_security)},
        "/ws": {"get": _op(
            "a WebSocket of every job's events", "jobs", {
                "101": {"description": "switching to WebSocket: each message is one `Event` as JSON",
                        "x-websocket-message": {"$ref": REF + "Event"}},
                **_errors(400)},
            params=[_query("job", {"type": "string"}, "only this job's events")], security=stream_security,
            description="Send `Upgrade: websocket`; any other request answers 400. The server closes with "
                        "1001 when it shuts down and 1013 when the client fell too far behind.")},
    }


def _catalogue_paths() -> dict:
    any_object, array = {"type": "object"}, {"type": "array", "items": {"type": "object"}}
    html = {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}
    return {
        "/nodes": {"get": _get("every node type with its input and output schemas", any_object, "catalogue")},
        "/workflows": {"get": _get("saved workflows", array, "catalogue")},
        "/workflows/{name}": {"get": _get("a saved workflow's document", any_object, "catalogue", 404,
                                          params=[_path_param("name", "its name, e.g. text_gen or presets/portrait")])},
        "/workflows/extract": {"post": _op(
            "the workflow embedded in a file flow saved (PNG, WebP, JPEG, WAV, FLAC, OGG, MP3, MP4, GIF, or its "
            "JSON sidecar)", "catalogue", {
                "200": _json({"type": "object", "required": ["format", "workflow", "params", "parameters"],
                              "properties": {"format": {"type": "string"}, "workflow": any_object,
                                             "params": any_object, "parameters": any_object}},
                             "the re-runnable workflow, its params and every parameter the file carries"),
                **_errors(400, 413, 415)},
            body={"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}})},
        "/endpoints": {"get": _get("the endpoint table with request schemas", array, "catalogue")},
        "/openapi.json": {"get": _get("this document", any_object, "catalogue")},
        "/docs": {"get": _op("this API as a page", "catalogue", {**html, **_errors()})},
        "/": {"get": _op("the web page (no token needed; it asks for one)", "catalogue", {
            **html, "302": {"description": "no web page installed: to /docs"}, **_errors(token=False)},
            security=[{}])},
        "/health": {"get": _op("alive; GPU, budget, backends (no token needed)", "operations", {
            "200": _json({"type": "object", "required": ["status", "version", "uptime", "jobs", "endpoints"]}, "OK"),
            **_errors(token=False)}, security=[{}])},
        "/metrics": {"get": _get("Prometheus text format", {"type": "string"}, "operations",
                                 content_type="text/plain")},
    }


def _models_paths() -> dict:
    ref = {"type": "string", "description": "hf:ORG/NAME[@REV], ollama:NAME[:TAG], or a local folder"}
    return {
        "/models": {"get": _get("local models (Hugging Face, Ollama, folders)", {
            "type": "object", "required": ["models"], "properties": {"models": {"type": "array"}}}, "models")},
        "/models/loaded": {"get": _get("the model manager's view: sizes, places, counters, budget",
                                       {"type": "object"}, "models")},
        "/models/pull": {"post": _op(
            "pull a model (a job with progress; resumable)", "models", _job_answers(default_async=True),
            params=_run_params(True), body=_json_body({
                "type": "object", "required": ["ref"], "properties": {"ref": ref, "variant": {"type": "string"}}}))},
        "/models/unload": {"post": _op(
            "unload one model (ref) or all; frees VRAM", "models", {
                "200": _json({"type": "object", "properties": {"unloaded": {"type": "array"},
                                                               "busy": {"type": "array"}}},
                             "what was unloaded, and what stayed because a job uses it"),
                **_errors(400, 413, 415)},
            body=_json_body({"type": "object", "properties": {"ref": ref}}), body_required=False)},
    }


def _openai_paths() -> dict:
    errors = _openai_errors(400, 404, 409, 413, 415, 422, 429, 502, 503)
    return {
        "/v1/chat/completions": {"post": _op(
            "OpenAI-compatible chat completions (plain, or Server-Sent Events with stream)", "openai", {
                "200": {"description": "the completion",
                        "content": {"application/json": {"schema": {"$ref": REF + "OpenAIChatCompletion"}},
                                    "text/event-stream": {"schema": CHAT_STREAM}}},
                **errors},
            body=_json_body("OpenAIChatRequest"))},
        "/v1/embeddings": {"post": _op(
            "OpenAI-compatible embeddings", "openai", {
                "200": _json("OpenAIEmbeddings", "one vector per input"), **errors},
            body=_json_body("OpenAIEmbeddingsRequest"))},
        "/v1/models": {"get": _op("OpenAI-compatible list of local models", "openai", {
            "200": _json("OpenAIModels", "OK"), **_openai_errors()})},
    }
