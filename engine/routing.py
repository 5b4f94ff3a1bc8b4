"""The one routing rule of every model-leasing node: where a model reference sends data, privacy, fallbacks.

A model reference either stays on this machine (``hf:``, ``ollama:``, a local folder, an
``openai:`` model on a loopback server) or leaves it: ``openai:`` on any other server, and
``horde:`` always (AI Horde is a community queue: the prompt goes to strangers' GPUs, whatever
URL the API answers on). The privacy in force is the stricter of the server's ``FLOW_PRIVACY``
and the node's own ``privacy`` input:

- ``strict`` refuses a reference that leaves the machine *before any request is made*
  (:class:`engine.errors.PrivacyRefused`, HTTP 403), and never falls back to one;
- ``flexible`` allows them, and enables the modality's fallback model
  (``FLOW_TEXT_FALLBACK_MODEL``, ``FLOW_IMAGE_FALLBACK_MODEL``) when the local model is missing,
  out of memory or its backend is down. A fallback is never silent: it is logged, reported as
  the node's progress (the job's events) and returned, for the node to record in its outputs.

``model: "auto"`` (images) picks the local default when it is present, else the fallback.
The engine reads no environment: the settings come from the node's configuration (the faces
put :class:`engine.settings.Settings` there, inside the text nodes' configuration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from .errors import (BackendUnavailable, ModelNotFound, NotConfigured, OllamaUnavailable, OutOfMemory,
                     PrivacyRefused)
from .net import is_loopback
from .settings import Settings

PRIVACY = ("strict", "flexible")
#: the errors after which a modality's fallback model is tried (the local model is missing, out of memory, down)
FALLBACK_ON: Mapping[str, tuple[type[Exception], ...]] = {
    "text": (OllamaUnavailable, OutOfMemory),
    "image": (ModelNotFound, BackendUnavailable, OutOfMemory),
}
AUTO = "auto"


def settings_of(config: Mapping[str, Any] | None) -> Settings:
    """The settings a node's ``ctx.config`` carries (inside the text configuration), or the defaults."""
    config = config or {}
    for value in (config.get("settings"), getattr(config.get("text"), "settings", None)):
        if isinstance(value, Settings):
            return value
    return Settings()


def configured_privacy(settings: Settings) -> str:
    """``FLOW_PRIVACY``, checked: "strict" or "flexible"."""
    privacy = (settings.privacy or "strict").strip().lower()
    if privacy not in PRIVACY:
        raise NotConfigured(f"privacy must be 'strict' or 'flexible', got {settings.privacy!r}; fix FLOW_PRIVACY")
    return privacy


def effective_privacy(settings: Settings, requested: str = "") -> str:
    """The stricter of the configured and the requested (a node's ``privacy`` input) privacy."""
    return "strict" if "strict" in (configured_privacy(settings), (requested or "").strip().lower()) else "flexible"


def destination(model: str, settings: Settings) -> str | None:
    """Where ``model`` sends its requests when that is outside this machine (for messages), else None."""
    model = (model or "").strip()
    if model.startswith("horde:"):
        return f"AI Horde ({settings.horde_url}), a community GPU queue"
    if model.startswith("openai:") and settings.openai_base_url and not is_loopback_url(settings.openai_base_url):
        return settings.openai_base_url
    return None


def is_remote(model: str, settings: Settings) -> bool:
    """True when ``model``'s requests leave this machine."""
    return destination(model, settings) is not None


def check(model: str, settings: Settings, requested: str = "", *, where: str | None = None) -> None:
    """Refuse ``model`` under strict privacy when its requests leave this machine; call before any request.

    ``where`` overrides the destination named in the message (e.g. a server URL the caller resolved)."""
    where = where or destination(model, settings)
    if where is None or effective_privacy(settings, requested) == "flexible":
        return
    who = "the server's FLOW_PRIVACY" if configured_privacy(settings) == "strict" else "this node's privacy input"
    raise PrivacyRefused(
        f"model {model} is served by {where}, outside this machine, and privacy is strict (set by {who}); use a "
        "local model (hf:ORG/NAME, ollama:NAME or a local folder), or set privacy to flexible in both "
        "FLOW_PRIVACY and the node")


def fallback_model(settings: Settings, modality: str) -> str:
    """The configured fallback of ``modality`` ("text", "image"), or ""."""
    return (getattr(settings, f"{modality}_fallback_model", "") or "").strip()


@dataclass(frozen=True)
class Routed:
    """What a routed call gave: its result, the model that made it, and the model it fell back from ("" if none)."""

    result: Any
    model: str
    fallback_from: str = ""


def run(ctx: Any, model: str, modality: str, attempt: Callable[[str], Any], *, requested: str = "",
        primary_remote: bool | None = None) -> Routed:
    """``attempt(model)``, checked against privacy first; on a fallback error, ``attempt(fallback)`` when allowed.

    The fallback is tried only under flexible privacy, only from a local model, and only once; it is
    checked against privacy like any model. Under strict privacy the original error is raised with a
    note that the fallback was not tried. ``primary_remote`` overrides :func:`is_remote` for the first
    model (a caller that resolved the model's server itself).
    """
    settings = settings_of(getattr(ctx, "config", None))
    remote = is_remote(model, settings) if primary_remote is None else primary_remote
    check(model, settings, requested)
    try:
        return Routed(attempt(model), model)
    except FALLBACK_ON.get(modality, ()) as exc:
        fallback = fallback_model(settings, modality)
        if not fallback or remote or fallback == model:
            raise
        if effective_privacy(settings, requested) == "strict":
            exc.args = (f"{exc} (the fallback model {fallback} was not tried: privacy is strict)",)
            raise
        note = f"{model} is unavailable ({getattr(exc, 'kind', type(exc).__name__)}); falling back to {fallback}"
        ctx.log.warning("%s: %s", note, exc)
        ctx.progress(0, None, f"fallback: {note}")
        check(fallback, settings, requested)
        return Routed(attempt(fallback), fallback, model)


def pick_auto(ctx: Any, modality: str, local_default: str, present: Callable[[str], bool],
              requested: str = "") -> str:
    """What ``model: "auto"`` means: ``local_default`` when ``present(local_default)`` (on disk, and the card
    has room), else the modality's fallback when privacy allows it, else ``local_default`` (whose error then
    says how to get it)."""
    settings = settings_of(getattr(ctx, "config", None))
    fallback = fallback_model(settings, modality)
    if present(local_default) or not fallback:
        return local_default
    if is_remote(fallback, settings) and effective_privacy(settings, requested) == "strict":
        return local_default
    ctx.progress(0, None, f"auto: {local_default} is not available here; using {fallback}")
    return fallback


def is_loopback_url(url: str) -> bool:
    """True when ``url`` names this machine (localhost, 127.0.0.0/8, ::1): requests stay here."""
    return is_loopback(urlsplit(url).hostname or "")
