"""What the text nodes and their backends share: a request, a reply, the backend protocol, and one helper.

Imports point one way: the backends (`ollama_backend`, `openai_backend`, `hf_backend`) import
this module, `backend` imports them, and the nodes import `backend`. Nothing here imports a
backend.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol, TypeVar

#: an OpenAI-compatible server's model id (letters, digits and _.:/@-; no ".." path tricks)
OPENAI_MODEL = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.:/@\-]{0,199}$")

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
