"""A real `flow serve` for the OpenAI- and Ollama-compatible client tests: tiny chat and vision models in a
models folder, a stand-in Ollama server (tests/text/llm_fakes.py) and a bearer token."""

from __future__ import annotations

import base64
import io
import sys

from gateway_support import ROOT, Served

sys.path.insert(0, str(ROOT / "tests" / "text"))

TOKEN = "compat-token"
#: a non-loopback OpenAI-compatible server (TEST-NET-1: never reached; strict privacy refuses it first)
REMOTE = "http://192.0.2.1:9/v1"


def start_compat_server(tmp_path_factory, name: str):
    """(server, fake Ollama): `llm` and `tiny-vlm` as local folders, `tiny:latest` on the fake Ollama."""
    from llm_fakes import OLLAMA_NAME, FakeOllama
    from llm_tiny import TinyGenerator, build_tiny_llm, build_tiny_vlm

    root = tmp_path_factory.mktemp(f"{name}-models")
    build_tiny_llm(root / "local" / "llm")
    build_tiny_vlm(root / "local" / "tiny-vlm")
    ollama = FakeOllama(TinyGenerator(root / "local" / "llm")).start()
    ollama.add(OLLAMA_NAME)
    ollama.pullable.add("pulled:latest")
    server = Served(tmp_path_factory.mktemp(name), {
        "FLOW_MODELS_DIR": str(root), "FLOW_PROBE_DEVICE": "false", "HF_HUB_OFFLINE": "1",
        "FLOW_API_TOKEN": TOKEN, "FLOW_OLLAMA_URL": ollama.url, "FLOW_OPENAI_BASE_URL": REMOTE,
        "FLOW_PRIVACY": "flexible", "FLOW_TEXT_MODEL": "llm", "FLOW_TEXT_FALLBACK_MODEL": "",
        "FLOW_PULL_ON_DEMAND": "false", "OMP_NUM_THREADS": "1", "FLOW_FETCH_ALLOW_PRIVATE": "true"})
    server.start(timeout=60)
    return server, ollama


def png_b64(size: int = 32, colour=(200, 30, 40)) -> str:
    """A solid-colour PNG as base64."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class ImageHost:
    """A real HTTP server on 127.0.0.1 serving one PNG at /picture.png (for http(s) image URLs)."""

    def __init__(self, png: bytes):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as most image hosts answer

            def log_message(self, *args):
                pass

            def do_GET(self):
                found = self.path == "/picture.png"
                body = png if found else b"not found"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "image/png" if found else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/picture.png"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
