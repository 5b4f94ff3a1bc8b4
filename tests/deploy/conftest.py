"""Fixtures for the deployment tests: the repo's deploy files, fake hosts, a real Ollama stand-in.

A "fake host" is real files and real programs: a root folder holding `sys/`, `dev/`, `etc/group`
and `proc/meminfo`, and a bin folder of small shell scripts standing in for docker and rocminfo.
"""

from __future__ import annotations

import json
import socket
import stat
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploy_support import REPO


@pytest.fixture(scope="session")
def compose():
    """compose.yaml as Compose loads it (YAML merge keys resolved)."""
    import yaml

    return yaml.safe_load((REPO / "compose.yaml").read_text())


@pytest.fixture(scope="session")
def env_example() -> str:
    return (REPO / ".env.example").read_text()


@pytest.fixture
def fake_bin(tmp_path):
    """Returns ``add(name, script)`` that writes an executable shell script; ``add.path`` is the folder."""
    folder = tmp_path / "bin"
    folder.mkdir()

    def add(name: str, body: str) -> Path:
        exe = folder / name
        exe.write_text("#!/bin/sh\n" + textwrap.dedent(body))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return exe

    add.path = str(folder)
    return add


class FakeHost:
    """Builds a root folder that looks like a machine with (or without) an AMD GPU."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def gpu(self, target: int = 100301, render_minor: int = 128, vram: int | None = 12 << 30, node: int = 1):
        """A KFD topology node (plus the CPU node 0) and its render node's memory size."""
        nodes = self.root / "sys/class/kfd/kfd/topology/nodes"
        (nodes / "0").mkdir(parents=True, exist_ok=True)
        (nodes / "0/properties").write_text("cpu_cores_count 16\nsimd_count 0\ngfx_target_version 0\n")
        (nodes / str(node)).mkdir(parents=True, exist_ok=True)
        (nodes / f"{node}/properties").write_text(
            f"cpu_cores_count 0\nsimd_count 80\ngfx_target_version {target}\n"
            f"vendor_id 4098\ndrm_render_minor {render_minor}\n")
        if vram is not None:
            device = self.root / f"sys/class/drm/renderD{render_minor}/device"
            device.mkdir(parents=True, exist_ok=True)
            (device / "mem_info_vram_total").write_text(f"{vram}\n")
        return self

    def devices(self, kfd: bool = True, renders: tuple[int, ...] = (128,)):
        dev = self.root / "dev"
        (dev / "dri").mkdir(parents=True, exist_ok=True)
        if kfd:
            (dev / "kfd").touch()
        for minor in renders:
            (dev / f"dri/renderD{minor}").touch()
        return self

    def groups(self, text: str):
        (self.root / "etc").mkdir(parents=True, exist_ok=True)
        (self.root / "etc/group").write_text(textwrap.dedent(text))
        return self

    def meminfo(self, total_kib: int = 32 * 1024 * 1024):
        (self.root / "proc").mkdir(parents=True, exist_ok=True)
        (self.root / "proc/meminfo").write_text(f"MemTotal:       {total_kib} kB\nMemFree:  1024 kB\n")
        return self

    def rocm_version(self, version: str = "6.4.3"):
        (self.root / "opt/rocm/.info").mkdir(parents=True, exist_ok=True)
        (self.root / "opt/rocm/.info/version").write_text(version + "\n")
        return self


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path / "root")


class _Ollama(BaseHTTPRequestHandler):
    """Answers GET /api/tags like Ollama (protocols.md); ``server.mode`` switches to a stranger."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        mode = self.server.mode
        if mode == "html":
            body, kind, status = b"<html>not ollama</html>", "text/html", 200
        elif self.path != "/api/tags":
            body, kind, status = b'{"error": "not found"}', "application/json", 404
        else:
            models = [{"name": n, "model": n, "modified_at": "2025-01-01T00:00:00Z", "size": 2019393189,
                       "digest": "a80c4f17acd5", "details": {"family": "llama", "parameter_size": "3.2B"}}
                      for n in self.server.models]
            body, kind, status = json.dumps({"models": models}).encode(), "application/json", 200
        self.server.requests.append(self.path)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def ollama_server():
    """A real HTTP server on 127.0.0.1 answering /api/tags; set ``.models`` / ``.mode`` on it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ollama)
    server.models = ["llama3.2:latest"]
    server.mode = "ollama"
    server.requests = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port taken, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
