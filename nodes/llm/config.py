"""How the text nodes are configured: privacy, the OpenAI-compatible server, default models, timeouts.

Every setting is declared once, in :class:`engine.settings.Settings`; :class:`TextBackends` is
the text nodes' view of it. The engine reads no environment, so the face gives the engine one
as its ``"text"`` configuration (``Engine(..., config={"text": TextBackends.from_settings(settings)})``).
Nodes read it with :meth:`TextBackends.of`; without one they use the settings' defaults (privacy
strict, no OpenAI server), and the Ollama server is whichever the model manager was built with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.routing import PRIVACY, configured_privacy  # noqa: F401  (PRIVACY: re-exported)
from engine.settings import Settings

#: the engine configuration key of the text nodes
KEY = "text"

# Defaults that fit a 12 GiB card, by task: (with an Ollama server, in-process).
DEFAULTS = {
    "chat": ("ollama:llama3.2", "hf:Qwen/Qwen2.5-0.5B-Instruct"),
    "embed": ("ollama:nomic-embed-text", "hf:sentence-transformers/all-MiniLM-L6-v2"),
    "vision": ("ollama:qwen2.5vl:3b", "hf:HuggingFaceTB/SmolVLM-256M-Instruct"),
}


@dataclass(frozen=True)
class TextBackends:
    """The settings the text nodes read (privacy, OpenAI-compatible server, default models, timeouts), checked."""

    settings: Settings = field(default_factory=Settings)

    def __post_init__(self):
        configured_privacy(self.settings)  # checked once, here: the one rule lives in engine.routing

    @classmethod
    def from_settings(cls, settings: Settings) -> "TextBackends":
        """The configuration from :class:`engine.settings.Settings`."""
        return cls(settings)

    @property
    def privacy(self) -> str:
        """"strict": never leave this machine; "flexible": remote models allowed when named."""
        return configured_privacy(self.settings)

    @property
    def timeouts(self) -> tuple[float, float]:
        """(connect, read) seconds for a backend server; read is per read, so a streaming generation never hits it."""
        return self.settings.backend_connect_timeout, self.settings.backend_read_timeout

    @classmethod
    def of(cls, ctx: Any) -> "TextBackends":
        """The configuration the engine gives nodes (``ctx.config["text"]``), or the defaults."""
        found = getattr(ctx, "config", {}).get(KEY)
        return found if isinstance(found, cls) else cls()

    def default_model(self, task: str, has_ollama: bool) -> str:
        """The model a node uses when its `model` input is empty."""
        if task == "chat" and self.settings.text_model:
            return self.settings.text_model
        with_ollama, in_process = DEFAULTS[task]
        return with_ollama if has_ollama else in_process
