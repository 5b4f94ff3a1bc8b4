"""How the text nodes are configured: privacy, the OpenAI-compatible server, default models.

The engine reads no environment, so the face builds one :class:`TextBackends` from its
settings and gives it to the engine as its ``"text"`` configuration
(``Engine(..., config={"text": TextBackends.from_settings(settings)})``). Nodes read it with
:meth:`TextBackends.of`; without one they use the defaults below (privacy strict, no OpenAI
server), and the Ollama server is whichever the model manager was built with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import NotConfigured

#: the engine configuration key of the text nodes
KEY = "text"
PRIVACY = ("strict", "flexible")

# Defaults that fit a 12 GiB card, by task: (with an Ollama server, in-process).
DEFAULTS = {
    "chat": ("ollama:llama3.2", "hf:Qwen/Qwen2.5-0.5B-Instruct"),
    "embed": ("ollama:nomic-embed-text", "hf:sentence-transformers/all-MiniLM-L6-v2"),
    "vision": ("ollama:qwen2.5vl:3b", "hf:HuggingFaceTB/SmolVLM-256M-Instruct"),
}


@dataclass(frozen=True)
class TextBackends:
    """Backend configuration the text nodes read: privacy, OpenAI-compatible server, defaults."""

    #: "strict": never leave this machine; "flexible": remote models allowed when named
    privacy: str = "strict"
    #: base URL of an OpenAI-compatible server (".../v1"); "" = none
    openai_base_url: str = ""
    #: its key (never printed)
    openai_api_key: str = field(default="", repr=False)
    #: default chat model ("" = by task, see DEFAULTS)
    text_model: str = ""
    #: under "flexible": the model used when the local one is unavailable ("" = none)
    fallback_model: str = ""
    #: keep_alive sent to Ollama ("" = its default)
    ollama_keep_alive: str = ""
    #: seconds to wait for a backend server to accept a connection
    connect_timeout: float = 10.0
    #: seconds a backend server may stay silent mid-request (per read: a streaming generation never hits it)
    read_timeout: float = 300.0

    def __post_init__(self):
        if self.privacy not in PRIVACY:
            raise NotConfigured(f"privacy must be 'strict' or 'flexible', got {self.privacy!r}; fix FLOW_PRIVACY")

    @classmethod
    def from_settings(cls, settings) -> "TextBackends":
        """The configuration from :class:`engine.settings.Settings`."""
        return cls(
            privacy=(settings.privacy or "strict").strip().lower(),
            openai_base_url=settings.openai_base_url,
            openai_api_key=settings.openai_api_key,
            text_model=settings.text_model,
            fallback_model=settings.text_fallback_model,
            ollama_keep_alive=settings.ollama_keep_alive,
            connect_timeout=settings.backend_connect_timeout,
            read_timeout=settings.backend_read_timeout,
        )

    @classmethod
    def of(cls, ctx: Any) -> "TextBackends":
        """The configuration the engine gives nodes (``ctx.config["text"]``), or the defaults."""
        found = getattr(ctx, "config", {}).get(KEY)
        return found if isinstance(found, cls) else cls()

    def default_model(self, task: str, has_ollama: bool) -> str:
        """The model a node uses when its `model` input is empty."""
        if task == "chat" and self.text_model:
            return self.text_model
        with_ollama, in_process = DEFAULTS[task]
        return with_ollama if has_ollama else in_process
