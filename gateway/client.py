"""A small synchronous client of the gateway for the CLI (`--server URL`): submit, follow, fetch."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Callable, Iterator

from engine.errors import FlowError, InvalidWorkflow, Problem


class RemoteError(FlowError):
    """The gateway answered with an error."""

    def __init__(self, status: int, body: dict):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.kind = error.get("type", "error")
        self.body = body
        super().__init__(f"{error.get('message') or body} (HTTP {status})")


class Client:
    """Talks to one gateway; ``token`` is sent as a bearer token."""

    def __init__(self, base_url: str, token: str = "", timeout: float = 30.0):
        self.base = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None, timeout: float | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"{}")
            except json.JSONDecodeError:
                payload = {"error": {"message": exc.reason}}
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            if exc.code == 400 and error.get("problems"):
                raise InvalidWorkflow([Problem(**p) for p in error["problems"]], count=error.get("count")) from None
            raise RemoteError(exc.code, payload) from None
        except urllib.error.URLError as exc:
            raise FlowError(f"cannot reach the gateway at {self.base}: {exc.reason}") from None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict]:
        """One JSON request; returns (status, body)."""
        with self._request(method, path, body) as response:
            return response.status, json.loads(response.read() or b"{}")

    def events(self, job_id: str) -> Iterator[tuple[str, dict]]:
        """The job's Server-Sent Events until its terminal event."""
        with self._request("GET", f"/jobs/{job_id}/events", timeout=24 * 3600) as response:
            kind, data = None, []
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and kind is not None:
                    yield kind, json.loads("".join(data))
                    kind, data = None, []

    def run(self, path: str, body: dict, on_event: Callable[[str, dict], None] | None = None) -> dict:
        """Submit (an endpoint path or /jobs), follow the events, and return the finished job."""
        status, accepted = self.call("POST", f"{path}?wait=false", body)
        job_id = accepted["id"]
        for kind, data in self.events(job_id):
            if on_event is not None:
                on_event(kind, data)
            if kind in ("job.finished", "job.failed", "job.cancelled"):
                break
        status, job = self.call("GET", f"/jobs/{job_id}")
        return job

    def download(self, url: str, target) -> None:
        """Fetch ``url`` (a /files/... path) into ``target``."""
        with self._request("GET", url) as response, open(target, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
