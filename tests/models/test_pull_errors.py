"""Failed pulls say what happened (refused, not found, offline, disk full) and leave no marker for nothing."""

from __future__ import annotations

import errno
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.errors import InvalidModelRef, PullFailed
from engine.models import hf
from engine.models.refs import ModelRef


class _Refusing(BaseHTTPRequestHandler):
    """A hub that answers 401 for repositories named `private`, 404 for everything else."""

    def do_GET(self):
        self.send_response(401 if "private" in self.path else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "no"}')

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def hub_online(monkeypatch):
    """Let the hub client make requests (tests/conftest.py sets HF_HUB_OFFLINE=1); only to 127.0.0.1 or .invalid."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(autouse=True)
def no_dns(monkeypatch):
    """*.invalid fails to resolve here, as the resolver would say, without a query leaving the machine."""
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def refusing_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def pull(cache: Path, name: str, endpoint: str):
    return hf.pull(cache, ModelRef("hf", name, None), endpoint=endpoint, timeouts=(5.0, 5.0))


def no_markers(cache: Path) -> bool:
    return not any((cache / ".flow-incomplete").glob("*"))


@pytest.mark.parametrize("name, says", [
    ("acme/private", r"refused access \(401\).*HF_TOKEN"),
    ("acme/missing", r"not found at .* \(404\); check the name"),
])
def test_pull_hf_refused_or_missing_says_so_and_leaves_no_marker(tmp_path, refusing_hub, name, says):
    with pytest.raises(InvalidModelRef, match=says) as caught:
        pull(tmp_path, name, refusing_hub)
    assert "resume" not in str(caught.value)
    assert no_markers(tmp_path)


def test_pull_hf_unresolvable_host_says_offline_not_resume(tmp_path):
    with pytest.raises(PullFailed, match=r"cannot resolve flow-nowhere\.invalid: .*offline") as caught:
        pull(tmp_path, "acme/tiny", "http://flow-nowhere.invalid")
    assert "resume" not in str(caught.value)
    assert no_markers(tmp_path)


def test_pull_hf_failure_keeps_the_marker_of_an_earlier_interrupted_pull(tmp_path):
    ref = ModelRef("hf", "acme/tiny", None)
    marker = hf._marker(tmp_path, ref)
    marker.parent.mkdir(parents=True)
    marker.touch()
    with pytest.raises(PullFailed):
        pull(tmp_path, "acme/tiny", "http://flow-nowhere.invalid")
    assert marker.exists()


def test_pull_hf_disk_full_names_the_disk():
    failed = hf._failure("hf:acme/tiny", hf.DEFAULT_ENDPOINT, Path("/models/hf"),
                         OSError(errno.ENOSPC, "No space left on device"), fetching=True)
    assert isinstance(failed, PullFailed)
    assert "the disk holding /models/hf is full; free some space" in str(failed)
