"""An Ollama-compatible `/api`: version, tags, ps, show, generate, chat, embed(dings), pull, delete.

Front ends written for Ollama point their URL at the gateway (no path: their client adds
`/api/...`). Generation, embedding and pulls are jobs (`text.chat`, `text.embed`, `model.pull`)
in the same queue as every other job, so they share the GPU, the cache, the history and the
privacy rule. Models are named by flow's ids (`ollama:NAME:TAG`, `hf:ORG/NAME`, a local folder
by its name), as `/api/tags` lists them. Streams are NDJSON (one JSON object per line), the
default as in Ollama; `stream: false` answers one object. Errors are Ollama's `{"error": "..."}`.
Nothing a client sends is ignored: an option or field flow does not honour answers 400 naming it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from engine import FlowError, InvalidWorkflow, Workflow
from engine import events as ev

from . import openai_compat as oa
from .keys import ENGINE, JOBS
from .parse import json_body

#: the Ollama API version flow's /api follows (clients check it for features)
API_VERSION = "0.6.3"
#: Ollama `options` flow honours, and the text.chat input each becomes
OPTIONS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "num_predict": "max_tokens",
           "stop": "stop"}
GENERATE_FIELDS = frozenset({"model", "prompt", "system", "stream", "format", "images", "options", "keep_alive",
                             "think", "raw", "suffix", "template", "context", "logprobs", "top_logprobs"})
CHAT_FIELDS = frozenset({"model", "messages", "stream", "format", "options", "keep_alive", "tools", "think",
                         "logprobs", "top_logprobs"})
_WAIT_S = 24 * 3600


class OllamaError(Exception):
    """A refused request, answered in Ollama's shape ``{"error": "message"}``."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def ollama_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _handler(func):
    """Refusals in Ollama's shape; flow's own errors too (the middleware would answer in flow's shape)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await func(request)
        except (OllamaError, oa.OpenAIError) as exc:
            return ollama_error(getattr(exc, "status", 400), str(exc))
        except InvalidWorkflow as exc:
            return ollama_error(400, "; ".join(f"{p.input or p.node or 'request'}: {p.message}" for p in exc.shown))
        except FlowError as exc:
            status = exc.status if 400 <= exc.status < 600 else 500
            return ollama_error(status, str(exc))

    wrapped.__name__ = func.__name__
    wrapped.__doc__ = func.__doc__
    return wrapped


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _refuse_unknown(body: dict, known: frozenset[str], where: str = "") -> None:
    extra = sorted(set(body) - known)
    if extra:
        raise OllamaError(f"{where}{', '.join(map(repr, extra[:10]))} not supported by flow; remove "
                          f"{'it' if len(extra) == 1 else 'them'} (supported: {', '.join(sorted(known))})")


def _model(body: dict) -> str:
    model = body.get("model", body.get("name"))
    if not isinstance(model, str) or not model.strip():
        raise OllamaError("'model' is required: a model name from GET /api/tags")
    return oa.public_to_ref(model)


def _keep_alive_zero(value: Any) -> bool:
    """keep_alive 0 (or "0", "0s", "0m"): unload the model after the answer."""
    if value is None:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    if isinstance(value, str):
        return value.strip().rstrip("smh") in ("0", "0.0")
    raise OllamaError("keep_alive must be a number of seconds or a duration such as '5m'")


def _falsy_only(body: dict, names: tuple[str, ...]) -> None:
    for name in names:
        if body.get(name) not in (None, False, "", [], {}):
            raise OllamaError(f"{name!r} is not supported by flow; remove it")


def _options(body: dict, inputs: dict) -> None:
    options = body.get("options")
    if options is None:
        return
    if not isinstance(options, dict):
        raise OllamaError("'options' must be an object")
    _refuse_unknown({k: v for k, v in options.items() if v is not None}, frozenset(OPTIONS), "options: ")
    for name, target in OPTIONS.items():
        value = options.get(name)
        if value is None:
            continue
        if name == "num_predict" and isinstance(value, int) and value < 0:
            continue  # -1 (no limit) and -2 (fill the context): the node's own limit applies
        inputs[target] = [value] if name == "stop" and isinstance(value, str) else value


def _format(value: Any) -> Any:
    if value in (None, ""):
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise OllamaError("'format' must be \"json\" or a JSON Schema object")


def _images(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise OllamaError(f"{where} must be a list of base64-encoded images")
    return list(value)


def _stream(body: dict) -> bool:
    """The request's ``stream`` (Ollama's default: true); anything but a JSON boolean is a 400."""
    stream = body.get("stream", True)
    if stream not in (True, False):
        raise OllamaError("'stream' must be true or false")
    return stream


def chat_inputs(body: dict, messages: list[dict], images: list[str]) -> dict:
    inputs: dict[str, Any] = {"messages": messages, "model": _model(body)}
    if images:
        inputs["images"] = images
    fmt = _format(body.get("format"))
    if fmt is not None:
        inputs["format"] = fmt
    _options(body, inputs)
    _falsy_only(body, ("think", "logprobs", "top_logprobs", "tools"))
    return inputs


async def _run_chat(request: web.Request, body: dict, inputs: dict, name: str, answer_key: str) -> web.StreamResponse:
    """Run text.chat as a job: NDJSON pieces then a final line, or one object with stream false."""
    unload = _keep_alive_zero(body.get("keep_alive"))
    stream = _stream(body)  # every field is checked before the job starts
    workflow = oa.chat_workflow(inputs, 1, name)
    jobs = request.app[JOBS]
    record = await jobs.accept(workflow, {}, name=name)
    shown = oa.shown_model(request, inputs["model"], "vision" if "images" in inputs else "chat")

    def piece(text: str) -> dict:
        if answer_key == "message":
            return {"model": shown, "created_at": _now(), "message": {"role": "assistant", "content": text},
                    "done": False}
        return {"model": shown, "created_at": _now(), "response": text, "done": False}

    def final(done, text: str) -> dict:
        usage = done.result["outputs"]["usage"] or {}
        line = piece(text)
        line.update(done=True, done_reason=usage.get("done_reason") or "stop",
                    model=oa.public_id(request, usage.get("model")) or shown, **_durations(usage))
        if answer_key == "response":
            line["context"] = []
        return line

    if not stream:
        done = await jobs.wait(record.id, timeout=_WAIT_S)
        if done.state != "finished":
            return _job_error(done)
        await _maybe_unload(request, unload, inputs["model"])
        return web.json_response(final(done, done.result["outputs"]["reply"]))
    subscription = jobs.subscribe(record.id)
    ended = jobs.get(record.id).terminal
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        streamed = ""
        async for text in oa.streamed_text(subscription, ended):
            streamed += text
            await response.write((json.dumps(piece(text)) + "\n").encode())
        done = jobs.get(record.id)
        if done.state == "finished":
            reply = done.result["outputs"]["reply"]
            rest = reply[len(streamed):] if reply.startswith(streamed) else reply
            if rest:
                await response.write((json.dumps(piece(rest)) + "\n").encode())
            await _maybe_unload(request, unload, inputs["model"])
            await response.write((json.dumps(final(done, "")) + "\n").encode())
        else:  # the status line was sent: the error is the last line, as Ollama does
            await response.write((json.dumps({"error": _job_message(done)}) + "\n").encode())
    finally:
        jobs.unsubscribe(subscription)
    return response


async def _maybe_unload(request: web.Request, unload: bool, model: str) -> None:
    models = request.app[ENGINE].models
    if unload and models is not None:
        ref = model or oa.default_model(request, "chat")
        await asyncio.get_running_loop().run_in_executor(None, lambda: models.unload(ref))


def _durations(usage: dict) -> dict:
    """Ollama's counts and nanosecond durations from a node's usage."""
    total = int((usage.get("total_s") or 0) * 1e9)
    first = int((usage.get("first_token_s") or 0) * 1e9)
    return {"total_duration": total, "load_duration": 0, "prompt_eval_count": usage.get("prompt_tokens") or 0,
            "prompt_eval_duration": first, "eval_count": usage.get("completion_tokens") or 0,
            "eval_duration": max(0, total - first)}


def _job_message(record) -> str:
    return (record.error or {}).get("message", record.state)


def _job_error(record) -> web.Response:
    from .present import job_status

    return ollama_error(job_status(record.error), _job_message(record))


# -- generate and chat -------------------------------------------------------------------------

@_handler
async def generate(request: web.Request) -> web.StreamResponse:
    """POST /api/generate: a prompt (and images) -> a response, streamed as NDJSON by default."""
    body = await json_body(request)
    _refuse_unknown(body, GENERATE_FIELDS)
    _falsy_only(body, ("raw", "suffix", "template", "context"))
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise OllamaError("'prompt' must be a string")
    model = _model(body)
    if not prompt and not body.get("images"):  # Ollama: an empty prompt loads (or, keep_alive 0, unloads) the model
        unload = _keep_alive_zero(body.get("keep_alive"))
        await _maybe_unload(request, unload, model)
        return web.json_response({"model": oa.shown_model(request, model, "chat"), "created_at": _now(),
                                  "response": "", "done": True, "done_reason": "unload" if unload else "load"})
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        raise OllamaError("'system' must be a string")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt or
                                                                               oa.DESCRIBE_PROMPT}]
    inputs = chat_inputs(body, messages, _images(body.get("images"), "images"))
    return await _run_chat(request, body, inputs, "api.generate", "response")


@_handler
async def chat(request: web.Request) -> web.StreamResponse:
    """POST /api/chat: messages (with images) -> the assistant's message, streamed as NDJSON by default."""
    body = await json_body(request)
    _refuse_unknown(body, CHAT_FIELDS)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OllamaError("'messages' must be a non-empty list of {role, content}")
    flat, images = [], []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise OllamaError(f"messages[{i}] must be an object")
        _refuse_unknown({k: v for k, v in message.items() if v not in (None, [], "")},
                        frozenset({"role", "content", "images"}), f"messages[{i}]: ")
        if message.get("role") not in ("system", "user", "assistant"):
            raise OllamaError(f"messages[{i}]: role must be system, user or assistant (tools are not supported)")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise OllamaError(f"messages[{i}].content must be a string")
        found = _images(message.get("images"), f"messages[{i}].images")
        if found and message["role"] != "user":
            raise OllamaError(f"messages[{i}]: images go in user messages")
        images += found
        flat.append({"role": message["role"], "content": content or (oa.DESCRIBE_PROMPT if found else "")})
    inputs = chat_inputs(body, flat, images)
    return await _run_chat(request, body, inputs, "api.chat", "message")


# -- embeddings --------------------------------------------------------------------------------

async def _embed(request: web.Request, body: dict, texts, name: str) -> tuple[list, dict]:
    inputs = {"texts": texts, "model": _model(body)}
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise OllamaError("'options' must be an object")
    if options:
        raise OllamaError(f"options {', '.join(map(repr, sorted(options)))} do not apply to embeddings in flow; "
                          "remove them")
    started = time.perf_counter()
    jobs = request.app[JOBS]
    record = await jobs.accept(oa.embed_workflow(inputs, name), {}, name=name)
    done = await jobs.wait(record.id, timeout=_WAIT_S)
    if done.state != "finished":
        raise _JobFailed(done)
    await _maybe_unload(request, _keep_alive_zero(body.get("keep_alive")), inputs["model"])
    listed = [texts] if isinstance(texts, str) else texts
    tokens = await asyncio.get_running_loop().run_in_executor(None, oa.count_tokens, request, inputs["model"], listed)
    return done.result["outputs"]["vectors"], {
        "model": oa.shown_model(request, inputs["model"], "embed"),
        "total_duration": int((time.perf_counter() - started) * 1e9), "load_duration": 0,
        "prompt_eval_count": tokens}


class _JobFailed(Exception):
    def __init__(self, record):
        self.record = record


@_handler
async def embed(request: web.Request) -> web.Response:
    """POST /api/embed: a text or a list of texts -> one vector each."""
    body = await json_body(request)
    _refuse_unknown(body, frozenset({"model", "input", "truncate", "options", "keep_alive", "dimensions"}))
    texts = body.get("input")
    if not (isinstance(texts, str) and texts) and not (isinstance(texts, list) and texts and
                                                       all(isinstance(t, str) and t for t in texts)):
        raise OllamaError("'input' must be a non-empty string or a non-empty list of non-empty strings")
    if body.get("truncate") is False:
        raise OllamaError("truncate: false is not supported; flow's embedding models truncate long texts")
    if body.get("dimensions") is not None:
        raise OllamaError("'dimensions' is not supported; flow returns the model's full vectors")
    try:
        vectors, meta = await _embed(request, body, texts, "api.embed")
    except _JobFailed as failed:
        return _job_error(failed.record)
    return web.json_response({**meta, "embeddings": vectors})


@_handler
async def embeddings(request: web.Request) -> web.Response:
    """POST /api/embeddings (Ollama's older route): a prompt -> its vector."""
    body = await json_body(request)
    _refuse_unknown(body, frozenset({"model", "prompt", "options", "keep_alive"}))
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise OllamaError("'prompt' must be a non-empty string")
    try:
        vectors, _ = await _embed(request, body, prompt, "api.embeddings")
    except _JobFailed as failed:
        return _job_error(failed.record)
    return web.json_response({"embedding": vectors[0]})


# -- models ------------------------------------------------------------------------------------

def _details(kind: str, source: str) -> dict:
    return {"parent_model": "", "format": "gguf" if source == "ollama" else "safetensors", "family": kind,
            "families": [kind], "parameter_size": "", "quantization_level": ""}


def _entry(request: web.Request, model) -> dict:
    name = oa.public_id(request, model.ref)
    modified = datetime.now(timezone.utc)
    if model.source != "ollama":
        try:
            modified = datetime.fromtimestamp(Path(model.location).stat().st_mtime, timezone.utc)
        except OSError:
            pass
    return {"name": name, "model": name, "modified_at": modified.isoformat().replace("+00:00", "Z"),
            "size": model.size, "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": _details(oa.model_kind(model), model.source)}


async def version(request: web.Request) -> web.Response:
    """GET /api/version."""
    from engine import version as flow_version

    return web.json_response({"version": API_VERSION, "flow": flow_version()})


async def tags(request: web.Request) -> web.Response:
    """GET /api/tags: the models on this machine."""
    return web.json_response({"models": [_entry(request, m) for m in await oa.local_models(request)]})


async def ps(request: web.Request) -> web.Response:
    """GET /api/ps: the models the model manager holds now."""
    models = request.app[ENGINE].models
    if models is None:
        return web.json_response({"models": []})
    report = await asyncio.get_running_loop().run_in_executor(None, models.report)
    listed = []
    for loaded in report.models:
        name = oa.public_id(request, loaded.ref)
        listed.append({"name": name, "model": name, "size": loaded.size,
                       "size_vram": loaded.size if loaded.place not in ("cpu", "disk") else 0,
                       "digest": hashlib.sha256(name.encode()).hexdigest(),
                       "details": _details(loaded.variant or "", "ollama" if name.startswith("ollama:") else "hf"),
                       "expires_at": "0001-01-01T00:00:00Z"})
    return web.json_response({"models": listed})


async def _find(request: web.Request, wanted: str):
    for model in await oa.local_models(request):
        if oa.public_id(request, model.ref) == wanted or model.ref == wanted:
            return model
    raise OllamaError(f"model {wanted!r} not found; GET /api/tags lists the models, POST /api/pull fetches one", 404)


@_handler
async def show(request: web.Request) -> web.Response:
    """POST /api/show: one model's details and capabilities."""
    body = await json_body(request)
    _refuse_unknown(body, frozenset({"model", "name", "verbose"}))
    model = await _find(request, _model(body))
    kind = oa.model_kind(model)
    capabilities = {"chat": ["completion"], "vision": ["completion", "vision"],
                    "embedding": ["embedding"]}.get(kind, [kind])
    entry = _entry(request, model)
    return web.json_response({"modelfile": "", "parameters": "", "template": "", "license": "",
                              "details": entry["details"], "model_info": {"flow.kind": kind, "flow.size": model.size,
                                                                          "flow.source": model.source},
                              "capabilities": capabilities, "modified_at": entry["modified_at"]})


@_handler
async def pull(request: web.Request) -> web.StreamResponse:
    """POST /api/pull: a model.pull job; progress as NDJSON lines (status, total, completed), then success."""
    body = await json_body(request)
    _refuse_unknown(body, frozenset({"model", "name", "insecure", "stream"}))
    if body.get("insecure"):
        raise OllamaError("'insecure' is not supported; flow pulls over verified HTTPS only")
    ref = _model(body)
    engine = request.app[ENGINE]
    if engine.models is None:
        raise OllamaError("this server has no model manager", 503)
    parsed = engine.models.store.parse(ref)  # a bad reference is a 400 now
    stream = _stream(body)
    if parsed.source == "local":  # a folder on this machine: nothing to fetch, it is here
        lines = [{"status": "pulling manifest"}, {"status": f"{oa.public_id(request, str(parsed))} is a local "
                                                            "folder, already on this machine"}, {"status": "success"}]
        if not parsed.path.is_dir():
            raise OllamaError(f"no local model folder {ref!r}", 404)
        if not stream:
            return web.json_response(lines[-1])
        return await _ndjson(request, lines)
    workflow = Workflow.from_dict({"name": "pull", "nodes": {"pull": {"type": "model.pull", "inputs": {"ref": ref}}}})
    jobs = request.app[JOBS]
    record = await jobs.accept(workflow, {}, name="api.pull")
    if not stream:
        done = await jobs.wait(record.id, timeout=_WAIT_S)
        return web.json_response({"status": "success"}) if done.state == "finished" else _job_error(done)
    subscription = jobs.subscribe(record.id)
    ended = jobs.get(record.id).terminal
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        await response.write(b'{"status": "pulling manifest"}\n')
        while not ended:
            event = await subscription.next()
            if event is None:
                break
            if isinstance(event, ev.NodeProgress):
                line: dict[str, Any] = {"status": event.message or "pulling", "digest": f"flow:{ref}",
                                        "completed": int(event.done or 0)}
                if event.total:
                    line["total"] = int(event.total)
                await response.write((json.dumps(line) + "\n").encode())
            elif event.terminal:
                break
        done = jobs.get(record.id)
        last = {"status": "success"} if done.state == "finished" else {"error": _job_message(done)}
        await response.write((json.dumps(last) + "\n").encode())
    finally:
        jobs.unsubscribe(subscription)
    return response


async def _ndjson(request: web.Request, lines: list[dict]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    for line in lines:
        await response.write((json.dumps(line) + "\n").encode())
    return response


@_handler
async def delete(request: web.Request) -> web.Response:
    """DELETE /api/delete: remove a pulled model (an hf: snapshot from flow's cache, or an ollama: model from the
    Ollama server); local folders are the user's and are never deleted."""
    body = await json_body(request)
    _refuse_unknown(body, frozenset({"model", "name"}))
    engine = request.app[ENGINE]
    if engine.models is None:
        raise OllamaError("this server has no model manager", 503)
    store = engine.models.store
    ref = store.parse(_model(body))
    await _find(request, oa.public_id(request, str(ref)))
    if ref.source == "local":
        raise OllamaError(f"{oa.public_id(request, str(ref))} is a local folder; flow does not delete your folders, "
                          "remove it yourself", 400)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, lambda: engine.models.unload(str(ref)))
    if result.get("busy"):
        raise OllamaError(f"{ref} is in use by a running job; try again when it ends", 409)
    if ref.source == "hf":
        from engine.models import hf

        await loop.run_in_executor(None, shutil.rmtree, hf.repo_dir(store.hf_cache, ref.name))
    else:
        await loop.run_in_executor(None, _ollama_delete, store.ollama.url, ref.ollama_name)
    return web.json_response({})


def _ollama_delete(url: str, name: str) -> None:
    import urllib.error
    import urllib.request

    call = urllib.request.Request(url.rstrip("/") + "/api/delete", data=json.dumps({"model": name}).encode(),
                                  method="DELETE", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(call, timeout=30):
            pass
    except (urllib.error.URLError, OSError) as exc:
        raise OllamaError(f"the Ollama server could not delete {name}: {exc}", 502) from None
