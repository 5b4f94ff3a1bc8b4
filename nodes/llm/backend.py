"""One small interface over the three text backends, chosen by the model reference, with privacy.

`ollama:NAME[:TAG]` -> the Ollama server; `openai:MODEL` -> the configured OpenAI-compatible
server; `hf:ORG/NAME[@REV]` or a local folder -> transformers in this process. Under strict
privacy a backend outside this machine is refused before any request is made, and never used
as a silent fallback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol, TypeVar
from urllib.parse import urlsplit

from engine import OutOfMemory
from engine.errors import InvalidModelRef, NotConfigured, PrivacyRefused
from engine.models import OllamaUnavailable

from .config import TextBackends

#: an OpenAI-compatible server's model id (letters, digits and _.:/@-; no ".." path tricks)
_OPENAI_MODEL = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.:/@\-]{0,199}$")

T = TypeVar("T")




@dataclass
class Request:
    """What a text node asks of a backend; the images go with the last user message."""

    messages: list[dict]
    max_tokens: int = 512
    temperature: float = 0.8
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: None (free text), "json", or a JSON Schema (structured output)
    format: Any = None
    #: PNG bytes of images shown to a vision model
    images: tuple[bytes, ...] = ()

    @property
    def stream(self) -> bool:
        """Free text streams token by token; a structured answer is only useful whole."""
        return self.format is None


@dataclass
class Reply:
    """A backend's answer: the text, and usage (tokens, durations, who answered)."""

    text: str
    usage: dict = field(default_factory=dict)


class Meter:
    """Receives streamed text: turns it into progress events and times the first token."""

    def __init__(self, ctx, total: int):
        self.ctx = ctx
        self.total = total
        self.started = time.perf_counter()
        self.first_token_s: float | None = None
        self.pieces = 0

    def __call__(self, piece: str, tokens: int | None = None) -> None:
        """One streamed piece of text (and the tokens generated so far, when the backend knows)."""
        if self.first_token_s is None and (piece or tokens):
            self.first_token_s = time.perf_counter() - self.started
        if not piece:
            return
        self.pieces += 1
        self.ctx.progress(tokens if tokens is not None else self.pieces, self.total, piece)

    def finish(self, reply: Reply) -> Reply:
        """Add the client-side timings to the reply's usage."""
        total = time.perf_counter() - self.started
        reply.usage["total_s"] = round(total, 6)
        reply.usage["first_token_s"] = round(self.first_token_s if self.first_token_s is not None else total, 6)
        return reply


class Backend(Protocol):
    """What every backend offers the nodes."""

    #: canonical model reference, e.g. ollama:llama3.2:latest
    ref: str
    #: "ollama", "transformers" or "openai"
    name: str
    #: True when requests leave this machine
    remote: bool

    def complete(self, ctx, request: Request, on_text: Callable[..., None]) -> Reply:
        """Generate a reply to `request.messages`, streaming pieces to `on_text` (blocking: a worker thread)."""

    def embed(self, ctx, texts: list[str]) -> list[list[float]]:
        """One vector per text."""


def effective_privacy(config: TextBackends, requested: str) -> str:
    """The stricter of the configured and the requested privacy."""
    return "strict" if "strict" in (config.privacy, requested) else "flexible"


def resolve(ctx, model: str, privacy: str, task: str = "chat") -> Backend:
    """The backend serving `model` ("" = the default for `task`), refused if privacy forbids it."""
    manager = ctx.models
    if manager is None:
        raise NotConfigured("the text nodes need the model manager; build the engine with models=ModelManager(...)")
    config = TextBackends.of(ctx)
    model = (model or "").strip() or config.default_model(task, manager.ollama is not None)
    if model.startswith("openai:"):
        from .openai_backend import OpenAIBackend

        name = model[len("openai:"):]
        if not _OPENAI_MODEL.match(name):
            raise InvalidModelRef(f"model {model!r}: {name!r} is not a model name; write openai:MODEL, "
                                  "e.g. openai:gpt-4o-mini")
        if not config.openai_base_url:
            raise NotConfigured(f"model {model!r} needs an OpenAI-compatible server; set FLOW_OPENAI_BASE_URL "
                                "(and FLOW_OPENAI_API_KEY), or name a local model")
        backend = OpenAIBackend(name, config.openai_base_url, config.openai_api_key,
                                remote=not _is_loopback(config.openai_base_url),
                                timeouts=(config.connect_timeout, config.read_timeout))
    else:
        ref = manager.store.parse(model)
        if ref.source == "ollama":
            from .ollama_backend import OllamaBackend

            if manager.ollama is None:
                raise OllamaUnavailable(f"model {ref} is served by Ollama but no Ollama server is configured; "
                                        "set FLOW_OLLAMA_URL (e.g. http://127.0.0.1:11434) or name an hf: model")
            backend = OllamaBackend(manager, ref, keep_alive=config.ollama_keep_alive,
                                    timeouts=(config.connect_timeout, config.read_timeout))
        else:
            from .hf_backend import TransformersBackend

            backend = TransformersBackend(manager, ref)
    if backend.remote and effective_privacy(config, privacy) == "strict":
        who = "the server's FLOW_PRIVACY" if config.privacy == "strict" else "this node's privacy input"
        raise PrivacyRefused(
            f"model {backend.ref} is served by {config.openai_base_url}, outside this machine, and privacy is "
            f"strict (set by {who}); use a local model (ollama:NAME or hf:ORG/NAME), or set privacy to flexible "
            "in both FLOW_PRIVACY and the node"
        )
    return backend


def complete(ctx, model: str, privacy: str, request: Request, task: str = "chat") -> Reply:
    """Run `request` on `model`; under flexible privacy, fall back to the configured model if it is unavailable."""
    backend = resolve(ctx, model, privacy, task)
    try:
        return _complete_on(ctx, backend, request)
    except (OllamaUnavailable, OutOfMemory) as exc:
        config = TextBackends.of(ctx)
        if not config.fallback_model or backend.remote:
            raise
        if effective_privacy(config, privacy) == "strict":
            note = f"the fallback model {config.fallback_model} was not tried: privacy is strict"
            raise type(exc)(f"{exc} ({note})") from exc
        ctx.log.warning("%s is unavailable (%s); falling back to %s", backend.ref, exc, config.fallback_model)
        fallback = resolve(ctx, config.fallback_model, privacy, task)
        reply = _complete_on(ctx, fallback, request)
        reply.usage["fallback_from"] = backend.ref
        return reply


def _complete_on(ctx, backend: Backend, request: Request) -> Reply:
    meter = Meter(ctx, request.max_tokens)
    reply = backend.complete(ctx, request, meter)
    reply.usage.setdefault("model", backend.ref)
    reply.usage.setdefault("backend", backend.name)
    return meter.finish(reply)


def run_until_cancelled(ctx, call: Callable[[], Awaitable[T]]) -> T:
    """Run an async client call in an event loop of this worker thread; cancelling the job cancels the call.

    Cancelling the task makes the client close the HTTP stream it is reading, so the thread returns
    at once, even from a server that stalled mid-stream (checking ``ctx.cancelled`` between chunks
    alone would wait for a chunk that may never come).
    """

    async def main() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()

        def cancel() -> None:  # runs on the cancelling thread
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # the loop has closed: the call already ended

        unregister = ctx.on_cancel(cancel)
        try:
            return await call()
        except asyncio.CancelledError:
            ctx.check_cancelled()  # the job's Cancelled, with its reason
            raise
        finally:
            unregister()

    return asyncio.run(main())


def _is_loopback(url: str) -> bool:
    """True when `url` names this machine (localhost, 127.0.0.0/8, ::1): requests stay here."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
