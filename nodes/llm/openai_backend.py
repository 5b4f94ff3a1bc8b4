"""The OpenAI-compatible backend: a cloud model (e.g. Gemini's OpenAI endpoint) or vLLM, LM Studio, llama.cpp.

Uses the official `openai` client against the configured base URL and key. Free text streams
(server-sent events) into progress; structured output asks for `response_format` (a JSON Schema,
or a JSON object) and is read whole. Client errors become named errors that say what to do.
Every request has a connect and a per-read timeout, and cancelling the job cancels the call,
which closes its stream: a server that stalls mid-stream never holds the worker thread.
"""

from __future__ import annotations

import base64
from typing import Callable

from engine import FlowError, ModelNotFound
from engine.errors import BackendFailed, BackendUnavailable, NotConfigured

from .types import Reply, Request, run_until_cancelled

#: one retry of a failed connection or a 429/5xx answer (the client's default is 2); a retry waits
#: at most another timeout, and cancelling the job ends it as well
MAX_RETRIES = 1


class OpenAIBackend:
    """Chat, structured output, vision and embeddings through `/v1/chat/completions` and `/v1/embeddings`."""

    name = "openai"

    def __init__(self, model: str, base_url: str, api_key: str, *, remote: bool, timeouts: tuple[float, float]):
        self.model = model
        self.ref = f"openai:{model}"
        self.base_url = base_url
        self.api_key = api_key
        #: False only for a server on this machine's loopback (requests do not leave it)
        self.remote = remote
        #: (connect, read) seconds; read is per read, so a generation that keeps streaming never hits it
        self.timeouts = timeouts

    def complete(self, ctx, request: Request, on_text: Callable[..., None]) -> Reply:
        """One chat completion; streamed for free text."""
        return run_until_cancelled(ctx, lambda: self._complete(ctx, request, on_text))

    def embed(self, ctx, texts: list[str]) -> list[list[float]]:
        """`/v1/embeddings`, in the order of the texts."""
        return run_until_cancelled(ctx, lambda: self._embed(ctx, texts))

    # -- steps (an event loop of their own, in the node's worker thread) ----------------------

    async def _complete(self, ctx, request: Request, on_text) -> Reply:
        kwargs = dict(model=self.model, messages=_messages(request), max_tokens=request.max_tokens,
                      temperature=request.temperature, top_p=request.top_p)
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if isinstance(request.format, dict):
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "answer", "schema": request.format, "strict": True}}
        elif request.format == "json":
            kwargs["response_format"] = {"type": "json_object"}
        async with self._client() as client:
            try:
                if not request.stream:
                    answer = await client.chat.completions.create(**kwargs)
                    choice = answer.choices[0]
                    text = choice.message.content or ""
                    on_text(text, getattr(answer.usage, "completion_tokens", None))
                    return Reply(text, _usage(answer.usage, choice.finish_reason))
                return await self._stream(ctx, client, kwargs, on_text)
            except Exception as exc:
                self._reraise(exc)

    async def _embed(self, ctx, texts: list[str]) -> list[list[float]]:
        async with self._client() as client:
            try:
                answer = await client.embeddings.create(model=self.model, input=texts)
            except Exception as exc:
                self._reraise(exc)
        return [list(map(float, d.embedding)) for d in sorted(answer.data, key=lambda d: d.index)]

    def _client(self):
        import openai

        connect, read = self.timeouts
        # A local server may need no key, but the client insists on one.
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "none",
                                  timeout=openai.Timeout(read, connect=connect), max_retries=MAX_RETRIES)

    async def _stream(self, ctx, client, kwargs: dict, on_text) -> Reply:
        parts, usage, reason = [], None, None
        stream = await client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            ctx.check_cancelled()
            usage = chunk.usage or usage
            for choice in chunk.choices:
                piece = choice.delta.content if choice.delta else None
                if piece:
                    parts.append(piece)
                    on_text(piece, len(parts))
                reason = choice.finish_reason or reason
        if reason is None:
            raise BackendFailed(f"{self.base_url} ended the stream of {self.model} without a finish reason; retry")
        return Reply("".join(parts), _usage(usage, reason))

    def _reraise(self, exc: Exception):
        """Raise our named error for a client failure (FlowErrors pass through as they are)."""
        import openai

        if isinstance(exc, FlowError):
            raise exc
        where = f"the OpenAI-compatible server at {self.base_url}"
        if isinstance(exc, openai.NotFoundError):
            raise ModelNotFound(self.ref, f"(choose a model {where} serves: GET {self.base_url}/models)",
                                _api_message(exc)) from exc
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            raise NotConfigured(f"{where} refused the key ({_api_message(exc)}); set FLOW_OPENAI_API_KEY") from exc
        if isinstance(exc, openai.RateLimitError):
            raise BackendUnavailable(f"{where} is rate-limiting ({_api_message(exc)}); retry later") from exc
        if isinstance(exc, openai.APIStatusError):
            raise BackendFailed(f"{where} answered {exc.status_code} for {self.model}: {_api_message(exc)}") from exc
        if isinstance(exc, openai.APITimeoutError):
            connect, read = self.timeouts
            raise BackendUnavailable(f"{where} timed out on {self.model} (allowed: {connect:g} s to connect, "
                                     f"{read:g} s between reads); retry, or raise FLOW_BACKEND_READ_TIMEOUT if it needs longer") from exc
        if isinstance(exc, openai.APIConnectionError):
            raise BackendUnavailable(f"{where} did not answer ({exc}); check FLOW_OPENAI_BASE_URL") from exc
        raise exc


def _messages(request: Request) -> list[dict]:
    messages = [dict(m) for m in request.messages]
    if request.images:
        last = messages[-1]
        parts = [{"type": "text", "text": last["content"]}]
        parts += [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}
                  for png in request.images]
        last["content"] = parts
    return messages


def _usage(usage, reason) -> dict:
    return {"prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None), "done_reason": reason}


def _api_message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return body["message"]
    return str(getattr(exc, "message", exc))
