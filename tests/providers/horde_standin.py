"""A faithful local stand-in of the AI Horde v2 image API (aiohttp, 127.0.0.1), for the provider tests.

It answers what the real API answers (https://aihorde.net/api/, v2):

- ``POST /api/v2/generate/async`` -> 202 ``{id, kudos}``; 400 on a bad body, 401 without an
  ``apikey``, 403 ``KudosUpfront`` / 429 when told to;
- ``GET /api/v2/generate/check/{id}`` -> ``{finished, processing, restarted, waiting, done, faulted,
  wait_time, queue_position, kudos, is_possible}``; its rate limit (10 a second) answers 429;
- ``GET /api/v2/generate/status/{id}`` -> the same plus ``generations[{worker_id, worker_name,
  model, state, img, seed, id, censored}]``; 10 a minute, else 429; ``img`` is a URL on this
  server (R2-style, ``r2: true``) or base64 WebP;
- ``DELETE /api/v2/generate/status/{id}`` cancels (recorded in :attr:`HordeStandin.deleted`);
- ``GET /r2/{id}/{i}.webp``: the image bytes (``image/webp``), as R2 serves them.

A job waits ``queue_s`` seconds in the queue (its position falls from ``queue`` to 1), then
processes for ``process_s`` seconds; ``fault`` / ``impossible`` make every job fault / impossible.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import threading
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict


@dataclass
class Job:
    id: str
    body: dict
    created: float
    deleted: bool = False
    status_calls: int = 0


@dataclass
class HordeStandin:
    queue: int = 3
    queue_s: float = 0.3
    process_s: float = 0.2
    fault: bool = False
    impossible: bool = False
    async_status: int = 0  # 429 or 403: every submission answered so
    check_429s: int = 0  # the first N checks answered 429
    r2: bool = True  # False: base64 WebP even when r2 is asked for
    requests: list = field(default_factory=list)  # (method, path, headers) of every request
    jobs: dict = field(default_factory=dict)
    deleted: list = field(default_factory=list)
    check_times: list = field(default_factory=list)
    status_times: list = field(default_factory=list)

    # -- the server ------------------------------------------------------------------------------

    def start(self) -> "HordeStandin":
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve():
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_post("/api/v2/generate/async", self._async)
            app.router.add_get("/api/v2/generate/check/{id}", self._check)
            app.router.add_get("/api/v2/generate/status/{id}", self._status)
            app.router.add_delete("/api/v2/generate/status/{id}", self._delete)
            app.router.add_get("/r2/{id}/{i}.webp", self._r2)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert ready.wait(10)
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = self.root + "/api/v2"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p, _h in self.requests if method is None or m == method]

    # -- the API -----------------------------------------------------------------------------------

    def _note(self, request: web.Request) -> None:
        self.requests.append((request.method, request.path, CIMultiDict(request.headers)))

    async def _async(self, request: web.Request) -> web.Response:
        self._note(request)
        if not request.headers.get("apikey"):
            return web.json_response({"message": "No API key provided"}, status=401)
        if self.async_status == 429:
            return web.json_response({"message": "You have exceeded your rate limit"}, status=429)
        if self.async_status == 403:
            return web.json_response({"message": "Due to heavy demand, for requests over 576x576 or over 50 steps, "
                                                 "the client needs to already have the required kudos.",
                                      "rc": "KudosUpfront"}, status=403)
        body = await request.json()
        params = body.get("params") or {}
        errors = {}
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            errors["prompt"] = "required"
        for key in ("width", "height"):
            if not isinstance(params.get(key, 512), int) or params.get(key, 512) % 64:
                errors[key] = "must be a multiple of 64"
        if not isinstance(params.get("seed", ""), str):
            errors["seed"] = "must be a string"
        if body.get("source_processing") not in (None, "img2img", "inpainting", "outpainting"):
            errors["source_processing"] = "unknown"
        if errors:
            return web.json_response({"message": "Input payload validation failed", "errors": errors}, status=400)
        job = Job(uuid.uuid4().hex, body, time.monotonic())
        self.jobs[job.id] = job
        return web.json_response({"id": job.id, "kudos": 10.0}, status=202)

    def _state(self, job: Job) -> dict:
        n = int((job.body.get("params") or {}).get("n", 1))
        elapsed = time.monotonic() - job.created
        queued = elapsed < self.queue_s
        processing = not queued and elapsed < self.queue_s + self.process_s
        done = not queued and not processing and not self.fault and not self.impossible and not job.deleted
        position = max(1, int(self.queue * (1 - elapsed / self.queue_s)) + 1) if queued else 0
        return {"finished": n if done else 0, "processing": n if processing else 0, "restarted": 0,
                "waiting": n if queued else 0, "done": done, "faulted": self.fault and not queued,
                "wait_time": max(0, round(self.queue_s + self.process_s - elapsed)), "queue_position": position,
                "kudos": 10.0, "is_possible": not self.impossible}

    async def _check(self, request: web.Request) -> web.Response:
        self._note(request)
        now = time.monotonic()
        self.check_times.append(now)
        if self.check_429s > 0:
            self.check_429s -= 1
            return web.json_response({"message": "Rate limit exceeded"}, status=429)
        if sum(1 for t in self.check_times if now - t < 1.0) > 10:
            return web.json_response({"message": "Rate limit exceeded: 10 per 1 second"}, status=429)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"message": "Request not found"}, status=404)
        return web.json_response(self._state(job))

    async def _status(self, request: web.Request) -> web.Response:
        self._note(request)
        now = time.monotonic()
        self.status_times.append(now)
        if sum(1 for t in self.status_times if now - t < 60.0) > 10:
            return web.json_response({"message": "Rate limit exceeded: 10 per 1 minute"}, status=429)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"message": "Request not found"}, status=404)
        state = self._state(job)
        generations = []
        if state["done"]:
            generations = [self._generation(job, i) for i in range(state["finished"])]
        return web.json_response({**state, "generations": generations, "shared": False})

    async def _delete(self, request: web.Request) -> web.Response:
        self._note(request)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"message": "Request not found"}, status=404)
        job.deleted = True
        self.deleted.append(job.id)
        return web.json_response({**self._state(job), "generations": []})

    async def _r2(self, request: web.Request) -> web.Response:
        self._note(request)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.Response(status=404)
        return web.Response(body=self.webp(job, int(request.match_info["i"])), content_type="image/webp")

    # -- the images --------------------------------------------------------------------------------

    @staticmethod
    def seed_of(job: Job, i: int) -> int:
        params = job.body.get("params") or {}
        seed = params.get("seed")
        base = int(seed) if seed not in (None, "") else int(job.id[:6], 16)
        return base + i * int(params.get("seed_variation", 0) or 0)

    def webp(self, job: Job, i: int) -> bytes:
        from PIL import Image

        params = job.body.get("params") or {}
        digest = hashlib.sha256(f"{job.body['prompt']}|{self.seed_of(job, i)}".encode()).digest()
        picture = Image.new("RGB", (params.get("width", 512), params.get("height", 512)), tuple(digest[:3]))
        buffer = io.BytesIO()
        picture.save(buffer, format="WEBP", quality=90)
        return buffer.getvalue()

    def _generation(self, job: Job, i: int) -> dict:
        if job.body.get("r2") and self.r2:
            img = f"{self.root}/r2/{job.id}/{i}.webp"
        else:
            img = base64.b64encode(self.webp(job, i)).decode()
        return {"worker_id": "w-0001", "worker_name": "standin-worker", "model": job.body["models"][0],
                "state": "ok", "img": img, "seed": str(self.seed_of(job, i)), "id": f"{job.id}-{i}",
                "censored": False, "gen_metadata": []}
