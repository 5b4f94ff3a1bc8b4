"""The gateway's OpenAPI 3.1 document, generated from the node catalogue and the saved endpoints."""

from __future__ import annotations

from .catalogue import Catalogue

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["type", "message"],
        "properties": {
            "type": {"type": "string", "description": "machine-readable kind, e.g. invalid_workflow"},
            "message": {"type": "string"},
            "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
        },
    }},
}
_PROBLEM = {"type": "object", "required": ["message"],
            "properties": {k: {"type": "string"} for k in ("message", "node", "input", "param")}}
_JOB = {
    "type": "object",
    "required": ["id", "state"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "state": {"enum": ["queued", "running", "finished", "failed", "cancelled", "interrupted"]},
        "position": {"type": "integer", "description": "place in the queue (queued jobs)"},
        "node": {"type": "string", "description": "node running now (running jobs)"},
        "progress": {"type": ["object", "null"]},
        "outputs": {"type": "object", "description": "text inline; media as {url, path, b64?}"},
        "files": {"type": "object", "description": "output name -> URL, for outputs that are saved files"},
        "seeds": {"type": "object", "additionalProperties": {"type": "integer"}},
        "params": {"type": "object"},
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        "error": {"$ref": "#/components/schemas/Error/properties/error"},
    },
}
_ACCEPTED = {"type": "object", "required": ["id", "url"],
             "properties": {"id": {"type": "string"}, "state": {"type": "string"}, "url": {"type": "string"}}}
_JOB_REQUEST = {
    "type": "object",
    "required": ["workflow"],
    "properties": {
        "workflow": {"type": "object", "description": "a workflow document (see /workflows/{name})"},
        "params": {"type": "object"},
        "outputs": {"type": "array", "items": {"type": "string"}},
    },
}


def _response(description: str, schema_ref: str | None = None, content_type: str = "application/json") -> dict:
    body: dict = {"description": description}
    if schema_ref is not None:
        body["content"] = {content_type: {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}
    return body


def _errors(*codes: int) -> dict:
    words = {400: "invalid request: every problem, located", 401: "missing or wrong API token",
             404: "not found", 409: "conflict", 413: "request body too large",
             429: "queue full (see Retry-After)"}
    return {str(code): _response(words[code], "Error") for code in codes}


def _get(summary: str, schema: dict | str | None = None, *, tag: str, params: list | None = None,
         content_type: str = "application/json") -> dict:
    op: dict = {"summary": summary, "tags": [tag], "responses": {"200": {"description": "OK"}}}
    if schema is not None:
        ref = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
        op["responses"]["200"]["content"] = {content_type: {"schema": ref}}
    if params:
        op["parameters"] = params
    op["responses"].update(_errors(401))
    return op


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def build_openapi(catalogue: Catalogue, version: str) -> dict:
    """The OpenAPI document (3.1, whose schemas are JSON Schema 2020-12 like our nodes')."""
    wait_params = [
        _query("wait", {"type": "boolean", "default": True}, "false: answer 202 with the job id at once"),
        _query("timeout", {"type": "number", "minimum": 0}, "seconds to wait before answering 202"),
        _query("media", {"enum": ["url", "base64"], "default": "url"}, "base64: media inline as well"),
    ]
    paths: dict = {}
    for path, endpoint in sorted(catalogue.endpoints.items()):
        paths[path] = {"post": {
            "summary": endpoint.summary,
            "description": endpoint.workflow.description,
            "operationId": "run_" + endpoint.name.replace("/", "_"),
            "tags": ["endpoints"],
            "parameters": wait_params,
            "requestBody": {"required": False,
                            "content": {"application/json": {"schema": endpoint.request_schema()}}},
            "responses": {"200": _response("finished: outputs, seeds, params used, timings", "Job"),
                          "202": _response("accepted (asynchronous, or still running at the timeout)",
                                           "JobAccepted"),
                          **_errors(400, 401, 413, 429),
                          "500": _response("a node failed (node, type, cause)", "Error")},
        }}
    job_id = [_path_param("id")]
    paths["/jobs"] = {
        "get": _get("queue and history, newest first", {"type": "object"}, tag="jobs", params=[
            _query("state", {"type": "string"}, "only jobs in this state"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size"),
            _query("before", {"type": "integer"}, "continue after this seq (from the previous page)")]),
        "post": {"summary": "run any workflow graph as a job", "tags": ["jobs"], "parameters": wait_params,
                 "requestBody": {"required": True,
                                 "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}}},
                 "responses": {"202": _response("accepted", "JobAccepted"), "200": _response("finished", "Job"),
                               **_errors(400, 401, 413, 429)}},
    }
    paths["/jobs/{id}"] = {
        "get": {**_get("state, queue position, current node, progress, outputs, error", "Job", tag="jobs",
                       params=job_id), "responses": {"200": _response("the job", "Job"), **_errors(401, 404)}},
        "delete": {"summary": "cancel", "tags": ["jobs"], "parameters": job_id,
                   "responses": {"200": _response("cancelled or asked to stop", "Job"), **_errors(401, 404, 409)}},
    }
    paths["/jobs/{id}/events"] = {"get": _get("the job's events as Server-Sent Events, ending with one terminal "
                                              "event", {"type": "string"}, tag="jobs", params=job_id,
                                              content_type="text/event-stream")}
    paths["/ws"] = {"get": _get("WebSocket of every job's events (JSON); ?job=ID filters", tag="jobs",
                                params=[_query("job", {"type": "string"}, "only this job's events")])}
    paths["/nodes"] = {"get": _get("every node type with its input and output schemas", {"type": "object"},
                                   tag="catalogue")}
    paths["/workflows"] = {"get": _get("saved workflows", {"type": "array"}, tag="catalogue")}
    paths["/workflows/{name}"] = {"get": _get("a saved workflow's document", {"type": "object"}, tag="catalogue",
                                              params=[_path_param("name")])}
    paths["/workflows/extract"] = {"post": {
        "summary": "the workflow embedded in a file flow saved (PNG, WebP, JPEG, WAV, FLAC, OGG, MP3, MP4, GIF)",
        "tags": ["catalogue"],
        "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {
            "type": "string", "contentMediaType": "application/octet-stream"}}}},
        "responses": {"200": {"description": "{format, workflow, params, parameters}",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **_errors(400, 401, 413)}}}
    paths["/endpoints"] = {"get": _get("the endpoint table with request schemas", {"type": "array"},
                                       tag="catalogue")}
    paths["/openapi.json"] = {"get": _get("this document", {"type": "object"}, tag="catalogue")}
    paths["/health"] = {"get": {"summary": "alive; GPU, budget, backends (no token needed)", "tags": ["operations"],
                                "responses": {"200": {"description": "OK"}}}}
    paths["/metrics"] = {"get": _get("Prometheus text format", {"type": "string"}, tag="operations",
                                     content_type="text/plain")}
    paths["/models"] = {"get": _get("local models (Hugging Face, Ollama, folders)", {"type": "object"},
                                    tag="models")}
    paths["/models/loaded"] = {"get": _get("the model manager's view: sizes, places, counters, budget",
                                           {"type": "object"}, tag="models")}
    paths["/models/pull"] = {"post": {"summary": "pull a model (a job with progress)", "tags": ["models"],
                                      "requestBody": {"required": True, "content": {"application/json": {"schema": {
                                          "type": "object", "required": ["ref"], "properties": {
                                              "ref": {"type": "string"}, "variant": {"type": "string"}}}}}},
                                      "responses": {"202": _response("accepted", "JobAccepted"),
                                                    **_errors(400, 401, 429)}}}
    paths["/models/unload"] = {"post": {"summary": "unload one model (ref) or all; frees VRAM", "tags": ["models"],
                                        "requestBody": {"required": False, "content": {"application/json": {
                                            "schema": {"type": "object", "properties": {"ref": {"type": "string"}}}}}},
                                        "responses": {"200": {"description": "what was unloaded"},
                                                      **_errors(400, 401)}}}
    for path, what in (("/v1/chat/completions", "OpenAI-compatible chat completions (plain, or SSE with stream)"),
                       ("/v1/embeddings", "OpenAI-compatible embeddings")):
        paths[path] = {"post": {"summary": what, "tags": ["openai"],
                                "requestBody": {"required": True, "content": {"application/json": {
                                    "schema": {"type": "object"}}}},
                                "responses": {"200": {"description": "OpenAI's response shape"},
                                              "400": {"description": "OpenAI's error shape"}}}}
    paths["/v1/models"] = {"get": _get("OpenAI-compatible list of local models", {"type": "object"}, tag="openai")}
    paths["/files/{path}"] = {"get": _get("an output file", tag="files", params=[_path_param("path")],
                                          content_type="application/octet-stream")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "flow", "version": version,
                 "description": "Text, image, music and video generation as workflow graphs on one GPU. "
                                "Each endpoint is a saved workflow; its request body fills the params."},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR, "Problem": _PROBLEM, "Job": _JOB, "JobAccepted": _ACCEPTED,
                        "JobRequest": _JOB_REQUEST},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
