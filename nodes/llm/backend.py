"""One small interface over the three text backends, chosen by the model reference, with privacy.

`ollama:NAME[:TAG]` -> the Ollama server; `openai:MODEL` -> the configured OpenAI-compatible
server; `hf:ORG/NAME[@REV]` or a local folder -> transformers in this process. Privacy and the
fallback model follow the one routing rule of every modality (:mod:`engine.routing`): under
strict privacy a backend outside this machine is refused before any request is made, and never
used as a fallback.
"""

from __future__ import annotations

import time

from engine import routing
from engine.errors import InvalidModelRef, NotConfigured, PrivacyRefused  # noqa: F401  (PrivacyRefused: re-exported)
from engine.models import OllamaUnavailable

from .config import TextBackends
from .hf_backend import TransformersBackend
from .ollama_backend import OllamaBackend
from .openai_backend import OpenAIBackend
from .types import OPENAI_MODEL, Backend, Reply, Request


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


def resolve(ctx, model: str, privacy: str, task: str = "chat") -> Backend:
    """The backend serving `model` ("" = the default for `task`), refused if privacy forbids it."""
    manager = ctx.require_models()
    config = TextBackends.of(ctx)
    settings = config.settings
    model = (model or "").strip() or config.default_model(task, manager.ollama is not None)
    if model.startswith("openai:"):
        name = model[len("openai:"):]
        if not OPENAI_MODEL.match(name):
            raise InvalidModelRef(f"model {model!r}: {name!r} is not a model name; write openai:MODEL, "
                                  "e.g. openai:gpt-4o-mini")
        if not settings.openai_base_url:
            raise NotConfigured(f"model {model!r} needs an OpenAI-compatible server; set FLOW_OPENAI_BASE_URL "
                                "(and FLOW_OPENAI_API_KEY), or name a local model")
        backend = OpenAIBackend(name, settings.openai_base_url, settings.openai_api_key,
                                remote=not routing.is_loopback_url(settings.openai_base_url), timeouts=config.timeouts)
    else:
        ref = manager.store.parse(model)
        if ref.source == "ollama":
            if manager.ollama is None:
                raise OllamaUnavailable(f"model {ref} is served by Ollama but no Ollama server is configured; "
                                        "set FLOW_OLLAMA_URL (e.g. http://127.0.0.1:11434) or name an hf: model")
            backend = OllamaBackend(manager, ref, keep_alive=settings.ollama_keep_alive, timeouts=config.timeouts)
        else:
            backend = TransformersBackend(manager, ref)
    if backend.remote:
        routing.check(backend.ref, settings, privacy, where=settings.openai_base_url)
    return backend


def complete(ctx, model: str, privacy: str, request: Request, task: str = "chat") -> Reply:
    """Run `request` on `model`; under flexible privacy, fall back to the configured model if it is unavailable."""
    backend = resolve(ctx, model, privacy, task)

    def attempt(ref: str) -> Reply:
        return _complete_on(ctx, backend if ref == backend.ref else resolve(ctx, ref, privacy, task), request)

    routed = routing.run(ctx, backend.ref, "text", attempt, requested=privacy, primary_remote=backend.remote)
    if routed.fallback_from:
        routed.result.usage["fallback_from"] = routed.fallback_from
    return routed.result


def _complete_on(ctx, backend: Backend, request: Request) -> Reply:
    meter = Meter(ctx, request.max_tokens)
    reply = backend.complete(ctx, request, meter)
    reply.usage.setdefault("model", backend.ref)
    reply.usage.setdefault("backend", backend.name)
    return meter.finish(reply)


#: True when a URL names this machine (the rule lives in engine.routing)
_is_loopback = routing.is_loopback_url
