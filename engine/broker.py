"""Jobs on other machines: the gateway's side of worker mode (Celery with a Redis broker).

With ``FLOW_BROKER_URL=redis://HOST:6379/0`` the gateway stops running jobs itself: its
:class:`~engine.jobs.JobQueue` hands each accepted job (already stored: accepted before
acknowledged, as in-process) to :class:`Dispatcher`, which sends it to the broker and waits for its
end. A ``flow worker`` (engine/worker.py) runs it and talks back through Redis:

- ``flow:events`` (pub/sub): every engine event of the job, relayed to SSE, WebSocket and
  ``GET /jobs/{id}`` as if the job ran here; then its end (state, result, error, times).
- ``flow:end:<job>``: the end, kept a day: a gateway that was down when a job ended reads it there.
- ``flow:claim:<job>``: held (a few seconds, renewed) by the worker running the job. A claim
  that lapses before the end means the worker died (SIGKILL, OOM, power): the gateway sends the
  job again, up to ``FLOW_REQUEUE_LIMIT`` times, then ends it ``interrupted`` with the reason.
  Celery's ``acks_late`` + ``reject_on_worker_lost`` also give the unacknowledged message back to
  the broker; a worker receiving a job that ended, or that a live worker holds, drops it: nothing
  runs twice.
- ``flow:cancel`` (pub/sub) and ``flow:cancelled:<job>``: a cancel reaches the worker running the
  job (its engine's cancel token); a job not started yet is ended here and skipped by the worker.

Outputs: workers write to the same output folder as the gateway (``FLOW_OUTPUT_DIR`` on a shared
volume, as compose.yaml mounts it), so ``/files/...`` serves what a worker saved without a copy.
Jobs go to the queue of the capability they need (:func:`queue_for`): ``gpu`` for a workflow with
a model-backed node, ``cpu`` otherwise; a worker takes the queues its ``--queues`` names.

Celery and redis-py are imported when a dispatcher or worker starts, never at module import.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

from . import events as ev
from .cancel import CancelToken
from .jobstore import CANCELLED, INTERRUPTED, QUEUED, RUNNING, JobRecord

log = logging.getLogger("flow.broker")

EVENTS = "flow:events"
CANCEL = "flow:cancel"
#: seconds a worker's claim on a job lasts unless renewed (it renews it every CLAIM_TTL_S / 3)
CLAIM_TTL_S = 3.0
#: seconds a job's end stays in Redis for a gateway that was down when it ended
END_TTL_S = 86400
TASK = "flow.run_job"
#: node types that run a local model (the GPU); any other job can go to a CPU worker
GPU_TYPES = frozenset({
    "text.generate", "text.chat", "text.edit", "text.evaluate", "text.embed", "text.converse",
    "text.describe_image", "text.describe_product", "image.generate", "image.edit", "image.upscale",
    "music.generate", "video.generate", "model.pull",
})
#: of those, the types whose empty ``model`` means no model at all (Lanczos), not a local default
NO_MODEL_WHEN_EMPTY = frozenset({"image.upscale"})


def claim_key(job_id: str) -> str:
    return f"flow:claim:{job_id}"


def end_key(job_id: str) -> str:
    return f"flow:end:{job_id}"


def cancelled_key(job_id: str) -> str:
    return f"flow:cancelled:{job_id}"


def tries_key(job_id: str) -> str:
    return f"flow:tries:{job_id}"


def visibility_timeout(job_time_limit: float) -> float:
    """The broker's visibility timeout: above the longest job, so that a running job is never delivered
    twice (celery/celery#5935); a day when jobs have no time limit."""
    return (job_time_limit if job_time_limit > 0 else 86400.0) * 1.25 + 60


def celery_app(broker_url: str, job_time_limit: float):
    """The Celery application both sides share: its settings are the delivery guarantees."""
    from celery import Celery

    app = Celery("flow", broker=broker_url, backend=None, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # acknowledged once the job ended: a worker killed mid-job does not lose it
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # one job at a time per worker, none held back from the others
        task_default_queue="gpu",
        broker_transport_options={"visibility_timeout": visibility_timeout(job_time_limit)},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def model_inputs(doc: dict | None, params: dict | None = None) -> list[tuple[str, str | None]]:
    """(node type, model) of each node, its ``model`` input as this run fills it: a literal, or a param bound
    to it (the value given, else the param's default); None when neither says (the node's default)."""
    doc = doc if isinstance(doc, dict) else {}
    params = params if isinstance(params, dict) else {}
    nodes = doc.get("nodes") if isinstance(doc.get("nodes"), dict) else {}
    filled: dict[str, object] = {}
    for name, decl in (doc.get("params") or {}).items():
        if not isinstance(decl, dict):
            continue
        value = params.get(name, decl.get("default"))
        for bind in decl.get("bind") or ():
            if isinstance(bind, dict) and bind.get("input") == "model" and (name in params or "default" in decl):
                filled[bind.get("node")] = value
    found = []
    for nid, node in nodes.items():
        if not isinstance(node, dict):
            continue
        model = filled[nid] if nid in filled else (node.get("inputs") or {}).get("model")
        found.append((node.get("type"), model if isinstance(model, str) and model else None))
    return found


def queue_for(doc: dict | None, params: dict | None = None) -> str:
    """The capability a workflow needs: ``gpu`` when a node runs a local model, else ``cpu`` (web
    extraction, saving, templates, text through an OpenAI-compatible cloud: ``openai:`` models, AI Horde)."""
    for kind, model in model_inputs(doc, params):
        if kind in NO_MODEL_WHEN_EMPTY and not model:
            continue
        if kind in GPU_TYPES and not (model or "").startswith(("openai:", "horde:")):
            return "gpu"
    return "cpu"


def model_of(doc: dict | None, params: dict | None = None) -> str | None:
    """The first model a run names (a literal ``model`` input, or one a param fills), for model affinity."""
    return next((model for _, model in model_inputs(doc, params) if model), None)


def event_from_json(data: dict, job_id: str) -> ev.Event | None:
    """An engine event rebuilt from what a worker published (its own job id replaced by ours)."""
    cls = _EVENT_KINDS.get(data.get("event"))
    if cls is None:
        return None
    fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "job_id"}
    return cls(job_id, **fields)


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


_EVENT_KINDS = {cls.kind: cls for cls in _subclasses(ev.Event)}


class _Waiting:
    """A job this gateway sent to the broker and waits for."""

    __slots__ = ("record", "queue", "ended", "started", "sent_to")

    def __init__(self, record: JobRecord, queue, ended: asyncio.Future):
        self.record, self.queue, self.ended, self.started = record, queue, ended, False
        self.sent_to = ""  # the queue it was sent to last

    def listener(self, event: ev.Event) -> None:
        self.queue._track(event)
        self.queue._publish(event)


class Dispatcher:
    """Sends a gateway's jobs to the broker and relays their events and ends back (see the module's doc)."""

    def __init__(self, broker_url: str, *, job_time_limit: float = 0.0, requeue_limit: int = 1,
                 affinity: bool = True):
        import redis

        self.url = broker_url
        self.requeue_limit = requeue_limit
        self.affinity = affinity
        self.app = celery_app(broker_url, job_time_limit)
        self.redis = redis.Redis.from_url(broker_url)
        self._waiting: dict[str, _Waiting] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pubsub = None
        self._stopping = threading.Event()
        self.sent = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start relaying (call on the gateway's event loop, before the queue starts)."""
        self._loop = asyncio.get_running_loop()
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(EVENTS)
        self._thread = threading.Thread(target=self._listen, name="flow-broker-events", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pubsub is not None:
            self._pubsub.close()
        self.redis.close()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.5)
            except Exception as exc:  # the broker went away: keep trying, jobs wait meanwhile
                log.warning("broker: lost the event stream (%s); reconnecting", exc)
                time.sleep(1)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                data = json.loads(message["data"])
            except ValueError:
                continue
            if data.get("job") in self._waiting:  # a stale read: checked again on the loop
                self._loop.call_soon_threadsafe(self._on_message, data)

    # -- the loop's side ----------------------------------------------------------------------

    def _on_message(self, data: dict) -> None:
        waiting = self._waiting.get(data.get("job"))
        if waiting is None:
            return
        if "end" in data:
            if not waiting.ended.done():
                waiting.ended.set_result(data["end"])
            return
        if "started" in data:
            self._started(waiting, data["started"])
            return
        event = event_from_json(data.get("event") or {}, waiting.record.id)
        if event is not None and not event.terminal:
            waiting.listener(event)

    def _started(self, waiting: _Waiting, info: dict) -> None:
        record = waiting.record
        waiting.started = True
        record.state, record.started = RUNNING, info.get("at") or time.time()
        record.attempts = max(record.attempts, int(info.get("attempt") or 1))
        live = waiting.queue._live.get(record.id)
        if live is not None:
            live["worker"] = info.get("worker")  # GET /jobs/{id} shows where it runs
        waiting.queue.store.save_later(record)

    async def run(self, queue, job_id: str) -> None:
        """The broker's :meth:`JobQueue._run`: send the job, relay its events, store and publish its end."""
        token = queue._tokens[job_id] = CancelToken()  # before any await: cancel() may come at once
        record = queue._records.get(job_id) or await asyncio.to_thread(queue._read, job_id)
        if record is not None and record.workflow is None:
            record = await asyncio.to_thread(queue._read, job_id)
        if record is None or record.state not in (QUEUED, RUNNING) or token.cancelled:
            queue._bound.pop(job_id, None)
            queue._tokens.pop(job_id, None)
            if record is not None and token.cancelled and not record.terminal:
                self._apply(record, self._ended(record, CANCELLED, "cancelled before it started"))
                await queue.store.save_async(record)
                queue._end(record, _terminal(record))
            return
        queue._records[job_id] = record
        queue._workflows.pop(job_id, None)
        queue._bound.pop(job_id, None)
        queue._live[job_id] = {}
        loop = asyncio.get_running_loop()
        waiting = _Waiting(record, queue, loop.create_future())
        self._waiting[job_id] = waiting
        token.on_cancel(lambda: loop.call_soon_threadsafe(self._cancel, waiting, token.reason))
        try:
            end = await self._until_end(queue, waiting, token)
        except asyncio.CancelledError:  # the gateway stops: the job goes on on its worker, read again on restart
            raise
        finally:
            self._waiting.pop(job_id, None)
            queue._tokens.pop(job_id, None)
            queue._live.pop(job_id, None)
        if end.get("by") == "gateway":  # ended here (cancelled, interrupted): a late delivery must not run it
            try:
                await asyncio.to_thread(self.redis.set, end_key(job_id), json.dumps(end, default=str), ex=END_TTL_S)
            except Exception as exc:  # the broker is away; the workers' try count still stops it
                log.warning("job %s: could not record its end in the broker: %s", job_id, exc)
        self._apply(record, end)
        terminal = event_from_json(end.get("terminal") or {}, job_id) or _terminal(record)
        await queue.store.save_async(record)
        queue._owned.discard(job_id)
        queue._end(record, terminal)

    async def _until_end(self, queue, waiting: _Waiting, token: CancelToken) -> dict:
        record = waiting.record
        stored = await asyncio.to_thread(self.redis.get, end_key(record.id))
        if stored is not None:  # it ended while this gateway was away
            return json.loads(stored)
        await self._send(waiting)
        cancel_deadline = None
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(waiting.ended), 1.0)
            except asyncio.TimeoutError:
                pass
            if waiting.ended.done():
                continue
            if token.cancelled and token.reason != "the server is shutting down":
                cancel_deadline = cancel_deadline or time.monotonic() + 10
                if not waiting.started or time.monotonic() > cancel_deadline:
                    return self._ended(record, CANCELLED, token.reason)
            if waiting.started and record.state == RUNNING:
                lost = await asyncio.to_thread(self._lost, record.id)
                if lost:
                    if record.attempts > self.requeue_limit:
                        return self._ended(record, INTERRUPTED,
                                           f"the worker running this job stopped ({record.attempts} attempts); "
                                           "submit it again", kind="interrupted")
                    log.warning("job %s: its worker stopped; sending it again", record.id)
                    waiting.started = False
                    record.state = QUEUED
                    await self._send(waiting)
            elif not waiting.started and waiting.sent_to.startswith("worker."):
                # sent to the worker holding its model: if that worker went away, any worker may take it
                holder = waiting.sent_to[len("worker."):]
                if not await asyncio.to_thread(self.redis.exists, f"flow:worker:{holder}"):
                    await self._send(waiting, affinity=False)

    def _lost(self, job_id: str) -> bool:
        """True when the job has neither a live claim nor an end: its worker died."""
        return not self.redis.exists(claim_key(job_id)) and not self.redis.exists(end_key(job_id))

    async def _send(self, waiting: _Waiting, affinity: bool = True) -> None:
        record = waiting.record
        queue = queue_for(record.workflow, record.params)
        payload = {"id": record.id, "name": record.name, "workflow": record.workflow, "params": record.params,
                   "outputs": record.outputs}
        if self.affinity and affinity:
            model = model_of(record.workflow, record.params)
            if model is not None:
                holder = await asyncio.to_thread(self.redis.get, f"flow:model:{model}")
                if holder:  # a worker that holds this model: its own queue
                    queue = "worker." + holder.decode()
        task_id = f"{record.id}.{record.attempts}.{time.monotonic_ns()}"
        await asyncio.to_thread(self.app.send_task, TASK, args=[payload], task_id=task_id, queue=queue)
        waiting.sent_to = queue
        self.sent += 1

    def _cancel(self, waiting: _Waiting, reason: str) -> None:
        if reason == "the server is shutting down":
            return  # not the job's cancel: it goes on on its worker
        job_id = waiting.record.id

        def tell() -> None:
            self.redis.set(cancelled_key(job_id), reason, ex=END_TTL_S)
            self.redis.publish(CANCEL, json.dumps({"job": job_id, "reason": reason}))

        self._loop.run_in_executor(None, tell)
        if not waiting.started and not waiting.ended.done():
            waiting.ended.set_result(self._ended(waiting.record, CANCELLED, "cancelled before it started"))

    @staticmethod
    def _ended(record: JobRecord, state: str, message: str, kind: str = "cancelled") -> dict:
        return {"state": state, "error": {"type": kind, "message": message}, "result": None,
                "started": record.started, "ended": time.time(), "by": "gateway"}

    @staticmethod
    def _apply(record: JobRecord, end: dict) -> None:
        record.state = end["state"]
        record.result = end.get("result")
        record.error = end.get("error")
        record.started = end.get("started") or record.started
        record.ended = end.get("ended") or time.time()
        record.attempts = max(record.attempts, int(end.get("attempts") or 0))
        record.result_text = None
        record.extra = {}

    def health(self) -> dict:
        """The broker as ``/health`` shows it: reachable, and the workers that answer now."""
        try:
            return {"url": redact(self.url), "reachable": True, "workers": workers(self.redis),
                    "waiting": {name: self.redis.llen(name) for name in ("gpu", "cpu")}}
        except Exception as exc:
            return {"url": redact(self.url), "reachable": False, "error": type(exc).__name__, "workers": []}


def workers(client) -> list[dict]:
    """The workers whose presence is fresh: name, queues, models held, memory, jobs run, busy."""
    found = []
    for key in client.scan_iter("flow:worker:*", count=1000):
        raw = client.get(key)
        if raw:
            found.append(json.loads(raw))
    return sorted(found, key=lambda w: w.get("name", ""))


def redact(url: str) -> str:
    """A broker URL without its password."""
    from .pgstore import redact as without_password

    return without_password(url)


def _terminal(record: JobRecord) -> ev.Event:
    from .job_events import terminal_event

    return terminal_event(record)
