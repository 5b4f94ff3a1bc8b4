"""The Ollama backend: the official `ollama` client (asynchronous) against the configured server.

The nodes are blocking work (a worker thread of the engine); each call runs the async client in
an event loop of its own there, so the engine's loop never waits on Ollama. Every request has a
connect and a per-read timeout, and cancelling the job cancels the call, which closes its stream:
a server that stalls mid-stream never holds the thread.

Before a request it takes part in the model manager's coordination of the card: a model Ollama
does not hold yet gets room made for it (idle torch models are offloaded, `ModelManager.free`),
just as the manager asks Ollama to unload when a torch model needs the room. A missing model is
pulled on demand when the store allows it, otherwise it is model-not-found with the pull
command. Streamed tokens become progress; HTTP errors, the mid-stream `{"error"}` line and
connection failures become named errors that say what to do.
"""

from __future__ import annotations

from typing import Callable

from engine import FlowError, ModelNotFound
from engine.errors import BackendFailed, BackendUnavailable, InvalidInput, PullFailed
from engine.models import OllamaUnavailable

from .types import Reply, Request, run_until_cancelled

NS = 1e9


class OllamaBackend:
    """Chat, structured output, vision and embeddings through an Ollama server."""

    name = "ollama"
    remote = False

    def __init__(self, manager, ref, *, timeouts: tuple[float, float], keep_alive: str = ""):
        self.manager = manager
        self.model_ref = ref
        self.ref = str(ref)
        self.tag = ref.ollama_name
        self.url = manager.ollama.url
        self.keep_alive = _keep_alive(keep_alive)
        #: (connect, read) seconds; read is per read, so a generation that keeps streaming never hits it
        self.timeouts = timeouts

    def complete(self, ctx, request: Request, on_text: Callable[..., None]) -> Reply:
        """`/api/chat`, streamed (NDJSON) for free text, whole for structured output."""
        return run_until_cancelled(ctx, lambda: self._complete(ctx, request, on_text))

    def embed(self, ctx, texts: list[str]) -> list[list[float]]:
        """`/api/embed`: one vector per text."""
        return run_until_cancelled(ctx, lambda: self._embed(ctx, texts))

    # -- steps (an event loop of their own, in the node's worker thread) ----------------------

    async def _complete(self, ctx, request: Request, on_text) -> Reply:
        async with self._client() as client:
            try:
                await self._prepare(ctx, client, vision=bool(request.images))
                return await self._chat(ctx, client, request, on_text)
            except Exception as exc:
                self._reraise(exc)

    async def _embed(self, ctx, texts: list[str]) -> list[list[float]]:
        async with self._client() as client:
            try:
                await self._prepare(ctx, client)
                kwargs = {"keep_alive": self.keep_alive} if self.keep_alive is not None else {}
                answer = await client.embed(model=self.tag, input=texts, **kwargs)
            except Exception as exc:
                self._reraise(exc)
        return [list(map(float, v)) for v in answer.embeddings]

    def _client(self):
        import httpx
        import ollama

        connect, read = self.timeouts
        return ollama.AsyncClient(host=self.url, timeout=httpx.Timeout(read, connect=connect))

    async def _prepare(self, ctx, client, vision: bool = False) -> None:
        """Make sure Ollama has the model (pull on demand) and the card has room for it."""
        held = {m.model for m in (await client.ps()).models}
        if self.tag not in held:
            local = {m.model: m for m in (await client.list()).models}
            if self.tag not in local:
                await self._pull_or_refuse(ctx, client)
                local = {m.model: m for m in (await client.list()).models}
            size = int(getattr(local.get(self.tag), "size", 0) or 0)
            if size:
                # Ollama's weights go to the card next: offload idle torch models to make room.
                self.manager.free(size)  # brief: bookkeeping and moves of idle models
        if vision:
            shown = await client.show(self.tag)
            caps = list(shown.capabilities or [])
            if caps and "vision" not in caps:
                raise InvalidInput("model", f"{self.ref} cannot read images (it offers: {', '.join(caps)}); use a "
                                            "vision model such as ollama:qwen2.5vl:3b or ollama:llava")

    async def _pull_or_refuse(self, ctx, client) -> None:
        if not self.manager.store.pull_on_demand:
            raise ModelNotFound(self.ref, self.model_ref.pull_command(), "Ollama does not have it")
        ctx.log.info("pulling %s on first use (pull-on-demand is on)", self.ref)
        import ollama

        try:
            async for line in await client.pull(self.tag, stream=True):
                ctx.check_cancelled()
                ctx.progress(line.completed or 0, line.total, f"pull {self.tag}: {line.status}")
        except ollama.ResponseError as exc:
            raise PullFailed(self.ref, exc.error) from exc

    async def _chat(self, ctx, client, request: Request, on_text) -> Reply:
        messages = [dict(m) for m in request.messages]
        if request.images:
            messages[-1]["images"] = list(request.images)
        options = {"num_predict": request.max_tokens, "temperature": request.temperature, "top_p": request.top_p}
        if request.seed is not None:
            options["seed"] = request.seed
        if request.stop:
            options["stop"] = list(request.stop)
        kwargs = dict(model=self.tag, messages=messages, options=options, stream=request.stream)
        if request.format is not None:
            kwargs["format"] = request.format
        if self.keep_alive is not None:
            kwargs["keep_alive"] = self.keep_alive
        if not request.stream:
            final = await client.chat(**kwargs)
            text = final.message.content or ""
            on_text(text, final.eval_count)
        else:
            parts, final = [], None
            async for chunk in await client.chat(**kwargs):
                ctx.check_cancelled()
                piece = chunk.message.content or ""
                if piece:
                    parts.append(piece)
                    on_text(piece, len(parts))
                if chunk.done:
                    final = chunk
            if final is None:
                raise BackendFailed(f"Ollama closed the stream of {self.tag} before its final statistics; retry, "
                                    "and check the server's log if it happens again")
            text = "".join(parts)
        return Reply(text, {
            "prompt_tokens": final.prompt_eval_count, "completion_tokens": final.eval_count,
            "done_reason": final.done_reason, "load_s": _s(final.load_duration),
            "prompt_eval_s": _s(final.prompt_eval_duration), "eval_s": _s(final.eval_duration),
            "server_total_s": _s(final.total_duration),
        })

    def _reraise(self, exc: Exception):
        """Raise our named error for a client failure (FlowErrors pass through as they are)."""
        translated = self._translate(exc)
        if translated is exc:
            raise exc
        raise translated from exc

    def _translate(self, exc: Exception) -> Exception:
        import httpx
        import ollama

        if isinstance(exc, FlowError):
            return exc
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code == 404:
                return ModelNotFound(self.ref, self.model_ref.pull_command(), f"Ollama: {exc.error}")
            if exc.status_code == -1:
                return BackendFailed(f"Ollama failed part-way through {self.tag}: {exc.error}; retry, and check "
                                     "`ollama ps` and the server's log (a model too large for the card fails this way)")
            if exc.status_code in (429, 503):
                return BackendUnavailable(f"Ollama is busy ({exc.status_code}: {exc.error}); retry in a moment")
            return BackendFailed(f"Ollama answered {exc.status_code} for {self.tag}: {exc.error}")
        if isinstance(exc, httpx.ConnectTimeout):
            return OllamaUnavailable(f"the Ollama server at {self.url} did not accept a connection within "
                                     f"{self.timeouts[0]:g} s; check that it runs and FLOW_OLLAMA_URL")
        if isinstance(exc, httpx.TimeoutException):
            return OllamaUnavailable(f"the Ollama server at {self.url} sent nothing for {self.timeouts[1]:g} s while "
                                     f"serving {self.tag}; check `ollama ps` and the server's log, or raise "
                                     "FLOW_BACKEND_READ_TIMEOUT if loading the model takes longer")
        if isinstance(exc, (ConnectionError, httpx.TransportError)):
            return OllamaUnavailable(f"the Ollama server at {self.url} did not answer ({type(exc).__name__}: "
                                     f"{exc}); start it (`ollama serve`) or fix FLOW_OLLAMA_URL")
        return exc


def _keep_alive(value: str):
    """FLOW_OLLAMA_KEEP_ALIVE as Ollama wants it: a duration string, or a number of seconds."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return value


def _s(nanoseconds) -> float | None:
    return None if nanoseconds is None else round(nanoseconds / NS, 6)
