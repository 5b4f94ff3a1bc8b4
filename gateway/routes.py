"""The one route table: every fixed route of the gateway, with its handler and its description.

`server.create_app` registers these; the OpenAPI document (gateway/openapi.py), the docs page,
the catalogue's reserved prefixes (saved endpoints may not shadow a route) and the README's
route table are all made from this list. Saved endpoint workflows add one `POST` each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from . import catalogue, files, health, images_api, inputs, jobs, models, ollama_api, openai_compat, presets, products
from .api_schemas import CHAT_STREAM, REF, STATES, job_stream_schema
from .extract import workflow_extract
from .spec import (MEDIA, answer_json, errors, file_answers, get_op, job_answers, json_content, ollama_errors, op,
                   openai_errors, path_param, query, run_params)

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
_INPUT = {"type": "object", "required": ["ref", "name", "width", "height", "format", "bytes", "sha256"],
          "properties": {"ref": {"type": "string", "description": "input:NAME, for image params (e.g. image_path)"},
                         "name": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
                         "format": {"type": "string"}, "bytes": {"type": "integer"}, "sha256": {"type": "string"}}}
_PRODUCT_ID = path_param("id", "the product id (32 hex digits, from POST /products or GET /products)")
_PRODUCT = {"type": "object", "required": ["id", "name", "images", "source_urls", "created", "updated"]}
_PRODUCT_FIELDS = {"type": "object", "additionalProperties": False, "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 300},
    "images": {"type": "array", "maxItems": 8, "items": {"type": "object"}},
    "source_urls": {"type": "array", "maxItems": 8, "items": {"type": "string", "format": "uri"}},
    "facts": {"type": ["object", "null"]}, "notes": {"type": "string", "maxLength": 4000},
    "description": {"type": ["object", "null"]}}}
_PRODUCT_FORM = {"type": "object", "properties": {
    "name": {"type": "string"}, "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
    "source_urls": {"type": "string", "description": "one URL per line, or a JSON list"},
    "image_urls": {"type": "string", "description": "one URL per line, or a JSON list"},
    "facts": {"type": "string", "description": "a JSON object"}, "notes": {"type": "string"}}}
_DESCRIBE = {"type": "object", "additionalProperties": False, "properties": {
    "tone": {"type": "string"}, "language": {"type": "string"}, "model": {"type": "string"},
    "vision_model": {"type": "string"}, "render": {"type": "boolean"}, "notes": {"type": "string"},
    "seed": {"type": "integer"}, "privacy": {"enum": ["strict", "flexible"]}, "max_tokens": {"type": "integer"}}}
_OLLAMA_STREAM = {"200": {"description": "NDJSON lines (stream true, the default), or one object (stream false)",
                          "content": {"application/x-ndjson": {"schema": {"type": "object"}},
                                      "application/json": {"schema": {"type": "object"}}}},
                  **ollama_errors(*_OPENAI_ERRORS)}


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
          "one job: state, queue position, current node, progress, outputs, error (?include=workflow: its graph)",
          _tagged("jobs", lambda s, t: get_op(s, "Job", t, 400, 404, params=[_JOB_ID, MEDIA, query(
              "include", {"enum": ["workflow"]}, "workflow: add the job's workflow document (omitted by default)")])),
          name="job"),
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
    Route("GET", "/presets", presets.list_presets,
          "saved presets (workflows/presets/) with their fixed and open params; run one: {\"preset\": NAME}",
          _tagged("catalogue", lambda s, t: get_op(s, _ANY_OBJECT, t))),
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
    # -- products (engine/products.py; the records live in the job database)
    Route("POST", "/products", products.create_product,
          "create a product: JSON, or multipart with image files (name, images, source_urls, facts, notes)",
          _tagged("products", lambda s, t: op(s, t, {"201": answer_json(_PRODUCT, "the new product"),
                                                     **errors(400, 413, 415)},
                                              body={**json_content(_PRODUCT_FIELDS),
                                                    "multipart/form-data": {"schema": _PRODUCT_FORM}})),
          body_types=frozenset({"application/json", "multipart/form-data"})),
    Route("GET", "/products", products.list_products, "products, newest first (?limit=, ?before=)",
          _tagged("products", lambda s, t: get_op(s, {"type": "object", "required": ["products"], "properties": {
              "products": {"type": "array", "items": _PRODUCT}, "next": {"type": "string"}}}, t, 400, params=[
              query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
              query("before", {"type": "integer", "minimum": 0, "maximum": 2**62},
                    "continue after this seq (the previous page's next URL carries it)")]))),
    Route("GET", "/products/{id}", products.get_product, "one product with its description",
          _tagged("products", lambda s, t: get_op(s, _PRODUCT, t, 404, params=[_PRODUCT_ID]))),
    Route("PATCH", "/products/{id}", products.patch_product,
          "edit a product: name, images, source_urls, facts, notes, description",
          _tagged("products", lambda s, t: op(s, t, {"200": answer_json(_PRODUCT, "the product as changed"),
                                                     **errors(400, 404, 413, 415)},
                                              params=[_PRODUCT_ID], body=json_content(_PRODUCT_FIELDS)))),
    Route("DELETE", "/products/{id}", products.delete_product, "delete a product and its uploaded images",
          _tagged("products", lambda s, t: op(s, t, {"200": answer_json(_ANY_OBJECT, "deleted"), **errors(404, 415)},
                                              params=[_PRODUCT_ID]))),
    Route("POST", "/products/{id}/describe", products.describe_product,
          "run the product_describe workflow on a product and save the description into it",
          _tagged("products", lambda s, t: op(s, t, {
              "200": answer_json({"type": "object", "required": ["product", "job"]}, "described: product and job"),
              "202": answer_json({"type": "object", "required": ["product", "job"]}, "still running: the job's URL",
                                 {"Location": {"required": True, "schema": {"type": "string"},
                                               "description": "the job's URL"}}),
              **errors(400, 403, 404, 413, 415, 422, 429, 502, 503)},
              params=[_PRODUCT_ID, query("timeout", {"type": "number", "minimum": 0, "maximum": 86400},
                                         "seconds to wait for the result before answering 202")],
              body=json_content(_DESCRIBE), body_required=False))),
    # -- inputs (gateway/inputs.py)
    Route("POST", "/inputs", inputs.post_input,
          "upload an input image (multipart or the raw image); answers the input:NAME ref image params take",
          _tagged("files", lambda s, t: op(s, t, {"201": answer_json(_INPUT, "the stored input"),
                                                  **errors(400, 413, 415)},
                                           body={"multipart/form-data": {"schema": {
                                               "type": "object", "required": ["file"], "properties": {
                                                   "file": {"type": "string", "format": "binary"}}}},
                                               **{t_: {"schema": {"type": "string", "format": "binary"}}
                                                  for t_ in sorted(inputs.RAW_TYPES)}})),
          body_types=frozenset({"multipart/form-data", *inputs.RAW_TYPES})),
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
    Route("GET", "/v1/models/{id:.+}", openai_compat.model, "OpenAI-compatible: one model by id, with its kind",
          _tagged("openai", lambda s, t: op(s, t, {"200": answer_json("OpenAIModel", "OK"), **openai_errors(404)},
                                            params=[path_param("id", "the model id, e.g. hf:ORG/NAME or llm")])),
          needs="openai"),
    Route("POST", "/v1/images/generations", images_api.generations,
          "OpenAI-compatible image generation (the image_gen workflow)",
          _tagged("openai", lambda s, t: op(s, t, {"200": answer_json("OpenAIImages", "the images"),
                                                   **openai_errors(*_OPENAI_ERRORS)},
                                            body=json_content("OpenAIImageRequest")))),
    Route("POST", "/v1/images/edits", images_api.edits,
          "OpenAI-compatible image edit, multipart image and mask (the image_edit workflow)",
          _tagged("openai", lambda s, t: op(s, t, {"200": answer_json("OpenAIImages", "the edited images"),
                                                   **openai_errors(*_OPENAI_ERRORS)},
                                            body={"multipart/form-data": {"schema": {"$ref": REF + "OpenAIImageEdit"}},
                                                  **json_content("OpenAIImageEdit")})),
          body_types=frozenset({"multipart/form-data", "application/json"})),
    # -- Ollama-compatible
    Route("GET", "/api/version", ollama_api.version, "Ollama-compatible: the API version",
          _tagged("ollama", lambda s, t: op(s, t, {"200": answer_json({"type": "object", "required": ["version"]},
                                                                      "OK"), **ollama_errors()}))),
    Route("GET", "/api/tags", ollama_api.tags, "Ollama-compatible: the models on this machine",
          _tagged("ollama", lambda s, t: op(s, t, {"200": answer_json("OllamaModels", "OK"), **ollama_errors()})),
          needs="openai"),
    Route("GET", "/api/ps", ollama_api.ps, "Ollama-compatible: the models in memory",
          _tagged("ollama", lambda s, t: op(s, t, {"200": answer_json("OllamaModels", "OK"), **ollama_errors()})),
          needs="openai"),
    Route("POST", "/api/show", ollama_api.show, "Ollama-compatible: one model's details and capabilities",
          _tagged("ollama", lambda s, t: op(s, t, {"200": answer_json(_ANY_OBJECT, "OK"),
                                                   **ollama_errors(400, 404, 413, 415)},
                                            body=json_content("OllamaModelRequest"))), needs="openai"),
    Route("POST", "/api/generate", ollama_api.generate, "Ollama-compatible generate (a job; NDJSON stream by default)",
          _tagged("ollama", lambda s, t: op(s, t, _OLLAMA_STREAM, body=json_content("OllamaGenerateRequest"))),
          needs="openai"),
    Route("POST", "/api/chat", ollama_api.chat, "Ollama-compatible chat, images too (a job; NDJSON stream by default)",
          _tagged("ollama", lambda s, t: op(s, t, _OLLAMA_STREAM, body=json_content("OllamaChatRequest"))),
          needs="openai"),
    Route("POST", "/api/embed", ollama_api.embed, "Ollama-compatible embeddings of one text or many (a job)",
          _tagged("ollama", lambda s, t: op(s, t, {"200": answer_json(_ANY_OBJECT, "one vector per input"),
                                                   **ollama_errors(*_OPENAI_ERRORS)},
                                            body=json_content("OllamaEmbedRequest"))), needs="openai"),
    Route("POST", "/api/embeddings", ollama_api.embeddings, "Ollama-compatible embedding of one prompt (older route)",
          _tagged("ollama", lambda s, t: op(s, t, {"200": answer_json(_ANY_OBJECT, "the vector"),
                                                   **ollama_errors(*_OPENAI_ERRORS)},
                                            body=json_content("OllamaEmbeddingsRequest"))), needs="openai"),
    Route("POST", "/api/pull", ollama_api.pull, "Ollama-compatible pull (a model.pull job; NDJSON progress lines)",
          _tagged("ollama", lambda s, t: op(s, t, _OLLAMA_STREAM, body=json_content("OllamaModelRequest"))),
          needs="openai"),
    Route("DELETE", "/api/delete", ollama_api.delete, "Ollama-compatible delete of a pulled model (hf: or ollama:)",
          _tagged("ollama", lambda s, t: op(s, t, {"200": answer_json(_ANY_OBJECT, "deleted"),
                                                   **ollama_errors(400, 404, 409, 413, 415, 502, 503)},
                                            body=json_content("OllamaModelRequest"))), needs="openai"),
]


def active_routes(engine) -> list[Route]:
    """The routes this engine serves (model routes need a model manager; /v1 needs the chat and embed nodes)."""
    has = {"models": engine.models is not None,
           "openai": "text.chat" in engine.registry and "text.embed" in engine.registry}
    return [route for route in ROUTES if route.needs is None or has[route.needs]]


def reserved_prefixes() -> tuple[str, ...]:
    """Path prefixes a saved endpoint (always a POST) may not take: the first part of every fixed POST route.

    Method-aware: a path only other methods use stays free (``POST /web/extract`` beside ``GET /web/{path}``),
    since the router picks a resource by method as well as by path.
    """
    posts = [route for route in ROUTES if route.method == "POST"]
    return tuple(sorted({"/" + route.path.split("/")[1] for route in posts}))


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
