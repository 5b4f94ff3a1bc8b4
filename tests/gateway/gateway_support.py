"""Helpers of the gateway tests (a module of its own: `conftest` names clash across test folders)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOW = str(Path(sys.executable).with_name("flow"))

SLOW = {
    "name": "slow", "description": "Sleeps, then echoes a value (a stand-in for a long generation).",
    "endpoint": "/test/slow",
    "params": {"seconds": {"description": "how long", "default": 0.05, "bind": [{"node": "s", "input": "seconds"}]},
               "value": {"description": "echoed", "default": "done", "bind": [{"node": "s", "input": "value"}]}},
    "nodes": {"s": {"type": "zoo.sleep", "inputs": {"seconds": 0.05}}},
    "outputs": {"value": {"from": "s", "output": "value"}},
}
FAILING = {
    "name": "failing", "endpoint": "/test/fail", "description": "Always fails.",
    "nodes": {"f": {"type": "zoo.fail", "inputs": {"message": "it broke"}}},
    "outputs": {"never": {"from": "f", "output": "never"}},
}


def run(coro):
    """Run a test coroutine."""
    return asyncio.run(coro)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A real `flow serve` process on 127.0.0.1."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "FLOW_PORT": str(self.port), "FLOW_OUTPUT_DIR": str(tmp / "out"),
                    "FLOW_JOBS_DB": str(tmp / "jobs.sqlite3"), "FLOW_MODELS_DIR": str(tmp / "models"), **env}
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> float:
        """Start and wait until /health answers; returns the seconds that took."""
        started = time.perf_counter()
        self.log = open(self.tmp / f"serve-{self.port}.log", "ab")
        self.proc = subprocess.Popen([FLOW, "serve"], env=self.env, cwd=self.tmp, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flow serve exited: {(self.tmp / f'serve-{self.port}.log').read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("flow serve did not answer /health")

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def call(self, method: str, path: str, body=None, token: str = ""):
        """(status, JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
