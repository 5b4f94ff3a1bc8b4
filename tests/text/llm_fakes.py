"""Two real HTTP servers on 127.0.0.1 that answer with text from the tiny model.

`FakeOllama` stands in for the Ollama server, which cannot be installed on these machines: it
implements the documented endpoints the backend uses (`/api/chat` and `/api/generate` with
NDJSON streaming and the final statistics, `format` as "json" or a JSON Schema, `/api/pull`,
`/api/tags`, `/api/ps`, `/api/show`, `/api/embed`, 404 for an unknown model, and a mid-stream
`{"error"}` line). `FakeOpenAI` implements `/v1/chat/completions` (plain and SSE),
`/v1/embeddings` and `/v1/models`, with the documented error bodies. Structured answers are
built from the schema, filled with the tiny model's words and token-derived numbers.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OLLAMA_NAME = "tiny:latest"  # the model the fake Ollama serves by default


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes."""
    from PIL import Image

    return Image.open(io.BytesIO(data)).size


def schema_instance(schema: dict, words, numbers):
    """A value fitting `schema` (the subset structured output uses), filled from the model."""
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return schema_instance(schema["anyOf"][0], words, numbers)
    kind = schema.get("type")
    if kind == "object":
        return {k: schema_instance(v, words, numbers) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        return [schema_instance(schema.get("items", {}), words, numbers) for _ in range(count)]
    if kind in ("integer", "number"):
        low = int(schema.get("minimum", 0))
        high = int(schema.get("maximum", low + 100))
        return low + next(numbers) % (high - low + 1)
    if kind == "boolean":
        return next(numbers) % 2 == 0
    if kind == "null":
        return None
    return next(words)


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def read_json(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")


class _Server:
    """Runs a handler class on 127.0.0.1 in a thread; `url` once started."""

    handler: type

    def __init__(self, generator):
        self.generator = generator
        self.requests: list[tuple[str, dict]] = []
        self.url = ""
        self._server = None

    def answer(self, messages, options: dict, fmt):
        """(prompt tokens, pieces, completion tokens) for a chat request, honouring `format`."""
        seed = options.get("seed")
        # A structured answer takes only a few words and numbers from the model: keep its generation short.
        limit = int(options.get("max_tokens", 16)) if fmt is None else 16
        prompt, pieces, count = self.generator.pieces(
            messages, max_tokens=limit, temperature=float(options.get("temperature", 0.8)),
            top_p=float(options.get("top_p", 0.9)), seed=seed)
        if fmt is not None:
            words = itertools.cycle(self.generator.words(seed or 0))
            numbers = itertools.cycle([len(p) + 3 * i for i, p in enumerate(pieces)] or [7])
            value = schema_instance(fmt, words, numbers) if isinstance(fmt, dict) else {"text": " ".join(
                self.generator.words(seed or 0))}
            return prompt, [json.dumps(value)], max(count, 1)
        text = "".join(pieces)
        for stop in options.get("stop") or []:
            if stop in text:
                cut = text.index(stop)
                kept, total = [], 0
                for piece in pieces:
                    if total >= cut:
                        break
                    kept.append(piece[: cut - total])
                    total += len(piece)
                pieces = kept
        return prompt, pieces, count

    def start(self) -> "_Server":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self._server.daemon_threads = True
        self._server.state = self
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


# -- Ollama ----------------------------------------------------------------------------------


class FakeOllama(_Server):
    """Models on disk (`models`: name -> {size, capabilities}), in memory (`loaded`), and what to break."""

    def __init__(self, generator):
        super().__init__(generator)
        self.models: dict[str, dict] = {}
        self.loaded: dict[str, int] = {}
        self.pullable: set[str] = set()  # names /api/pull can fetch
        self.fail_midstream: set[str] = set()  # models whose chat stream ends with an {"error"} line
        self.handler = _OllamaHandler

    def add(self, name: str, size: int = 1000, capabilities=("completion",)) -> None:
        self.models[name] = {"size": size, "capabilities": list(capabilities)}


class _OllamaHandler(_Base):
    def do_GET(self):
        st: FakeOllama = self.server.state
        st.requests.append((self.path, {}))
        if self.path == "/api/tags":
            return self.send_json(200, {"models": [
                {"name": n, "model": n, "size": m["size"], "digest": "d" * 64, "modified_at": "2025-01-01T00:00:00Z",
                 "details": {"format": "gguf", "family": "llama"}} for n, m in st.models.items()]})
        if self.path == "/api/ps":
            return self.send_json(200, {"models": [
                {"name": n, "model": n, "size": v, "size_vram": v, "digest": "d" * 64, "details": {},
                 "expires_at": "2030-01-01T00:00:00Z"} for n, v in st.loaded.items()]})
        if self.path == "/api/version":
            return self.send_json(200, {"version": "0.13.5"})
        self.send_json(404, {"error": "not found"})

    def do_POST(self):
        st: FakeOllama = self.server.state
        body = self.read_json()
        st.requests.append((self.path, body))
        name = body.get("model", "")
        if self.path == "/api/pull":
            return self._pull(st, name)
        if self.path not in ("/api/chat", "/api/generate", "/api/show", "/api/embed"):
            return self.send_json(404, {"error": "not found"})
        if name not in st.models:
            return self.send_json(404, {"error": f"model '{name}' not found"})
        if self.path == "/api/show":
            return self.send_json(200, {"modelfile": f"FROM {name}", "parameters": "", "template": "{{ .Prompt }}",
                                        "details": {"format": "gguf", "family": "llama"}, "model_info": {},
                                        "capabilities": st.models[name]["capabilities"]})
        st.loaded[name] = st.models[name]["size"]
        if self.path == "/api/embed":
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            return self.send_json(200, {"model": name, "embeddings": [st.generator.embed(t) for t in texts]})
        chat = self.path == "/api/chat"
        messages = body.get("messages") if chat else [
            *([{"role": "system", "content": body["system"]}] if body.get("system") else []),
            {"role": "user", "content": body.get("prompt", "")}]
        options = dict(body.get("options") or {})
        options["max_tokens"] = options.pop("num_predict", 16)
        started = time.perf_counter_ns()
        prompt, pieces, count = st.answer(messages, options, body.get("format"))
        took = time.perf_counter_ns() - started

        def line(content: str, done: bool) -> dict:
            out = {"model": name, "created_at": "2025-01-01T00:00:00Z", "done": done}
            if chat:
                out["message"] = {"role": "assistant", "content": content}
            else:
                out["response"] = content
            return out

        final = {**line("", True), "done_reason": "length" if count >= options["max_tokens"] else "stop",
                 "total_duration": took + 1000, "load_duration": 1000, "prompt_eval_count": prompt,
                 "prompt_eval_duration": took // 4, "eval_count": count, "eval_duration": took - took // 4}
        if body.get("stream", True) is False:
            return self.send_json(200, {**final, **line("".join(pieces), True)})
        self.start_stream("application/x-ndjson")
        for i, piece in enumerate(pieces):
            if name in st.fail_midstream and i == 2:
                self.chunk(json.dumps({"error": "an error was encountered while running the model: out of memory"})
                           .encode() + b"\n")
                return self.end_stream()
            self.chunk(json.dumps(line(piece, False)).encode() + b"\n")
        self.chunk(json.dumps(final).encode() + b"\n")
        self.end_stream()

    def _pull(self, st: FakeOllama, name: str):
        if name not in st.pullable:
            return self.send_json(404, {"error": f"pull model manifest: file does not exist ({name})"})
        self.start_stream("application/x-ndjson")
        total = 3000
        lines = [{"status": "pulling manifest"}, {"status": "pulling abc", "digest": "sha256:abc", "total": total}]
        lines += [{"status": "pulling abc", "digest": "sha256:abc", "total": total, "completed": c}
                  for c in (1000, 2000, 3000)]
        lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        for line in lines:
            self.chunk(json.dumps(line).encode() + b"\n")
        st.add(name, total)
        self.end_stream()


# -- OpenAI-compatible --------------------------------------------------------------------------


class FakeOpenAI(_Server):
    """Served `models`, an optional required `api_key`, and `invalid_answers` to hand out first."""

    def __init__(self, generator):
        super().__init__(generator)
        self.models: set[str] = {"tiny"}
        self.api_key = ""
        self.invalid_answers = 0
        self.images: list[bytes] = []
        self.handler = _OpenAIHandler


class _OpenAIHandler(_Base):
    def error(self, status: int, message: str, kind: str, code: str):
        self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})

    def authorised(self, st: FakeOpenAI) -> bool:
        if st.api_key and self.headers.get("Authorization") != f"Bearer {st.api_key}":
            self.error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            return False
        return True

    def do_GET(self):
        st: FakeOpenAI = self.server.state
        st.requests.append((self.path, {}))
        if self.path == "/v1/models" and self.authorised(st):
            return self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "flow-tests"} for m in sorted(st.models)]})

    def do_POST(self):
        st: FakeOpenAI = self.server.state
        body = self.read_json()
        st.requests.append((self.path, body))
        if not self.authorised(st):
            return
        model = body.get("model")
        if model not in st.models:
            return self.error(404, f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found")
        if self.path == "/v1/embeddings":
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            usage = {"prompt_tokens": 1, "total_tokens": 1}
            return self.send_json(200, {"object": "list", "model": model, "usage": usage,
                                        "data": [{"object": "embedding", "index": i, "embedding": st.generator.embed(t)}
                                                 for i, t in enumerate(texts)]})
        if self.path != "/v1/chat/completions":
            return self.error(404, "unknown path", "invalid_request_error", "not_found")
        messages = []
        for m in body["messages"]:
            content = m["content"]
            if isinstance(content, list):
                for part in content:
                    if part["type"] == "image_url":
                        st.images.append(base64.b64decode(part["image_url"]["url"].split(",", 1)[1]))
                content = "".join(p.get("text", "") for p in content)
            messages.append({"role": m["role"], "content": content})
        fmt = body.get("response_format") or {}
        schema = fmt.get("json_schema", {}).get("schema") if fmt.get("type") == "json_schema" else \
            ("json" if fmt.get("type") == "json_object" else None)
        options = {"max_tokens": body.get("max_tokens") or 16, "temperature": body.get("temperature", 0.8),
                   "top_p": body.get("top_p", 0.9), "seed": body.get("seed"), "stop": body.get("stop")}
        prompt, pieces, count = st.answer(messages, options, schema)
        if st.invalid_answers > 0:
            st.invalid_answers -= 1
            pieces = ['{"scores": "not what was asked"']
        reason = "length" if count >= options["max_tokens"] else "stop"
        usage = {"prompt_tokens": prompt, "completion_tokens": count, "total_tokens": prompt + count}
        head = {"id": "chatcmpl-1", "created": 0, "model": model}
        if not body.get("stream"):
            return self.send_json(200, {**head, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(pieces)}, "finish_reason": reason}]})
        self.start_stream("text/event-stream")

        def event(choices, **extra):
            data = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
            self.chunk(b"data: " + json.dumps(data).encode() + b"\n\n")

        event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in pieces:
            event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        event([{"index": 0, "delta": {}, "finish_reason": reason}])
        if (body.get("stream_options") or {}).get("include_usage"):
            event([], usage=usage)
        self.chunk(b"data: [DONE]\n\n")
        self.end_stream()
