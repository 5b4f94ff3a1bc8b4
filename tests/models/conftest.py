"""Fixtures for the model tests: tiny torch modules, a local model store, and two real local servers.

The servers are real HTTP servers on 127.0.0.1 speaking the documented protocols: a Hugging
Face Hub (revision info, tree listing, `resolve` with ETag / X-Repo-Commit / Range) that the
real `huggingface_hub` client downloads from, and an Ollama server (`/api/ps`, unload through
`/api/generate`, `/api/tags`, streaming `/api/pull`). Nothing reaches the internet.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from engine.models import ModelManager, ModelStore

MiB = 1 << 20


class Blob(torch.nn.Module):
    """A module holding exactly `nbytes` (half in a parameter, half in a buffer), float32."""

    def __init__(self, nbytes: int):
        super().__init__()
        half = nbytes // 8
        self.weight = torch.nn.Parameter(torch.zeros(half))
        self.register_buffer("stats", torch.zeros(nbytes // 4 - half))


@pytest.fixture
def store(tmp_path) -> ModelStore:
    """A store whose local root holds empty model folders a, b, c, d."""
    for name in "abcd":
        (tmp_path / "models" / "local" / name).mkdir(parents=True)
    return ModelStore(tmp_path / "models")


@pytest.fixture
def make_manager(store):
    """Build a CPU manager over `store` with budgets in MiB."""

    def make(budget_mib: float, cpu_mib: float = 1000, **kw) -> ModelManager:
        return ModelManager(store, device="cpu", gpu_budget=int(budget_mib * MiB), cpu_budget=int(cpu_mib * MiB), **kw)

    return make


@pytest.fixture
def loader_of():
    """`loader_of(mib, calls)`: a loader building a Blob of `mib` MiB, recording each folder it loads."""

    def make(mib: float, calls: list | None = None):
        def load(path: Path) -> Blob:
            if calls is not None:
                calls.append(path.name)
            return Blob(int(mib * MiB))

        return load

    return make


# -- servers --------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def send_json(self, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def read_json(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")


def _serve(handler_class, state):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    server.state = state
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server


class HubState:
    """Repositories the fake hub serves, and a log of what was asked."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.interrupt_once: set[str] = set()  # files whose first full GET stops half-way
        self.fail_once: set[str] = set()  # files whose first GET answers 500
        self.token: str | None = None  # when set, every repo is gated behind it
        self.url = ""

    def add_repo(self, repo: str, files: dict[str, bytes]) -> str:
        """Serve `repo` at main with these files; return its commit hash."""
        commit = hashlib.sha1(repo.encode() + "".join(sorted(files)).encode()).hexdigest()
        self.repos[repo] = {"sha": commit, "files": files}
        return commit

    def gets(self, path_suffix: str) -> list[dict]:
        """Headers (names lower-cased) of every GET of a resolve URL ending in `path_suffix`."""
        return [{k.lower(): v for k, v in h.items()} for m, p, h in self.requests
                if m == "GET" and "/resolve/" in p and p.endswith(path_suffix)]


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _HubHandler(_Handler):
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        st: HubState = self.server.state
        path = self.path.split("?", 1)[0]
        st.requests.append((self.command, path, dict(self.headers)))
        if st.token and self.headers.get("Authorization") != f"Bearer {st.token}":
            return self.send_json(403, {"error": "gated"}, {"X-Error-Code": "GatedRepo"})
        m = re.match(r"^/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)$", path)
        if m:
            return self._api(st, *m.groups())
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self._resolve(st, *m.groups())
        self.send_json(404, {"error": "not found"})

    def _repo(self, st, repo, rev):
        info = st.repos.get(repo)
        if info is None:
            self.send_json(401, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        if rev not in ("main", info["sha"]):
            self.send_json(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return info

    def _api(self, st, repo, kind, rev):
        info = self._repo(st, repo, rev)
        if info is None:
            return
        files = info["files"]
        if kind == "revision":
            return self.send_json(200, {"id": repo, "sha": info["sha"], "private": False,
                                        "siblings": [{"rfilename": p} for p in sorted(files)]})
        entries, folders = [], set()
        for p, data in sorted(files.items()):
            parts = p.split("/")
            folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
            entry = {"type": "file", "oid": _git_oid(data), "size": len(data), "path": p}
            if p.endswith(".safetensors"):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
        self.send_json(200, entries)

    def _resolve(self, st, repo, rev, file):
        info = self._repo(st, repo, rev)
        if info is None:
            return
        data = info["files"].get(file)
        if data is None:
            return self.send_json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        if self.command == "GET" and file in st.fail_once:
            st.fail_once.discard(file)
            return self.send_json(500, {"error": "Internal Error"})
        etag = hashlib.sha256(data).hexdigest() if file.endswith(".safetensors") else _git_oid(data)
        start = 0
        status = 200
        rng = self.headers.get("Range")
        if rng:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("X-Repo-Commit", info["sha"])
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        if file in st.interrupt_once and not rng:
            # Promise the whole file, send half, hang up: the client must resume with Range.
            st.interrupt_once.discard(file)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def hub():
    """A fake Hugging Face Hub on 127.0.0.1 (see HubState)."""
    state = HubState()
    server = _serve(_HubHandler, state)
    yield state
    server.shutdown()
    server.server_close()


class OllamaState:
    """What the fake Ollama has on disk (`tags`) and in memory (`loaded`, name -> size_vram)."""

    def __init__(self):
        self.tags: dict[str, int] = {}
        self.loaded: dict[str, int] = {}
        self.unloads: list[str] = []
        self.fail_pull: set[str] = set()  # models whose pull stream ends with an {"error"} line
        self.url = ""


class _OllamaHandler(_Handler):
    def do_GET(self):
        st: OllamaState = self.server.state
        if self.path == "/api/ps":
            return self.send_json(200, {"models": [
                {"name": n, "model": n, "size": v + 100, "size_vram": v, "digest": "d" * 64,
                 "details": {"format": "gguf"}, "expires_at": "2030-01-01T00:00:00Z"} for n, v in st.loaded.items()]})
        if self.path == "/api/tags":
            return self.send_json(200, {"models": [
                {"name": n, "model": n, "size": s, "digest": "d" * 64, "modified_at": "2025-01-01T00:00:00Z",
                 "details": {}} for n, s in st.tags.items()]})
        self.send_json(404, {"error": "not found"})

    def do_POST(self):
        st: OllamaState = self.server.state
        body = self.read_json()
        name = body.get("model", "")
        if self.path == "/api/generate":
            if name not in st.tags:
                return self.send_json(404, {"error": f"model '{name}' not found"})
            if body.get("prompt") == "" and body.get("keep_alive") == 0:
                st.loaded.pop(name, None)
                st.unloads.append(name)
                return self.send_json(200, {"model": name, "created_at": "2025-01-01T00:00:00Z", "response": "",
                                            "done": True, "done_reason": "unload"})
            return self.send_json(400, {"error": "the fake only unloads"})
        if self.path == "/api/pull":
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            total = 3000
            lines = [{"status": "pulling manifest"}, {"status": "pulling abc", "digest": "sha256:abc", "total": total}]
            lines += [{"status": "pulling abc", "digest": "sha256:abc", "total": total, "completed": c}
                      for c in (1000, 2000)]
            if name in st.fail_pull:
                lines.append({"error": "max retries exceeded: connection reset"})
            else:
                lines += [{"status": "pulling abc", "digest": "sha256:abc", "total": total, "completed": total},
                          {"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
                st.tags[name] = total
            for line in lines:
                data = json.dumps(line).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_json(404, {"error": "not found"})


@pytest.fixture
def ollama_server():
    """A fake Ollama server on 127.0.0.1 (see OllamaState)."""
    state = OllamaState()
    server = _serve(_OllamaHandler, state)
    yield state
    server.shutdown()
    server.server_close()
