"""`flow worker`: an engine and its model manager as a Celery worker (see engine/broker.py).

One job at a time (Celery's ``solo`` pool, prefetch 1); one worker per GPU. The job runs in a
:class:`~engine.jobs.JobQueue` of this process over an in-memory store, so that a job's run,
result, errors, time limit and cancellation are exactly the gateway's in-process ones; the
worker only claims the job, relays the queue's events to the gateway and publishes the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from . import broker
from .jobstore import JobStore

log = logging.getLogger("flow.worker")

#: seconds a worker's presence (``flow:worker:<name>``: queues, models, free memory) lasts unless renewed
PRESENCE_TTL_S = 10


class Worker:
    """The runtime of one ``flow worker`` process."""

    def __init__(self, settings, engine, present: Callable, *, name: str | None = None,
                 queues: list[str] | None = None):
        import redis

        self.settings = settings
        self.engine = engine
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.queues = list(queues or ["gpu", "cpu"])
        self.redis = redis.Redis.from_url(settings.broker_url)
        self.app = broker.celery_app(settings.broker_url, settings.job_time_limit)
        self.present = present
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="flow-worker-loop", daemon=True)
        self._thread.start()
        self.queue = self._call(self._make_queue())
        self._local: dict[str, str] = {}  # gateway job id -> this worker's job id (while it runs)
        self._stop = threading.Event()
        self.jobs_run = 0
        self.models_loaded: list[str] = []
        self._announced: set[str] = set()  # models this worker last said it holds
        self._aliases: dict[str, str] = {}  # a model as jobs name it -> as the model manager does
        self.memory: dict | None = None  # the model manager's report once a model loaded (device, budget, used, free)
        threading.Thread(target=self._listen_cancels, name="flow-worker-cancels", daemon=True).start()
        threading.Thread(target=self._presence, name="flow-worker-presence", daemon=True).start()

        def run_job(payload: dict) -> str:
            return self._task(payload)

        self.app.task(name=broker.TASK, acks_late=True, reject_on_worker_lost=True)(run_job)

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _make_queue(self):
        from .jobs import JobQueue

        queue = JobQueue(self.engine, JobStore(":memory:"), present=self.present, workers=1,
                         max_queued=1_000_000, requeue_limit=0,
                         time_limit=self.settings.job_time_limit or None, log=log)
        await queue.start()
        return queue

    # -- running a job --------------------------------------------------------------------------

    def _task(self, payload: dict) -> str:
        """The Celery task: claim the job, run it, publish its end; drop a job that ended or runs elsewhere."""
        job_id = payload["id"]
        r = self.redis
        if r.exists(broker.end_key(job_id)):
            return "ended before"
        if not r.set(broker.claim_key(job_id), self.name, nx=True, ex=int(broker.CLAIM_TTL_S)):
            return "running on another worker"
        try:
            attempt = r.incr(broker.tries_key(job_id))
            r.expire(broker.tries_key(job_id), broker.END_TTL_S)
            reason = r.get(broker.cancelled_key(job_id))
            if reason is not None:
                self._publish_end(job_id, _end("cancelled", {"type": "cancelled", "message": reason.decode()},
                                               attempt))
                return "cancelled before it started"
            if attempt > self.settings.requeue_limit + 1:
                self._publish_end(job_id, _end("interrupted", {
                    "type": "interrupted",
                    "message": f"the workers running this job stopped ({attempt - 1} attempts); submit it again"},
                    attempt - 1))
                return "interrupted"
            self._publish(job_id, {"started": {"worker": self.name, "attempt": attempt, "at": time.time()}})
            renewing = threading.Event()
            threading.Thread(target=self._renew, args=(job_id, renewing), daemon=True).start()
            try:
                end = self._call(self._run(job_id, payload, attempt))
            except Exception:  # never leave the gateway waiting: the job fails, the log has why
                log.exception("job %s: the worker failed to run it", job_id)
                end = _end("failed", {"type": "internal", "message": f"internal error on worker {self.name}; "
                                      f"its log has the details (job {job_id})"}, attempt)
            finally:
                renewing.set()
            self._publish_end(job_id, end)
            self.jobs_run += 1
            self._announce()  # the models it holds now, at once: the gateway routes the next job by them
            return end["state"]
        finally:
            r.delete(broker.claim_key(job_id))

    async def _run(self, job_id: str, payload: dict, attempt: int) -> dict:
        from .errors import FlowError

        queue = self.queue
        subscription = queue.subscribe(None)
        try:
            try:
                record = await queue.accept(payload["workflow"], payload.get("params") or {},
                                            name=payload.get("name"), outputs=payload.get("outputs"))
            except FlowError as exc:  # the gateway validated it: a worker with other nodes or models
                return _end("failed", {**exc.to_json(), "type": exc.kind}, attempt)
            self._local[job_id] = record.id
            relay = asyncio.create_task(self._relay(job_id, record.id, subscription))
            ended = await queue.wait(record.id, 10 ** 9)
            relay.cancel()
            for event in subscription.pending(100_000):  # what the relay had not sent yet, before the end
                if event.job_id == record.id and not event.terminal:
                    await asyncio.to_thread(self._publish, job_id, {"event": event.to_json()})
            self._forget(record.id)
            terminal = _terminal_of(ended)
            return {**_end(ended.state, ended.error, attempt), "result": ended.result,
                    "started": ended.started, "ended": ended.ended, "terminal": terminal}
        finally:
            self._local.pop(job_id, None)
            queue.unsubscribe(subscription)
            self._note_alias(broker.model_of(payload.get("workflow"), payload.get("params")))
            self._note_models()

    def _forget(self, local_id: str) -> None:
        """Drop an ended job from this worker's in-memory store (the gateway's store keeps it)."""
        with self.queue.store._db() as db:
            db.execute("DELETE FROM jobs WHERE id=?", (local_id,))
            db.execute("DELETE FROM documents")  # one job at a time: none is needed any more
        self.queue.store._known.clear()

    async def _relay(self, job_id: str, local_id: str, subscription) -> None:
        while True:
            event = await subscription.next()
            if event is None:
                return
            if event.job_id != local_id or event.terminal or event.kind == "job.queued":
                continue
            await asyncio.to_thread(self._publish, job_id, {"event": event.to_json()})

    def _publish(self, job_id: str, body: dict) -> None:
        self.redis.publish(broker.EVENTS, json.dumps({"job": job_id, **body}, default=str))

    def _publish_end(self, job_id: str, end: dict) -> None:
        text = json.dumps({"job": job_id, "end": end}, default=str)
        self.redis.set(broker.end_key(job_id), json.dumps(end, default=str), ex=broker.END_TTL_S)
        self.redis.publish(broker.EVENTS, text)

    def _renew(self, job_id: str, done: threading.Event) -> None:
        while not done.wait(broker.CLAIM_TTL_S / 3):
            self.redis.set(broker.claim_key(job_id), self.name, ex=int(broker.CLAIM_TTL_S))

    # -- cancels and presence -------------------------------------------------------------------

    def _listen_cancels(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(broker.CANCEL)
        while not self._stop.is_set():
            try:
                message = pubsub.get_message(timeout=0.5)
            except Exception:
                time.sleep(1)
                continue
            if not message or message.get("type") != "message":
                continue
            data = json.loads(message["data"])
            local = self._local.get(data.get("job"))
            if local is not None:
                self.loop.call_soon_threadsafe(self._cancel_local, local, data.get("reason") or "cancelled by request")

    def _cancel_local(self, local_id: str, reason: str) -> None:
        token = self.queue._tokens.get(local_id)
        if token is not None:
            token.cancel(reason)
            return
        try:  # not started yet in this worker's queue
            self.queue.cancel(local_id)
        except Exception as exc:  # ended meanwhile
            log.debug("cancel of %s: %s", local_id, exc)

    def _note_alias(self, raw: str | None) -> None:
        """Jobs name a model as they like (a local one by its folder name, the manager by its path): the
        gateway routes by the name a job uses, so a loaded model is announced under that name too."""
        models = getattr(self.engine, "models", None)
        if not raw or models is None or raw in self._aliases:
            return
        try:
            self._aliases[raw] = str(models.store.parse(raw))
        except Exception:  # not a model reference this worker knows: nothing to route by
            pass

    def _note_models(self) -> None:
        """What this worker's model manager holds now, and its memory (the gateway shows both per worker)."""
        models = getattr(self.engine, "models", None)
        try:
            loaded = [m.ref for m in models.loaded()] if models is not None else []
            report = models.report().to_json() if models is not None else None
        except Exception:
            loaded, report = [], None
        self.models_loaded = [m for m in loaded if m]
        if report is not None:
            report["free"] = max(0, (report.get("budget") or 0) - (report.get("used") or 0))
        self.memory = report

    def _presence(self) -> None:
        while not self._stop.is_set():
            self._announce()
            self._stop.wait(PRESENCE_TTL_S / 3)

    def _announce(self) -> None:
        info = {"name": self.name, "queues": self.queues, "models": self.models_loaded, "memory": self.memory,
                "jobs_run": self.jobs_run, "busy": bool(self._local), "seen": time.time()}
        try:
            self.redis.set(f"flow:worker:{self.name}", json.dumps(info), ex=PRESENCE_TTL_S)
            held = set(self.models_loaded)
            held |= {raw for raw, canonical in self._aliases.items() if canonical in held}
            for model in held:
                self.redis.set(f"flow:model:{model}", self.name, ex=PRESENCE_TTL_S)
            for model in self._announced.difference(held):  # evicted: no longer sent here
                key = f"flow:model:{model}"
                if self.redis.get(key) == self.name.encode():
                    self.redis.delete(key)
            self._announced = held
        except Exception as exc:  # the broker is away: the next beat tries again
            log.debug("worker presence not written: %s", exc)

    # -- the Celery worker ----------------------------------------------------------------------

    def run(self) -> None:
        """Take jobs until stopped (SIGTERM or Ctrl-C: the running job ends first)."""
        queues = [*self.queues, "worker." + self.name]
        argv = ["worker", "--pool=solo", "--concurrency=1", "--prefetch-multiplier=1", "-Q", ",".join(queues),
                "-n", f"{self.name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", self.settings.log_level.upper() or "INFO"]
        try:
            self.app.worker_main(argv)
        finally:
            self._stop.set()
            try:
                self.redis.delete(f"flow:worker:{self.name}")
            except Exception:
                pass


def _end(state: str, error: dict | None, attempt: int) -> dict[str, Any]:
    return {"state": state, "error": error, "result": None, "attempts": attempt, "started": None,
            "ended": time.time()}


def _terminal_of(record) -> dict:
    from .job_events import terminal_event

    return terminal_event(record).to_json()
