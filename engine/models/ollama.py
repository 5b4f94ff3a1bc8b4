"""A small client for the Ollama server beside us: what it holds on the GPU, unloading, pulling.

Plain `http.client` on purpose: the manager calls it from worker threads, it needs four
endpoints, and the engine stays free of an HTTP client dependency. Every call has a connect and
a read timeout; a pull also shuts its socket down when its job is cancelled, so a server that
stalls mid-stream never holds a worker thread.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from ..cancel import OnCancel
from ..errors import BackendFailed, Cancelled, ModelNotFound, OllamaUnavailable, PullFailed




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
    """Talks to one Ollama server (`/api/ps`, `/api/generate` unload, `/api/pull`, `/api/tags`).

    ``timeout`` bounds each short call as a whole (the server answers those at once); a pull
    streams, so it gets ``connect_timeout`` to connect and ``read_timeout`` per read (a large layer
    may take a while between progress lines, but never that long).
    """

    def __init__(self, url: str, timeout: float = 5.0, *, connect_timeout: float = 10.0,
                 read_timeout: float = 300.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

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

    def pull(self, name: str, progress: Callable[[PullProgress], None] | None = None, *,
             on_cancel: OnCancel | None = None) -> None:
        """Pull `name` through `/api/pull`, reporting each streamed line; Ollama resumes interrupted pulls.

        With ``on_cancel`` (e.g. ``ctx.on_cancel``), cancelling the job closes the stream and the
        pull raises :class:`Cancelled` at once, even while the server sends nothing.
        """
        ref = f"ollama:{name}"

        def on_line(line: dict) -> bool:
            # A failure after the stream started keeps status 200 and arrives as an {"error"} line.
            if "error" in line:
                raise PullFailed(ref, str(line["error"]))
            if progress is not None:
                progress(PullProgress(ref, str(line.get("status", "")), line.get("completed"), line.get("total")))
            return line.get("status") == "success"

        if not self._stream("/api/pull", {"model": name, "stream": True}, ref, on_line, on_cancel):
            raise PullFailed(ref, "the server closed the stream before reporting success")

    # -- HTTP ------------------------------------------------------------------------------

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = kind(parts.hostname or "localhost", parts.port, timeout=timeout)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise self._unavailable(exc) from exc
        return connection

    def _send(self, connection: http.client.HTTPConnection, method: str, path: str,
              payload: dict | None) -> http.client.HTTPResponse:
        """Send one request and read the status; HTTP errors become named errors."""
        body = None if payload is None else json.dumps(payload).encode()
        connection.request(method, urlsplit(self.url).path + path, body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status >= 400:
            message = _error_text(response)
            if response.status == 404 and path in ("/api/generate", "/api/pull"):
                raise ModelNotFound(f"ollama:{(payload or {}).get('model')}", detail=message)
            raise BackendFailed(f"Ollama at {self.url} answered {response.status} to {path}: {message}")
        return response

    def _json(self, method: str, path: str, payload: dict | None = None) -> dict:
        connection = self._connect(self.timeout)
        try:
            return json.loads(self._send(connection, method, path, payload).read() or b"{}")
        except (OSError, http.client.HTTPException) as exc:
            raise self._unavailable(exc) from exc
        finally:
            connection.close()

    def _stream(self, path: str, payload: dict, ref: str, on_line: Callable[[dict], bool],
                on_cancel: OnCancel | None) -> bool:
        """POST and hand each NDJSON line to `on_line` until it returns True (then True) or the stream ends."""
        connection = self._connect(self.connect_timeout)
        connection.sock.settimeout(self.read_timeout)  # per read: a slow pull keeps sending progress lines
        cancelled = threading.Event()

        def close() -> None:  # on the cancelling thread: wakes the read blocked in this one
            cancelled.set()
            _shut_down(connection.sock)

        unregister = on_cancel(close) if on_cancel is not None else _nothing
        try:
            response = self._send(connection, "POST", path, payload)
            for raw in response:
                if cancelled.is_set():
                    break
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    line = json.loads(raw)
                except ValueError as exc:
                    raise PullFailed(ref, f"Ollama sent a line that is not JSON: {raw[:80]!r}") from exc
                if on_line(line):
                    return True
        except (OSError, http.client.HTTPException) as exc:
            if cancelled.is_set():
                raise Cancelled(f"the pull of {ref} was cancelled") from exc
            if isinstance(exc, TimeoutError):
                raise OllamaUnavailable(f"the Ollama server at {self.url} sent nothing for {self.read_timeout:g} s "
                                        f"while pulling {ref}; retry (the pull resumes), and check the server's "
                                        "log") from exc
            raise self._unavailable(exc) from exc
        finally:
            unregister()
            connection.close()
        if cancelled.is_set():
            raise Cancelled(f"the pull of {ref} was cancelled")
        return False

    def _unavailable(self, exc: Exception) -> OllamaUnavailable:
        return OllamaUnavailable(f"the Ollama server at {self.url} did not answer ({str(exc) or type(exc).__name__}); "
                                 "start it (`ollama serve`) or set FLOW_OLLAMA_URL")


def _shut_down(sock: socket.socket | None) -> None:
    # shutdown(), not close(): closing a socket does not wake a thread blocked reading it; shutting it down does.
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


def _nothing() -> None:
    pass


def _error_text(response: http.client.HTTPResponse) -> str:
    try:
        return str(json.loads(response.read()).get("error", response.reason))
    except (ValueError, AttributeError, OSError, http.client.HTTPException):
        return str(response.reason)
