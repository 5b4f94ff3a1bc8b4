"""One small interface over the three text backends, chosen by the model reference, with privacy.

`ollama:NAME[:TAG]` -> the Ollama server; `openai:MODEL` -> the configured OpenAI-compatible
server; `hf:ORG/NAME[@REV]` or a local folder -> transformers in this process. Under strict
privacy a backend outside this machine is refused before any request is made, and never used
as a silent fallback.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from engine import OutOfMemory
from engine.errors import InvalidModelRef, NotConfigured, PrivacyRefused
from engine.net import is_loopback
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


def effective_privacy(config: TextBackends, requested: str) -> str:
    """The stricter of the configured and the requested privacy."""
    return "strict" if "strict" in (config.privacy, requested) else "flexible"


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
                                remote=not _is_loopback(settings.openai_base_url), timeouts=config.timeouts)
    else:
        ref = manager.store.parse(model)
        if ref.source == "ollama":
            if manager.ollama is None:
                raise OllamaUnavailable(f"model {ref} is served by Ollama but no Ollama server is configured; "
                                        "set FLOW_OLLAMA_URL (e.g. http://127.0.0.1:11434) or name an hf: model")
            backend = OllamaBackend(manager, ref, keep_alive=settings.ollama_keep_alive, timeouts=config.timeouts)
        else:
            backend = TransformersBackend(manager, ref)
    if backend.remote and effective_privacy(config, privacy) == "strict":
        who = "the server's FLOW_PRIVACY" if config.privacy == "strict" else "this node's privacy input"
        raise PrivacyRefused(
            f"model {backend.ref} is served by {settings.openai_base_url}, outside this machine, and privacy is "
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
        fallback_model = config.settings.text_fallback_model
        if not fallback_model or backend.remote:
            raise
        if effective_privacy(config, privacy) == "strict":
            note = f"the fallback model {fallback_model} was not tried: privacy is strict"
            raise type(exc)(f"{exc} ({note})") from exc
        ctx.log.warning("%s is unavailable (%s); falling back to %s", backend.ref, exc, fallback_model)
        fallback = resolve(ctx, fallback_model, privacy, task)
        reply = _complete_on(ctx, fallback, request)
        reply.usage["fallback_from"] = backend.ref
        return reply


def _complete_on(ctx, backend: Backend, request: Request) -> Reply:
    meter = Meter(ctx, request.max_tokens)
    reply = backend.complete(ctx, request, meter)
    reply.usage.setdefault("model", backend.ref)
    reply.usage.setdefault("backend", backend.name)
    return meter.finish(reply)


def _is_loopback(url: str) -> bool:
    """True when `url` names this machine (localhost, 127.0.0.0/8, ::1): requests stay here."""
    return is_loopback(urlsplit(url).hostname or "")
