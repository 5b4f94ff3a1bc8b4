"""OpenAI-compatible routes: chat completions (plain and streamed), embeddings, models.

Front ends written for OpenAI's API point their base URL at the gateway's `/v1`. Each request
becomes a one-node job (`text.chat` or `text.embed`) in the same queue as every other job, so
it shares the GPU, the cache, the history and the privacy setting; `model` names any flow
model reference (`ollama:llama3.2`, `hf:ORG/NAME`, a local folder), empty for the default.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from engine import InvalidWorkflow, Workflow
from engine import events as ev

from .keys import ENGINE, JOBS
from .parse import json_body
from .present import job_status

_CHAT_FIELDS = {"max_tokens": "max_tokens", "max_completion_tokens": "max_tokens", "temperature": "temperature",
                "top_p": "top_p", "seed": "seed"}


def openai_error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> web.Response:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": code}},
                             status=status)


def chat_workflow(body: dict) -> Workflow | web.Response:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return openai_error(400, "'messages' must be a non-empty list", param="messages")
    flat = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: keep the text ones
            texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type", "text") == "text"]
            if not all(isinstance(t, str) for t in texts):
                return openai_error(400, f"messages[{i}]: a text content part needs 'text' as a string",
                                    param=f"messages[{i}].content")
            content = "".join(texts)
        if not isinstance(content, str) or message.get("role") not in ("system", "user", "assistant"):
            return openai_error(400, f"messages[{i}] needs a role (system, user, assistant) and text content",
                                param=f"messages[{i}]")
        flat.append({"role": message["role"], "content": content})
    inputs: dict[str, Any] = {"messages": flat, "model": str(body.get("model") or "")}
    for field, name in _CHAT_FIELDS.items():
        if body.get(field) is not None:
            inputs[name] = body[field]
    return Workflow.from_dict({"name": "v1.chat", "nodes": {"chat": {"type": "text.chat", "inputs": inputs}},
                               "outputs": {"reply": {"from": "chat", "output": "reply"},
                                           "usage": {"from": "chat", "output": "usage"}}})

async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)  # the error middleware answers /v1 errors in OpenAI's shape
    workflow = chat_workflow(body)
    if isinstance(workflow, web.Response):
        return workflow
    jobs = request.app[JOBS]
    try:
        record = await jobs.accept(workflow, {}, name="v1.chat")
    except InvalidWorkflow as exc:
        return _invalid(exc)
    model = str(body.get("model") or "default")
    created, completion_id = int(time.time()), f"chatcmpl-{record.id}"
    if body.get("stream"):
        return await _stream(request, jobs, record.id, completion_id, created, model)
    done = await jobs.wait(record.id, timeout=24 * 3600)
    if done.state != "finished":
        return _job_error(done)
    reply, usage = done.result["outputs"]["reply"], done.result["outputs"]["usage"]
    return web.json_response({
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                     "finish_reason": _finish(usage)}],
        "usage": _usage(usage),
    })

async def _stream(request, jobs, job_id, completion_id, created, model) -> web.StreamResponse:
    """Server-Sent Events of `chat.completion.chunk`s from the node's streamed text, then [DONE]."""
    subscription = jobs.subscribe(job_id)
    # A small job may have run to its end while it was being accepted: then the record has it all.
    ended = jobs.get(job_id).terminal
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)

    async def send(delta: dict, finish: str | None = None) -> None:
        chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    try:
        await send({"role": "assistant"})
        streamed = ""
        while not ended:
            event = await subscription.next()
            if event is None:
                break
            if isinstance(event, ev.NodeProgress) and event.message:
                streamed += event.message
                await send({"content": event.message})
            elif event.terminal:
                break
        done = jobs.get(job_id)
        if done.state == "finished":
            reply = done.result["outputs"]["reply"]
            if reply != streamed:
                # served from the cache (nothing streamed), or the node sent less than its reply
                rest = reply[len(streamed):] if reply.startswith(streamed) else reply
                await send({"content": rest})
            await send({}, _finish(done.result["outputs"]["usage"]))
        else:  # the status line was sent already: the error travels as an event, in OpenAI's shape
            await response.write(f"data: {json.dumps(_error_json(done))}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
    finally:
        jobs.unsubscribe(subscription)
    return response

async def embeddings(request: web.Request) -> web.Response:
    body = await json_body(request)  # the error middleware answers /v1 errors in OpenAI's shape
    texts = body.get("input")
    if not (isinstance(texts, str) or (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts))):
        return openai_error(400, "'input' must be a string or a non-empty list of strings", param="input")
    model = str(body.get("model") or "")
    workflow = Workflow.from_dict({"name": "v1.embeddings", "nodes": {"embed": {
        "type": "text.embed", "inputs": {"texts": texts, "model": model}}},
        "outputs": {"vectors": {"from": "embed", "output": "vectors"}}})
    jobs = request.app[JOBS]
    try:
        record = await jobs.accept(workflow, {}, name="v1.embeddings")
    except InvalidWorkflow as exc:
        return _invalid(exc)
    done = await jobs.wait(record.id, timeout=24 * 3600)
    if done.state != "finished":
        return _job_error(done)
    vectors = done.result["outputs"]["vectors"]
    return web.json_response({
        "object": "list", "model": model or "default",
        "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": 0, "total_tokens": 0},  # token counts are not measured for embeddings
    })

async def models(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    found = [] if engine.models is None else [m.ref for m in engine.models.store.list()]
    return web.json_response({"object": "list", "data": [
        {"id": ref, "object": "model", "created": 0, "owned_by": "flow"} for ref in found]})


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

