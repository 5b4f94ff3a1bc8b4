"""The JSON Schemas of the gateway's bodies and events: what /openapi.json declares in components.

Event schemas are derived from the event dataclasses (engine/events.py), one per class, so a new
field or event kind reaches the document without being copied here.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from engine import events
from engine.jobstore import STATES as _JOB_STATES

REF = "#/components/schemas/"

# -- schemas -------------------------------------------------------------------------------------

_ERROR_DETAIL = {
    "type": "object",
    "required": ["type", "message"],
    "description": "what went wrong; a failed job's error also names the node, its type and the cause",
    "properties": {
        "type": {"type": "string", "description": "machine-readable kind, e.g. invalid_workflow, not_found, "
                                                  "queue_full, node_failed, forbidden, unsupported_media_type"},
        "message": {"type": "string", "description": "what happened, the value, and what to do"},
        "problems": {"type": "array", "items": {"$ref": REF + "Problem"}},
        "count": {"type": "integer", "description": "how many problems there were, when not all are listed"},
        "node": {"type": "string"}, "node_type": {"type": "string"},
        "cause": {"type": "string", "description": "the kind of the node's error, e.g. model_not_found"},
        "input": {"type": "string", "description": "the input a node could not use (cause invalid_input)"},
        "pull_command": {"type": "string", "description": "how to pull a missing model"},
    },
}
_ERROR = {"type": "object", "required": ["error"], "description": "the gateway's error body",
          "properties": {"error": {"$ref": REF + "ErrorDetail"}}}
_PROBLEM = {"type": "object", "required": ["message"],
            "properties": {k: {"type": "string"} for k in ("message", "node", "input", "param")}}
_OPENAI_ERROR = {
    "type": "object", "required": ["error"], "description": "OpenAI's error body (the /v1 routes)",
    "properties": {"error": {"type": "object", "required": ["message", "type", "param", "code"], "properties": {
        "message": {"type": "string"},
        "type": {"type": "string", "description": "invalid_request_error or server_error"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}
STATES = list(_JOB_STATES)
_TIME = {"type": ["number", "null"], "description": "seconds since the epoch"}
_JOB = {
    "type": "object",
    "required": ["id", "name", "state", "created", "attempts", "params"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "state": {"enum": STATES},
        "created": {"type": "number"}, "started": _TIME, "ended": _TIME,
        "attempts": {"type": "integer", "minimum": 0},
        "duration": {"type": "number", "description": "seconds since it started, or that it ran"},
        "params": {"type": "object"},
        "position": {"type": "integer", "minimum": 1, "description": "place in the queue (queued jobs)"},
        "node": {"type": "string", "description": "node running now (running jobs)"},
        "node_type": {"type": "string"},
        "progress": {"type": ["object", "null"], "properties": {
            "done": {"type": "number"}, "total": {"type": ["number", "null"]},
            "message": {"type": ["string", "null"]}}},
        "outputs": {"type": "object", "description": "text inline; media as {url, path, b64?}"},
        "files": {"type": "object",
                  "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                  "description": "output name -> URL (a list of URLs for a batch), for outputs that are saved files"},
        "media": {"type": "array", "items": {"type": "string"}, "description": "outputs that are media files"},
        "seeds": {"type": "object", "additionalProperties": {"type": "integer"}},
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        "elapsed": {"type": "number"},
        "executed": {"type": "array", "items": {"type": "string"}},
        "cached": {"type": "array", "items": {"type": "string"}},
        "error": {"$ref": REF + "ErrorDetail"},
        "workflow": {"type": "object", "description": "the document that ran (GET /jobs/{id})"},
    },
}
_FAILED_JOB = {"description": "a job that did not finish: its body, with the error",
               "allOf": [{"$ref": REF + "Job"}, {"required": ["error"]}]}
_ACCEPTED = {"type": "object", "required": ["id", "state", "url"],
             "properties": {"id": {"type": "string"}, "state": {"enum": STATES},
                            "url": {"type": "string", "description": "GET it for the state and the result"}}}
_JOB_PAGE = {
    "type": "object", "required": ["jobs", "counts"],
    "properties": {
        "jobs": {"type": "array", "items": {"allOf": [{"$ref": REF + "Job"}, {
            "required": ["seq", "url"], "properties": {"seq": {"type": "integer"}, "url": {"type": "string"}}}]}},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "jobs per state"},
        "next": {"type": "string", "description": "the next page's URL (when this page is full)"},
    },
}
_JOB_REQUEST = {
    "type": "object",
    "required": ["workflow"],
    "properties": {
        "workflow": {"type": "object", "description": "a workflow document (see /workflows/{name})"},
        "params": {"type": ["object", "null"]},
        "outputs": {"type": ["array", "null"], "items": {"type": "string"}},
    },
}
_IMAGE_PART = {"type": "object", "required": ["type", "image_url"], "additionalProperties": False, "properties": {
    "type": {"const": "image_url"},
    "image_url": {"type": "object", "required": ["url"], "additionalProperties": False, "properties": {
        "url": {"type": "string", "description": "a data URL (data:image/png;base64,...), or an http(s) URL "
                                                 "fetched through flow's SSRF guard"},
        "detail": {"enum": ["auto", "low", "high"]}}}}}
_TEXT_PART = {"type": "object", "required": ["type", "text"], "additionalProperties": False,
              "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
_CHAT_REQUEST = {
    "type": "object", "required": ["messages"], "additionalProperties": False,
    "description": "any other field answers 400 naming it (nothing a client sends is ignored)",
    "properties": {
        "model": {"type": ["string", "null"], "description": "a model id from GET /v1/models; empty: the default "
                                                             "for the task"},
        "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["role", "content"], "additionalProperties": False, "properties": {
                "role": {"enum": ["system", "developer", "user", "assistant"]},
                "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {
                    "anyOf": [_TEXT_PART, _IMAGE_PART]}}]}}}},
        "stream": {"type": ["boolean", "null"], "description": "true: Server-Sent Events of chat.completion.chunk"},
        "stream_options": {"type": ["object", "null"], "additionalProperties": False,
                           "properties": {"include_usage": {"type": "boolean"}}},
        **{name: {"type": ["integer", "null"], "minimum": 1} for name in ("max_tokens", "max_completion_tokens")},
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "seed": {"type": ["integer", "null"]},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 8},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 8},
                           {"type": "null"}]},
        "response_format": {"type": ["object", "null"], "description": "{type: text | json_object | json_schema, "
                                                                       "json_schema: {name, schema, strict}}"},
        "task": {"enum": ["chat", "vision", "ocr", None], "description": "extension: the default model of this task "
                                                                        "when model is empty"},
        "privacy_mode": {"enum": ["strict", "flexible", None], "description": "extension: this request's privacy "
                                                                              "(the stricter of it and the server's)"},
    },
}
_USAGE = {"type": "object", "required": ["prompt_tokens", "total_tokens"], "properties": {
    k: {"type": "integer"} for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
_CHAT_COMPLETION = {
    "type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
    "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object", "required": ["index", "message", "finish_reason"],
                                               "properties": {
            "index": {"type": "integer"}, "finish_reason": {"enum": ["stop", "length"]},
            "message": {"type": "object", "required": ["role", "content"], "properties": {
                "role": {"const": "assistant"}, "content": {"type": "string"}}}}}},
        "usage": {"$ref": REF + "OpenAIUsage"},
    },
}
_EMBED_REQUEST = {
    "type": "object", "required": ["input"], "additionalProperties": False,
    "properties": {"input": {"anyOf": [{"type": "string"},
                                       {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
                   "model": {"type": ["string", "null"]}, "encoding_format": {"enum": ["float", "base64"]},
                   "task": {"const": "embedding"}, "privacy_mode": {"enum": ["strict", "flexible"]}},
}
_EMBEDDINGS = {
    "type": "object", "required": ["object", "model", "data", "usage"],
    "properties": {
        "object": {"const": "list"}, "model": {"type": "string"},
        "data": {"type": "array", "items": {"type": "object", "required": ["object", "embedding", "index"],
                                            "properties": {
            "object": {"const": "embedding"}, "index": {"type": "integer"},
            "embedding": {"anyOf": [{"type": "array", "items": {"type": "number"}},
                                    {"type": "string", "description": "base64 float32 (encoding_format base64)"}]}}}},
        "usage": {"$ref": REF + "OpenAIUsage"},
    },
}
_OPENAI_MODELS = {"type": "object", "required": ["object", "data"], "properties": {
    "object": {"const": "list"},
    "data": {"type": "array", "items": {"type": "object", "required": ["id", "object", "created", "owned_by"],
                                        "properties": {"id": {"type": "string"}, "object": {"const": "model"},
                                                       "created": {"type": "integer"},
                                                       "owned_by": {"type": "string"}}}}}}
_OPENAI_MODEL = {"type": "object", "required": ["id", "object", "created", "owned_by", "kind"], "properties": {
    "id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
    "owned_by": {"type": "string"},
    "kind": {"enum": ["chat", "vision", "embedding", "image", "video", "audio", "unknown"]}}}
_IMAGE_FIELDS = {
    "prompt": {"type": "string", "minLength": 1}, "n": {"type": "integer", "minimum": 1, "maximum": 8},
    "size": {"type": "string", "description": "WIDTHxHEIGHT or auto"},
    "response_format": {"enum": ["b64_json", "url"]}, "output_format": {"enum": ["png", "webp", "jpeg"]},
    "model": {"type": "string"}, "seed": {"type": "integer", "minimum": 0}}
_IMAGE_REQUEST = {"type": "object", "required": ["prompt"], "additionalProperties": False,
                  "properties": _IMAGE_FIELDS}
_IMAGE_EDIT = {"type": "object", "required": ["prompt", "image"], "additionalProperties": False,
               "properties": {**_IMAGE_FIELDS, "image": {"type": "string", "format": "binary"},
                              "mask": {"type": "string", "format": "binary"}}}
_IMAGES = {"type": "object", "required": ["created", "data"], "properties": {
    "created": {"type": "integer"}, "data": {"type": "array", "items": {"type": "object", "properties": {
        "b64_json": {"type": "string"}, "url": {"type": "string"}}}}}}
_OLLAMA_ERROR = {"type": "object", "required": ["error"], "description": "Ollama's error body (the /api routes)",
                 "properties": {"error": {"type": "string"}}}
_OLLAMA_MODELS = {"type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": {
    "type": "object", "required": ["name", "model"], "properties": {"name": {"type": "string"},
                                                                    "model": {"type": "string"}}}}}}
_OLLAMA_OPTIONS = {"type": "object", "additionalProperties": False, "properties": {
    "temperature": {"type": "number", "minimum": 0, "maximum": 2}, "top_p": {"type": "number"},
    "seed": {"type": "integer", "minimum": 0}, "num_predict": {"type": "integer"},
    "stop": {"type": "array", "items": {"type": "string"}}}}
_OLLAMA_COMMON = {"model": {"type": "string", "minLength": 1}, "stream": {"type": "boolean"},
                  "format": {"anyOf": [{"enum": ["", "json"]}, {"type": "object"}]}, "options": _OLLAMA_OPTIONS,
                  "keep_alive": {"type": ["number", "string"]}}
_OLLAMA_IMAGES = {"type": "array", "items": {"type": "string", "description": "base64"}}
_OLLAMA_GENERATE = {"type": "object", "required": ["model"], "additionalProperties": False, "properties": {
    **_OLLAMA_COMMON, "prompt": {"type": "string"}, "system": {"type": "string"}, "images": _OLLAMA_IMAGES}}
_OLLAMA_CHAT = {"type": "object", "required": ["model", "messages"], "additionalProperties": False, "properties": {
    **_OLLAMA_COMMON, "messages": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["role"], "additionalProperties": False, "properties": {
            "role": {"enum": ["system", "user", "assistant"]}, "content": {"type": "string"},
            "images": _OLLAMA_IMAGES}}}}}
_OLLAMA_EMBED = {"type": "object", "required": ["model", "input"], "additionalProperties": False, "properties": {
    "model": {"type": "string", "minLength": 1}, "keep_alive": {"type": ["number", "string"]},
    "truncate": {"const": True},
    "input": {"anyOf": [{"type": "string", "minLength": 1},
                        {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}]}}}
_OLLAMA_EMBEDDINGS = {"type": "object", "required": ["model", "prompt"], "additionalProperties": False,
                      "properties": {"model": {"type": "string", "minLength": 1},
                                     "prompt": {"type": "string", "minLength": 1},
                                     "keep_alive": {"type": ["number", "string"]}}}
_OLLAMA_MODEL_REQUEST = {"type": "object", "required": ["model"], "properties": {
    "model": {"type": "string", "minLength": 1}, "stream": {"type": "boolean"}}}
_JOB_ENDED = {"type": "object", "required": ["job_id", "state"],
              "description": "the terminal event's data when the job had already ended as the stream opened",
              "properties": {"job_id": {"type": "string"}, "state": {"enum": STATES}}}


# -- events: one schema per event class, from its dataclass fields --------------------------------

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def _field_schema(annotation) -> dict:
    """JSON Schema of a field's type (``str``, ``float | None``, ...); anything else: any value."""
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    options = typing.get_args(annotation) if union else (annotation,)
    names = [_JSON_TYPES.get(option) for option in options]
    if None in names:
        return {}
    return {"type": names[0] if len(names) == 1 else names}


def event_classes() -> list[type[events.Event]]:
    """Every concrete event class (those that name their own ``kind``), sorted by kind."""
    found, todo = [], [events.Event]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "kind" in vars(cls) and cls is not events.Event:
            found.append(cls)
    return sorted(found, key=lambda c: c.kind)


def event_schemas() -> dict[str, dict]:
    """Component name -> JSON Schema of what ``Event.to_json`` gives, for every event class."""
    schemas = {}
    for cls in event_classes():
        hints = typing.get_type_hints(cls)
        fields = [f.name for f in dataclasses.fields(cls)]
        schemas[cls.__name__ + "Event"] = {
            "type": "object", "description": (cls.__doc__ or cls.kind).strip().splitlines()[0],
            "required": ["event", *fields], "additionalProperties": False,
            "properties": {"event": {"const": cls.kind}, **{name: _field_schema(hints[name]) for name in fields}},
        }
    return schemas


def _events_union(schemas: dict[str, dict]) -> dict:
    return {"description": "one progress event; `event` names its kind; each job ends with one terminal event "
                           "(job.finished, job.failed or job.cancelled)",
            "oneOf": [{"$ref": REF + name} for name in schemas],
            "discriminator": {"propertyName": "event",
                              "mapping": {s["properties"]["event"]["const"]: REF + name
                                          for name, s in schemas.items()}}}



# -- event streams (OpenAPI 3.1: the schema of a text/event-stream is that of one event) ---------------

def sse_event(kind: str | None, data: dict) -> dict:
    """One Server-Sent Event (``event:`` and ``data:`` lines, as read by an SSE parser); ``data`` is JSON."""
    event = {"type": "object", "required": ["event", "data"], "properties": {
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data}}}
    if kind is not None:
        event["properties"]["event"] = {"const": kind}
    return event


def job_stream_schema() -> dict:
    """Each event of ``GET /jobs/{id}/events``: its kind, and its data's schema (OpenAPI 3.1: one event)."""
    stream = [sse_event("job.state", {"$ref": REF + "Job"})]
    for cls in event_classes():
        data = {"$ref": REF + cls.__name__ + "Event"}
        if cls.terminal:  # the job had already ended as the stream opened: {job_id, state}
            data = {"anyOf": [data, {"$ref": REF + "JobEnded"}]}
        stream.append(sse_event(cls.kind, data))
    return {"oneOf": stream}


#: each event of a streamed /v1 chat completion
CHAT_STREAM = {"description": "`data: <chat.completion.chunk>` events, then `data: [DONE]`", "anyOf": [
    {"type": "object", "required": ["data"], "properties": {"data": {"const": "[DONE]"}}},
    sse_event(None, {"type": "object", "required": ["id", "object", "choices"], "properties": {
        "object": {"const": "chat.completion.chunk"}, "choices": {"type": "array", "items": {
            "type": "object", "required": ["index", "delta", "finish_reason"], "properties": {
                "delta": {"type": "object", "properties": {"role": {"const": "assistant"},
                                                           "content": {"type": "string"}}},
                "finish_reason": {"enum": ["stop", "length", None]}}}}}}),
    sse_event(None, {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type"], "description": "the job failed mid-stream"}}})]}


def components() -> dict[str, dict]:
    """Every component schema of the document, by name."""
    event_schemas_ = event_schemas()
    return {"Error": _ERROR, "ErrorDetail": _ERROR_DETAIL, "Problem": _PROBLEM, "Job": _JOB, "FailedJob": _FAILED_JOB,
            "JobAccepted": _ACCEPTED, "JobPage": _JOB_PAGE, "JobRequest": _JOB_REQUEST, "JobEnded": _JOB_ENDED,
            "Event": _events_union(event_schemas_), **event_schemas_,
            "OpenAIError": _OPENAI_ERROR, "OpenAIUsage": _USAGE, "OpenAIChatRequest": _CHAT_REQUEST,
            "OpenAIChatCompletion": _CHAT_COMPLETION, "OpenAIEmbeddingsRequest": _EMBED_REQUEST,
            "OpenAIEmbeddings": _EMBEDDINGS, "OpenAIModels": _OPENAI_MODELS, "OpenAIModel": _OPENAI_MODEL,
            "OpenAIImageRequest": _IMAGE_REQUEST, "OpenAIImageEdit": _IMAGE_EDIT, "OpenAIImages": _IMAGES,
            "OllamaError": _OLLAMA_ERROR, "OllamaModels": _OLLAMA_MODELS, "OllamaGenerateRequest": _OLLAMA_GENERATE,
            "OllamaChatRequest": _OLLAMA_CHAT, "OllamaEmbedRequest": _OLLAMA_EMBED,
            "OllamaEmbeddingsRequest": _OLLAMA_EMBEDDINGS, "OllamaModelRequest": _OLLAMA_MODEL_REQUEST}
