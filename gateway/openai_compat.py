"""OpenAI-compatible routes: chat completions (plain and streamed, vision, structured output), embeddings, models.

Front ends written for OpenAI's API point their base URL at the gateway's `/v1`. Each request
becomes a job (`text.chat` nodes, or `text.embed`) in the same queue as every other job, so it
shares the GPU, the cache, the history and the privacy setting; `model` names any flow model
reference (`ollama:llama3.2`, `hf:ORG/NAME`, a local folder by its name), empty for the default.
Nothing a client sends is ignored: a field flow does not honour answers 400 naming it.

Extensions: `task` (`chat`, `vision`, `ocr`, `embedding`) picks the default model of that task
when `model` is empty; `privacy_mode` (`strict`/`flexible`) is the request's privacy (the
stricter of it and the server's FLOW_PRIVACY wins).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from engine import InvalidWorkflow, Workflow
from engine import events as ev

from .keys import ENGINE, JOBS
from .parse import json_body
from .present import job_status

#: the fields of a chat completion request flow honours (anything else answers 400)
CHAT_FIELDS = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
                         "stop", "seed", "stream", "stream_options", "response_format", "task", "privacy_mode"})
EMBED_FIELDS = frozenset({"model", "input", "encoding_format", "task", "privacy_mode"})
MAX_N = 8
TASKS = {"chat": "chat", "vision": "vision", "ocr": "vision"}
OCR_PROMPT = "Transcribe all text in the image exactly."
DESCRIBE_PROMPT = "Describe this image."
_WAIT_S = 24 * 3600


class OpenAIError(Exception):
    """A request flow refuses, answered in OpenAI's error shape."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code

    def response(self) -> web.Response:
        return openai_error(self.status, str(self), param=self.param, code=self.code)


def openai_error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> web.Response:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": code}},
                             status=status)


def unknown_fields(body: dict, known: frozenset[str], where: str = "") -> None:
    """Refuse fields flow does not honour, naming them (a client's field is never silently dropped)."""
    extra = sorted(set(body) - known)
    if extra:
        names = ", ".join(repr(f) for f in extra[:10])
        raise OpenAIError(f"{where}{names} {'is' if len(extra) == 1 else 'are'} not supported by flow; remove "
                          f"{'it' if len(extra) == 1 else 'them'} (supported: {', '.join(sorted(known))})",
                          param=f"{where}{extra[0]}", code="unsupported_parameter")


# -- chat --------------------------------------------------------------------------------------

def _image_part(part: dict, where: str) -> str:
    """The base64 of an `image_url` part's data: URL, or its http(s) URL as a :class:`Remote` to fetch."""
    unknown_fields(part, frozenset({"type", "image_url"}), f"{where}: ")
    spec = part.get("image_url")
    if isinstance(spec, str):
        spec = {"url": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise OpenAIError(f"{where}: an image_url part needs 'image_url': {{'url': 'data:image/png;base64,...'}}",
                          param=where)
    unknown_fields(spec, frozenset({"url", "detail"}), f"{where}.image_url: ")
    if spec.get("detail", "auto") not in ("auto", "low", "high"):
        raise OpenAIError(f"{where}.image_url.detail must be auto, low or high", param=f"{where}.image_url.detail")
    url = spec["url"]
    if url.startswith(("http://", "https://")):
        return Remote(url)  # fetched through the SSRF guard before the job is accepted
    if not url.startswith("data:") or ";base64," not in url[:100]:
        raise OpenAIError(f"{where}: the image URL must be a data URL with base64 (data:image/png;base64,...) or "
                          "an http(s) URL", param=f"{where}.image_url.url")
    return url.split(",", 1)[1]


class Remote(str):
    """An image part's http(s) URL, still to be fetched."""


#: the largest image an http(s) image part may fetch, and how long the fetch may take
MAX_IMAGE_BYTES = 20 << 20
FETCH_TIMEOUT_S = 30.0


async def fetch_images(request: web.Request, inputs: dict) -> None:
    """Replace each http(s) image URL of `inputs` by the image's base64, fetched through engine.fetch's SSRF guard
    (in a thread: never on the event loop). A refused or failed fetch raises its FlowError (403, 400, 422, 502)."""
    images = inputs.get("images") or []
    if not any(isinstance(i, Remote) for i in images):
        return
    import base64

    from engine.fetch import fetch
    from nodes.llm.generate import MAX_IMAGES

    if len(images) > MAX_IMAGES:  # the chat node's own limit, checked before anything is fetched
        raise OpenAIError(f"a request takes at most {MAX_IMAGES} images; send fewer image_url parts", param="messages")

    from .keys import SETTINGS

    allow = request.app[SETTINGS].fetch_allow_private
    loop = asyncio.get_running_loop()

    def get(url: str) -> str:
        found = fetch(url, max_bytes=MAX_IMAGE_BYTES, timeout=FETCH_TIMEOUT_S, allow_private=allow,
                      accept=("image/",))
        return base64.b64encode(found.body).decode()

    inputs["images"] = [await loop.run_in_executor(None, get, str(i)) if isinstance(i, Remote) else i
                        for i in images]


def _messages(messages: Any) -> tuple[list[dict], list[str]]:
    """(text messages for text.chat, base64 images); every part checked, none dropped."""
    if not isinstance(messages, list) or not messages:
        raise OpenAIError("'messages' must be a non-empty list", param="messages")
    flat, images = [], []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise OpenAIError(f"{where} must be an object with role and content", param=where)
        unknown_fields(message, frozenset({"role", "content"}), f"{where}: ")
        role = message.get("role")
        role = "system" if role == "developer" else role
        if not isinstance(role, str) or role not in ("system", "user", "assistant"):
            raise OpenAIError(f"{where}: role {message.get('role')!r} is not supported; use system, developer, user "
                              "or assistant (tool messages need tools, which flow does not offer)", param=where)
        content = message.get("content")
        if isinstance(content, list):  # content parts: text and images
            texts = []
            for j, part in enumerate(content):
                at = f"{where}.content[{j}]"
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    unknown_fields(part, frozenset({"type", "text"}), f"{at}: ")
                    if not isinstance(part.get("text"), str):
                        raise OpenAIError(f"{at}: a text content part needs 'text' as a string", param=at)
                    texts.append(part["text"])
                elif kind == "image_url":
                    if role != "user":
                        raise OpenAIError(f"{at}: images go in user messages", param=at)
                    images.append(_image_part(part, at))
                else:
                    raise OpenAIError(f"{at}: content part type {kind!r} is not supported; use text or image_url",
                                      param=at)
            content = "\n".join(texts)
        if not isinstance(content, str):
            raise OpenAIError(f"{where} needs text content (a string or content parts)", param=f"{where}.content")
        flat.append({"role": role, "content": content})
    return flat, images


def _format(spec: Any) -> Any:
    """`response_format` as text.chat's `format`: "text", "json", or the JSON Schema."""
    if spec is None:
        return "text"
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "text":
        unknown_fields(spec, frozenset({"type"}), "response_format: ")
        return "text"
    if kind == "json_object":
        unknown_fields(spec, frozenset({"type"}), "response_format: ")
        return "json"
    if kind == "json_schema":
        unknown_fields(spec, frozenset({"type", "json_schema"}), "response_format: ")
        inner = spec.get("json_schema")
        if not isinstance(inner, dict) or not isinstance(inner.get("schema"), dict):
            raise OpenAIError("response_format.json_schema needs 'name' and 'schema' (a JSON Schema object)",
                              param="response_format.json_schema")
        unknown_fields(inner, frozenset({"name", "schema", "strict", "description"}), "response_format.json_schema: ")
        return inner["schema"]
    raise OpenAIError("response_format.type must be text, json_object or json_schema", param="response_format")


def _request_task(body: dict, param_task: str = "task") -> str:
    task = body.get("task")
    if task is None:
        return ""
    if not isinstance(task, str):
        raise OpenAIError("task must be chat, vision, ocr or embedding", param=param_task)
    if task == "embedding":
        raise OpenAIError("task 'embedding' belongs to POST /v1/embeddings", param=param_task)
    if task not in TASKS:
        raise OpenAIError("task must be chat, vision, ocr or embedding", param=param_task)
    return task


def _privacy(body: dict) -> str | None:
    mode = body.get("privacy_mode")
    if mode is not None and mode not in ("strict", "flexible"):
        raise OpenAIError("privacy_mode must be strict or flexible", param="privacy_mode")
    return mode


def chat_inputs(body: dict) -> tuple[dict, int]:
    """text.chat's inputs for a chat completion request, and n (how many choices)."""
    unknown_fields(body, CHAT_FIELDS)
    messages, images = _messages(body.get("messages"))
    task = _request_task(body)
    if task == "ocr" or (images and not messages[-1]["content"].strip()):
        if messages[-1]["role"] == "user" and not messages[-1]["content"].strip():
            messages[-1]["content"] = OCR_PROMPT if task == "ocr" else DESCRIBE_PROMPT
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise OpenAIError("'model' must be a string (a flow model id from GET /v1/models)", param="model")
    inputs: dict[str, Any] = {"messages": messages, "model": public_to_ref(model or "")}
    if images:
        inputs["images"] = images
    if task:
        inputs["task"] = TASKS[task]
    privacy = _privacy(body)
    if privacy:
        inputs["privacy"] = privacy
    tokens = [body.get(k) for k in ("max_tokens", "max_completion_tokens") if body.get(k) is not None]
    if len(tokens) == 2 and tokens[0] != tokens[1]:
        raise OpenAIError("max_tokens and max_completion_tokens disagree; send one", param="max_completion_tokens")
    if tokens:
        inputs["max_tokens"] = tokens[0]
    for field in ("temperature", "top_p", "seed"):
        if body.get(field) is not None:
            inputs[field] = body[field]
    stop = body.get("stop")
    if stop is not None:
        inputs["stop"] = [stop] if isinstance(stop, str) else stop
    fmt = _format(body.get("response_format"))
    if fmt != "text":
        inputs["format"] = fmt
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        raise OpenAIError(f"n must be an integer from 1 to {MAX_N}", param="n")
    options = body.get("stream_options")
    if options is not None:
        if not body.get("stream"):
            raise OpenAIError("stream_options needs stream: true", param="stream_options")
        if not isinstance(options, dict):
            raise OpenAIError("stream_options must be an object", param="stream_options")
        unknown_fields(options, frozenset({"include_usage"}), "stream_options: ")
    if body.get("stream") not in (None, True, False):
        raise OpenAIError("stream must be true or false", param="stream")
    return inputs, n


def chat_workflow(inputs: dict, n: int, name: str = "v1.chat") -> Workflow:
    """n `text.chat` nodes (choice i uses seed + i when a seed is given)."""
    nodes, outputs = {}, {}
    for i in range(n):
        node = dict(inputs)
        if i and inputs.get("seed") is not None and isinstance(inputs["seed"], int):
            node["seed"] = inputs["seed"] + i
        nodes[f"chat{i}" if i else "chat"] = {"type": "text.chat", "inputs": node}
    for key in nodes:
        suffix = key[len("chat"):]
        outputs[f"reply{suffix}"] = {"from": key, "output": "reply"}
        outputs[f"usage{suffix}"] = {"from": key, "output": "usage"}
    return Workflow.from_dict({"name": name, "nodes": nodes, "outputs": outputs})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)  # the error middleware answers /v1 errors in OpenAI's shape
    try:
        inputs, n = chat_inputs(body)
        if body.get("stream") and n > 1:
            raise OpenAIError("n > 1 cannot be streamed; ask with stream: false, or once per choice", param="n")
        await fetch_images(request, inputs)
        workflow = chat_workflow(inputs, n)
    except OpenAIError as exc:
        return exc.response()
    except InvalidWorkflow as exc:
        return _invalid(exc)
    jobs = request.app[JOBS]
    try:
        record = await jobs.accept(workflow, {}, name="v1.chat")
    except InvalidWorkflow as exc:
        return _invalid(exc)
    model = shown_model(request, inputs["model"], inputs.get("task") or ("vision" if "images" in inputs else "chat"))
    created, completion_id = int(time.time()), f"chatcmpl-{record.id}"
    if body.get("stream"):
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await _stream(request, jobs, record.id, completion_id, created, model, usage)
    done = await jobs.wait(record.id, timeout=_WAIT_S)
    if done.state != "finished":
        return _job_error(done)
    outputs = done.result["outputs"]
    choices, total = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for i in range(n):
        suffix = str(i) if i else ""
        usage = outputs[f"usage{suffix}"]
        choices.append({"index": i, "message": {"role": "assistant", "content": outputs[f"reply{suffix}"],
                                                "refusal": None},
                        "logprobs": None, "finish_reason": _finish(usage)})
        counted = _usage(usage)
        total = {k: total[k] + counted[k] for k in total} if i else counted
    return web.json_response({
        "id": completion_id, "object": "chat.completion", "created": created,
        "model": public_id(request, outputs["usage"].get("model")) or model,
        "choices": choices, "usage": total,
    })


async def _stream(request, jobs, job_id, completion_id, created, model, include_usage) -> web.StreamResponse:
    """Server-Sent Events of `chat.completion.chunk`s from the node's streamed text, then [DONE]."""
    subscription = jobs.subscribe(job_id)
    # A small job may have run to its end while it was being accepted: then the record has it all.
    ended = jobs.get(job_id).terminal
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)

    async def send(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> None:
        chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if include_usage:
            chunk["usage"] = usage
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    try:
        await send({"role": "assistant", "content": ""})
        streamed = ""
        async for piece in streamed_text(subscription, ended):
            streamed += piece
            await send({"content": piece})
        done = jobs.get(job_id)
        if done.state == "finished":
            reply, usage = done.result["outputs"]["reply"], done.result["outputs"]["usage"]
            if reply != streamed:
                # served from the cache (nothing streamed), or the node sent less than its reply
                rest = reply[len(streamed):] if reply.startswith(streamed) else reply
                await send({"content": rest})
            await send({}, _finish(usage))
            if include_usage:
                await send(None, usage=_usage(usage))
        else:  # the status line was sent already: the error travels as an event, in OpenAI's shape
            await response.write(f"data: {json.dumps(_error_json(done))}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
    finally:
        jobs.unsubscribe(subscription)
    return response


# -- embeddings --------------------------------------------------------------------------------

def embed_inputs(body: dict) -> dict:
    """text.embed's inputs for an embeddings request."""
    unknown_fields(body, EMBED_FIELDS)
    texts = body.get("input")
    if not (isinstance(texts, str) or (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts))):
        raise OpenAIError("'input' must be a string or a non-empty list of strings (token arrays are not "
                          "supported)", param="input")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise OpenAIError("encoding_format must be float or base64", param="encoding_format")
    if body.get("task") not in (None, "embedding"):
        raise OpenAIError("task on /v1/embeddings can only be embedding", param="task")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise OpenAIError("'model' must be a string", param="model")
    inputs = {"texts": texts, "model": public_to_ref(model or "")}
    privacy = _privacy(body)
    if privacy:
        inputs["privacy"] = privacy
    return inputs


async def embeddings(request: web.Request) -> web.Response:
    body = await json_body(request)  # the error middleware answers /v1 errors in OpenAI's shape
    try:
        inputs = embed_inputs(body)
    except OpenAIError as exc:
        return exc.response()
    done = await run_job(request, embed_workflow(inputs, "v1.embeddings"))
    if isinstance(done, web.Response):
        return done
    vectors = done.result["outputs"]["vectors"]
    texts = [inputs["texts"]] if isinstance(inputs["texts"], str) else inputs["texts"]
    tokens = await asyncio.get_running_loop().run_in_executor(None, count_tokens, request, inputs["model"], texts)
    return web.json_response({
        "object": "list", "model": shown_model(request, inputs["model"], "embed"),
        "data": [{"object": "embedding", "embedding": _encoded(v, body.get("encoding_format")), "index": i}
                 for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


def _encoded(vector: list[float], encoding: str | None):
    """A vector as numbers, or as base64 of little-endian float32 (what the openai client asks for by default)."""
    if encoding != "base64":
        return vector
    import base64
    import struct

    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embed_workflow(inputs: dict, name: str) -> Workflow:
    return Workflow.from_dict({"name": name, "nodes": {"embed": {"type": "text.embed", "inputs": inputs}},
                               "outputs": {"vectors": {"from": "embed", "output": "vectors"}}})


def count_tokens(request: web.Request, model: str, texts: list[str]) -> int:
    """Tokens in `texts` by the model's own tokenizer when it is a transformers model; else about 4 characters
    per token (Ollama and OpenAI-compatible servers do not say)."""
    engine = request.app[ENGINE]
    ref = model or default_model(request, "embed")
    try:
        if engine.models is not None and not ref.startswith(("ollama:", "openai:")):
            from engine.models import hf

            parsed = engine.models.store.parse(ref)  # never pulls: only a tokenizer already on disk is read
            path = parsed.path if parsed.source == "local" else hf.snapshot(engine.models.store.hf_cache, parsed)
            if path is None:
                raise LookupError(ref)
            tokenizer = _tokenizer(str(path))
            return sum(len(tokenizer(t)["input_ids"]) for t in texts)
    except Exception:  # noqa: BLE001 - usage is an estimate when the tokenizer cannot be read
        pass
    return sum(max(1, len(t) // 4) for t in texts)


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str):
    """A model folder's tokenizer, read once (counting tokens for usage)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


async def run_job(request: web.Request, workflow: Workflow, name: str | None = None):
    """Accept `workflow` as a job and wait for it: the finished record, or an OpenAI-shaped error response."""
    jobs = request.app[JOBS]
    try:
        record = await jobs.accept(workflow, {}, name=name or workflow.name)
    except InvalidWorkflow as exc:
        return _invalid(exc)
    done = await jobs.wait(record.id, timeout=_WAIT_S)
    if done.state != "finished":
        return _job_error(done)
    return done


# -- models ------------------------------------------------------------------------------------

def _roots(request: web.Request) -> tuple[Path, ...]:
    models = request.app[ENGINE].models
    return tuple(models.store.roots) if models is not None else ()


def public_id(request: web.Request, ref: str | None) -> str | None:
    """A model's id as clients see it: `hf:ORG/NAME`, `ollama:NAME:TAG`, a local folder by its name (never a
    server path)."""
    if not ref:
        return ref
    if ref.startswith(("hf:", "ollama:", "openai:")):
        return ref
    path = Path(ref)
    for root in _roots(request):
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return path.name


def public_to_ref(model: str) -> str:
    """A model id back to a reference (ids are references already; a local folder's name resolves under the roots)."""
    return model.strip()


def default_model(request: web.Request, task: str) -> str:
    from nodes.llm.config import KEY, TextBackends

    engine = request.app[ENGINE]
    config = engine.config.get(KEY)
    config = config if isinstance(config, TextBackends) else TextBackends()
    has_ollama = engine.models is not None and engine.models.ollama is not None
    return config.default_model(task, has_ollama)


def shown_model(request: web.Request, model: str, task: str) -> str:
    """The model a request names, or the default for its task, as an id."""
    return public_id(request, model or default_model(request, task)) or model


def model_kind(model) -> str:
    """chat, vision, embedding, image, video or audio: what a model on disk does (from its config files)."""
    if model.source == "ollama":  # by name (asking Ollama's /api/show per model would slow every listing)
        name = model.ref.lower()
        if "embed" in name:
            return "embedding"
        return "vision" if any(k in name for k in ("llava", "vision", "vl:", "vl-", "moondream", "bakllava")) \
            or name.split(":")[1].endswith("vl") else "chat"
    folder = Path(model.location)
    try:
        index = folder / "model_index.json"
        if index.is_file():
            name = str(json.loads(index.read_text()).get("_class_name", ""))
            return "video" if "Video" in name else "audio" if "Audio" in name else "image"
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    arch = " ".join(config.get("architectures") or [])
    if "vision_config" in config or "ImageTextToText" in arch or "Vision2Seq" in arch or "Llava" in arch:
        return "vision"
    if "Whisper" in arch or "Audio" in arch or "Speech" in arch or "Musicgen" in arch:
        return "audio"
    if "CausalLM" in arch or "ForConditionalGeneration" in arch:
        return "chat"
    return "embedding"


def _model_json(request: web.Request, model) -> dict:
    return {"id": public_id(request, model.ref), "object": "model", "created": 0, "owned_by": "flow",
            "kind": model_kind(model)}


async def local_models(request: web.Request) -> list:
    engine = request.app[ENGINE]
    if engine.models is None:
        return []
    return await asyncio.get_running_loop().run_in_executor(None, engine.models.store.list)


async def models(request: web.Request) -> web.Response:
    found = await local_models(request)
    return web.json_response({"object": "list", "data": [_model_json(request, m) for m in found]})


async def model(request: web.Request) -> web.Response:
    wanted = request.match_info["id"]
    for found in await local_models(request):
        if public_id(request, found.ref) == wanted:
            return web.json_response(_model_json(request, found))
    return openai_error(404, f"the model {wanted!r} is not on this machine; GET /v1/models lists them, and "
                             f"`flow pull {wanted}` fetches it", param="model", code="model_not_found")


# -- errors ------------------------------------------------------------------------------------

def _invalid(exc: InvalidWorkflow) -> web.Response:
    first = exc.problems[0]
    message = "; ".join(f"{p.input or p.node or 'request'}: {p.message}" for p in exc.shown)
    return openai_error(400, message, param=first.input, code="invalid_value")


def _error_json(record) -> dict:
    """A failed job's error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    error = record.error or {}
    status = job_status(error)
    return {"error": {"message": error.get("message", record.state),
                      "type": "server_error" if status >= 500 else "invalid_request_error",
                      "param": error.get("input"), "code": error.get("cause") or error.get("type")}}


def _job_error(record) -> web.Response:
    return web.json_response(_error_json(record), status=job_status(record.error))


def _finish(usage: dict) -> str:
    return "length" if (usage or {}).get("done_reason") == "length" else "stop"


def _usage(usage: dict) -> dict:
    prompt, completion = (usage or {}).get("prompt_tokens") or 0, (usage or {}).get("completion_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def streamed_text(subscription, ended: bool):
    """The pieces of text a job's node streams (its progress messages), until the job's terminal event.

    ``ended``: the job had ended when subscribing (nothing more will come). Shared by the OpenAI
    and Ollama streams.
    """
    while not ended:
        event = await subscription.next()
        if event is None or event.terminal:
            return
        if isinstance(event, ev.NodeProgress) and event.message:
            yield event.message
