"""A small client for the Ollama server beside us: what it holds on the GPU, unloading, pulling.

Plain `urllib` on purpose: the manager calls it from worker threads, it needs four endpoints,
and the engine stays free of an HTTP client dependency.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Iterator

from ..errors import FlowError, ModelNotFound, PullFailed


class OllamaUnavailable(FlowError):
    """The Ollama server did not answer (not running, wrong URL)."""

    kind = "ollama_unavailable"


@dataclass(frozen=True, slots=True)
class OllamaModel:
    """One model Ollama knows: its name, bytes on disk or in memory, and bytes on the GPU."""

    name: str
    size: int
    size_vram: int = 0


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One progress report of a pull: a status line and, when known, bytes done of total."""

    ref: str
    status: str
    completed: int | None = None
    total: int | None = None


class OllamaClient:
    """Talks to one Ollama server (`/api/ps`, `/api/generate` unload, `/api/pull`, `/api/tags`)."""

    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def loaded(self) -> list[OllamaModel]:
        """Models Ollama holds in memory now (`GET /api/ps`), with their GPU share."""
        body = self._json("GET", "/api/ps")
        return [
            OllamaModel(m.get("name") or m.get("model", "?"), int(m.get("size", 0)), int(m.get("size_vram", 0)))
            for m in body.get("models", [])
        ]

    def vram_bytes(self) -> int:
        """Total GPU bytes held by Ollama's loaded models."""
        return sum(m.size_vram for m in self.loaded())

    def unload(self, name: str) -> None:
        """Ask Ollama to unload `name` now (an empty generate with `keep_alive: 0`)."""
        self._json("POST", "/api/generate", {"model": name, "prompt": "", "keep_alive": 0, "stream": False})

    def unload_all(self) -> list[str]:
        """Unload every model Ollama holds on the GPU; return their names."""
        names = [m.name for m in self.loaded() if m.size_vram > 0]
        for name in names:
            self.unload(name)
        return names

    def local(self) -> list[OllamaModel]:
        """Models Ollama has on disk (`GET /api/tags`)."""
        body = self._json("GET", "/api/tags")
        return [OllamaModel(m.get("model") or m.get("name", "?"), int(m.get("size", 0))) for m in body.get("models", [])]

    def has(self, name: str) -> bool:
        """Whether Ollama has `name` (`NAME:TAG`) on disk."""
        return any(m.name == name for m in self.local())

    def pull(self, name: str, progress: Callable[[PullProgress], None] | None = None) -> None:
        """Pull `name` through `/api/pull`, reporting each streamed line; Ollama resumes interrupted pulls."""
        ref = f"ollama:{name}"
        for line in self._stream("/api/pull", {"model": name, "stream": True}, ref):
            # A failure after the stream started keeps status 200 and arrives as an {"error"} line.
            if "error" in line:
                raise PullFailed(ref, str(line["error"]))
            if progress is not None:
                progress(PullProgress(ref, str(line.get("status", "")), line.get("completed"), line.get("total")))
            if line.get("status") == "success":
                return
        raise PullFailed(ref, "the server closed the stream before reporting success")

    # -- HTTP ------------------------------------------------------------------------------

    def _open(self, method: str, path: str, payload: dict | None, timeout: float | None):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            message = _error_text(exc)
            if exc.code == 404 and path in ("/api/generate", "/api/pull"):
                raise ModelNotFound(f"ollama:{(payload or {}).get('model')}", detail=message) from exc
            raise FlowError(f"Ollama at {self.url} answered {exc.code} to {path}: {message}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise OllamaUnavailable(
                f"the Ollama server at {self.url} did not answer ({exc}); start it (`ollama serve`) "
                "or set FLOW_OLLAMA_URL"
            ) from exc

    def _json(self, method: str, path: str, payload: dict | None = None) -> dict:
        with self._open(method, path, payload, self.timeout) as response:
            return json.loads(response.read() or b"{}")

    def _stream(self, path: str, payload: dict, ref: str) -> Iterator[dict]:
        # No read timeout: a large layer may take minutes between lines on a slow link.
        with self._open("POST", path, payload, None) as response:
            for raw in response:
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    yield json.loads(raw)
                except ValueError as exc:
                    raise PullFailed(ref, f"Ollama sent a line that is not JSON: {raw[:80]!r}") from exc


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", exc.reason))
    except (ValueError, AttributeError, OSError):
        return str(exc.reason)
