"""The job queue: accepted jobs are stored before they are acknowledged, run one after another
by background workers, survive a crash, and stream their events to any number of listeners."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import OrderedDict, deque
from typing import Any, Callable

from . import events as ev
from . import large
from .cancel import CancelToken
from .errors import (Cancelled, FlowError, InvalidInput, InvalidWorkflow, JobEnded, JobNotFound, NodeError, QueueFull,
                     redact_paths)
from .compile import canonical
from .executor import Engine, RunResult
from .plan import Plan, repeatable
from .job_events import Subscription, terminal_event
from .jobstore import CANCELLED, FAILED, FINISHED, INTERRUPTED, QUEUED, RUNNING, JobRecord, JobStore, result_text
from .large import LARGE_GRAPH, quiet_gc, settle_gc
from .workflow import Workflow

__all__ = ["JobQueue", "PresentResult", "Subscription"]

#: turns a finished run into what its job record stores (the gateway writes media files there)
PresentResult = Callable[[Workflow, RunResult, str], dict]


class JobQueue:
    """Runs submitted workflows as jobs; SQLite keeps the queue and the history."""

    def __init__(self, engine: Engine, store: JobStore, *, present: PresentResult, workers: int = 1,
                 max_queued: int = 100, requeue_limit: int = 1, time_limit: float | None = None,
                 log: logging.Logger | None = None, dispatch: Any = None):
        self.engine = engine
        #: runs jobs elsewhere (engine.broker.Dispatcher: Celery workers); None runs them here
        self.dispatch = dispatch
        self.store = store
        self.present = present
        self.max_queued = max_queued
        self.requeue_limit = requeue_limit
        self.time_limit = time_limit
        self.log = log or logging.getLogger("flow.jobs")
        self._workers_wanted = max(1, workers)
        self._queue: deque[str] = deque()
        self._workflows: dict[str, Workflow] = {}  # compiled-once workflows of jobs submitted here
        self._owned: set[str] = set()  # jobs whose Workflow this queue parsed (no one else holds it)
        self._records: dict[str, JobRecord] = {}  # jobs not ended yet, as stored (saves re-reading them)
        # small jobs that ended lately: the caller waiting for one reads it here, not from the store
        self._recent: OrderedDict[str, JobRecord] = OrderedDict()
        self._live: dict[str, dict[str, Any]] = {}  # running jobs: current node, progress
        self._tokens: dict[str, CancelToken] = {}
        self._storing: dict[str, asyncio.Future] = {}  # records being committed (accept(wait_stored=False))
        self._ending: set[asyncio.Future] = set()  # ended jobs whose end is being committed
        self._bound: dict[str, dict] = {}  # queued jobs: the inputs their params fill, bound on submission
        self._done: dict[str, list[asyncio.Future]] = {}  # callers waiting for a job to end
        self._subscribers: set[Subscription] = set()
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._adding = 0  # accepted jobs being stored: they count against max_queued
        self._running = 0  # jobs running now, in a worker or in the task that accepted them (at most workers)
        self.recovered = {"requeued": 0, "interrupted": 0}
        self._mean_s: float | None = None  # a job's running time, averaged over the recent ones (Retry-After)
        # identical requests of long-lived workflows (endpoints) that ended from the cache: what a repeat reuses
        self._repeats: OrderedDict[tuple, _Repeat] = OrderedDict()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover what a previous process left, then start the workers."""
        self._wake = asyncio.Event()
        now = time.time()
        for record in self.store.with_state(RUNNING):
            if record.attempts <= self.requeue_limit or self.dispatch is not None:  # a worker counts its tries
                record.state = QUEUED
                self.recovered["requeued"] += 1
            else:
                record.state, record.ended = INTERRUPTED, now
                record.error = {"type": "interrupted", "message": f"the server stopped while this job ran "
                                f"({record.attempts} attempts); submit it again"}
                self.recovered["interrupted"] += 1
            self.store.save(record)
        self._queue.extend(record.id for record in self.store.with_state(QUEUED))
        if self._queue:
            self._wake.set()
        self._tasks = [asyncio.create_task(self._worker(), name=f"flow-job-worker-{i}")
                       for i in range(self._workers_wanted)]

    async def stop(self) -> None:
        """Stop the workers; a job cut short goes back to the queue for the next start."""
        for job_id, token in list(self._tokens.items()):
            token.cancel("the server is shutting down")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._ending:  # ends being written: they finish, so that no ended job runs again
            await asyncio.gather(*self._ending, return_exceptions=True)

    # -- submitting and reading ----------------------------------------------------------------

    async def accept(self, workflow: Workflow | dict, params: dict[str, Any] | None = None, *,
                     name: str | None = None, outputs: list[str] | None = None, wait_stored: bool = True,
                     waiting: bool = False, repeats: bool = False) -> JobRecord:
        """:meth:`submit` for any size of graph: parsing, validating and storing run off the event loop.

        ``workflow`` may be a parsed :class:`Workflow` or a workflow document (then parsed here);
        ``name`` defaults to the workflow's. Raises InvalidWorkflow or QueueFull.

        With ``wait_stored=False`` a small job is queued while its record is being committed: the
        caller must ``await`` :meth:`stored` before it tells anyone the job exists (a caller that
        waits for the job's end may skip that: the end is committed after the record).

        A small job whose outputs are all cached ends here (no node runs). With ``waiting`` (the
        caller waits for the job's end anyway), a small job whose nodes all run inline also runs
        here, in the caller's task, when no job waits and a worker is free: it would have been
        the next to run, and skips the hop to the worker.

        ``repeats``: ``workflow`` is long-lived (an endpoint's), so an identical request (the same
        params and outputs) may come again. Once such a job ended from the cache, a repeat reuses
        its validation, plan and presented result while the cache still holds the very values it
        answered (:meth:`_repeated`).
        """
        params = params or {}
        self._check_room()
        self._adding += 1  # holds its place in the queue while it is validated and stored
        try:
            owned = not isinstance(workflow, Workflow)  # parsed here: no one else holds it
            large_ = _size(workflow) > LARGE_GRAPH
            repeats = repeats and not (owned or large_) and self.dispatch is None
            found = self._repeated(workflow, params, outputs) if repeats else None
            if found is not None:
                record = self._new_record(workflow, params, name, outputs)
                held = self._ended_from_repeat(record, workflow, *found)
                return await self._store_ended(record, workflow, held, wait_stored)
            workflow, bound = await _off_loop(large_, self._validated, workflow, params, outputs)
            record = self._new_record(workflow, params, name, outputs)
            plan = None
            if not large_ and self.dispatch is None:
                plan = self.engine.plan_now(workflow, params, outputs=outputs, bound=bound)
                if not plan.order:
                    held = self._ended_from_cache(record, workflow, plan)
                    if repeats:
                        self._remember(workflow, params, outputs, plan, bound, record)
                    return await self._store_ended(record, workflow, held, wait_stored)
            self._bound[record.id] = bound
            if (waiting and plan is not None and not self._queue and self._running < self._workers_wanted
                    and self.engine.inline_only(workflow, plan)):
                self._store_while_queued(record, workflow, owned, queue=False)
                await self._run_in_slot(record.id, plan)
                return record
            if not (wait_stored or large_):
                self._store_while_queued(record, workflow, owned)
                return record
            # Shielded: once stored, the job is enqueued even if the request that sent it went away.
            try:
                return await asyncio.shield(asyncio.ensure_future(self._store_and_enqueue(record, workflow, owned,
                                                                                          large_)))
            except Exception:
                self._bound.pop(record.id, None)  # not stored: never runs
                raise
        finally:
            self._adding -= 1

    def submit(self, workflow: Workflow, params: dict[str, Any] | None = None, *, name: str,
               outputs: list[str] | None = None) -> JobRecord:
        """Validate, store and enqueue a job, on the calling (event loop) thread: for small workflows.

        Raises InvalidWorkflow or QueueFull. A large graph takes seconds: use :meth:`accept`.
        """
        params = params or {}
        workflow, bound = self._validated(workflow, params, outputs)
        self._check_room()
        record = self._new_record(workflow, params, name, outputs)
        self._bound[record.id] = bound
        self.store.add(record)  # durable before anyone is told the job exists
        self._enqueue(record, workflow)
        return record

    def _validated(self, workflow: Workflow | dict, params: dict[str, Any],
                   outputs: list[str] | None) -> tuple[Workflow, dict]:
        """The parsed workflow and the inputs ``params`` fill (the run uses them: no second bind), once it
        compiled and ``params`` and ``outputs`` fit it; raises InvalidWorkflow."""
        with quiet_gc(_size(workflow)):
            if not isinstance(workflow, Workflow):
                workflow = Workflow.from_dict(workflow)
            compiled = self.engine.compile(workflow)
            bound = compiled.bind(params)
            compiled.wanted(outputs)
        return workflow, bound

    def _check_room(self) -> None:
        waiting = len(self._queue) + self._adding
        if waiting >= self.max_queued:
            raise QueueFull(self.max_queued, retry_after=self.retry_after(waiting))

    def retry_after(self, waiting: int) -> int:
        """Seconds until a place in the queue is likely free: the waiting jobs times the measured mean."""
        mean = self._mean_s if self._mean_s is not None else 1.0  # nothing measured yet: a guess
        return max(1, min(3600, math.ceil(mean * max(1, waiting - self.max_queued + 1) / self._workers_wanted)))

    @staticmethod
    def _new_record(workflow: Workflow, params: dict[str, Any], name: str | None,
                    outputs: list[str] | None) -> JobRecord:
        return JobRecord(id=new_job_id(), name=name or workflow.name, state=QUEUED, workflow=workflow.doc,
                         params=params, outputs=outputs, created=time.time())

    def _ended_from_cache(self, record: JobRecord, workflow: Workflow, plan: Plan) -> list[ev.Event]:
        """End ``record`` now: ``plan`` runs nothing, the cache holds every output it asks for. Such a
        job needs no worker and waits behind no other. Returns its events, to publish once it is stored."""
        held: list[ev.Event] = []
        result = self.engine.run_cached(workflow, plan, job_id=record.id, listener=held.append)
        record.started = record.ended = time.time()
        record.attempts = 1
        try:
            used = self.engine.compile(workflow).effective_params(record.params)
            record.state, record.result = FINISHED, {**self.present(workflow, result, record.id), "params": used}
        except Exception:
            self.log.exception("job %s failed inside the engine", record.id)
            record.state, record.error = FAILED, _internal_error(record.id)
            held = [e for e in held if not e.terminal]
            held.append(terminal_event(record))
        return held

    def _repeated(self, workflow: Workflow, params: dict[str, Any],
                  outputs: list[str] | None) -> tuple[_Repeat, dict[str, dict[str, Any]]] | None:
        """What an identical earlier request left (:meth:`_remember`) and its roots' values, read from the
        cache, while that still holds the very values it answered (and a save node's file is still as
        written); else None."""
        key = _repeat_key(workflow, params, outputs)
        repeat = None if key is None else self._repeats.get(key)
        if repeat is None:
            return None
        cache, files, hits = self.engine.cache, self.engine.files, {}
        for nid, cache_key, held, checked in repeat.roots:
            values = cache.get(cache_key)
            if id(values) != held or (checked is not None and not checked.still_valid(values, files)):
                del self._repeats[key]  # evicted, computed again or its file changed: plan it anew
                return None
            hits[nid] = values
        self._repeats.move_to_end(key)
        return repeat, hits

    def _remember(self, workflow: Workflow, params: dict[str, Any], outputs: list[str] | None, plan: Plan,
                  bound: dict[str, dict[str, Any]], record: JobRecord) -> None:
        """Keep what a request identical to the one of ``record`` (ended from the cache) may reuse, when it may:
        the plan did not depend on chance or the outside world, and the result names no file that is not
        checked again on reuse (a media output is written per job, a path's URL is checked when shown).

        What is kept is small: no cached value (each root's is named by its identity, read from the
        cache again on reuse), and a result of at most REPEAT_TEXT characters of JSON.
        """
        if record.state != FINISHED or record.result.get("media"):
            return
        compiled = self.engine.compile(workflow)
        steps = compiled.steps
        if any(not steps[plan.outputs[name][0]].hits_checked for name in record.result.get("files") or ()):
            return
        if not repeatable(compiled, plan, bound):
            return
        key = _repeat_key(workflow, params, outputs)
        if key is None:
            return
        text = result_text(record)  # the text the store writes, made once for every repeat
        if record.result_text is None or len(text) > _REPEAT_TEXT:
            return
        roots = tuple((nid, plan.keys[nid], id(plan.hits[nid]), steps[nid].cls if steps[nid].hits_checked else None)
                      for nid in plan.roots)
        kept = Plan(order=[], hits={}, keys={nid: plan.keys[nid] for nid in plan.roots}, filled={},
                    seeds=plan.seeds, roots=plan.roots, outputs=plan.outputs)
        self._repeats[key] = _Repeat(kept, roots, record.result, record.result_text)
        self._repeats.move_to_end(key)
        while len(self._repeats) > _REPEATS:
            self._repeats.popitem(last=False)

    def _ended_from_repeat(self, record: JobRecord, workflow: Workflow, repeat: _Repeat,
                           hits: dict[str, dict[str, Any]]) -> list[ev.Event]:
        """:meth:`_ended_from_cache` for a repeat: the same events, the earlier result (its values are
        ``hits``, the ones the cache holds now: :meth:`_repeated`)."""
        held: list[ev.Event] = []
        kept = repeat.plan
        plan = Plan(order=[], hits=hits, keys=kept.keys, filled=kept.filled, seeds=kept.seeds, roots=kept.roots,
                    outputs=kept.outputs)
        self.engine.run_cached(workflow, plan, job_id=record.id, listener=held.append)
        record.started = record.ended = time.time()
        record.attempts = 1
        record.state, record.result, record.result_text = FINISHED, dict(repeat.result), repeat.text
        return held

    async def _store_ended(self, record: JobRecord, workflow: Workflow, held: list[ev.Event],
                           wait_stored: bool) -> JobRecord:
        """Store a job that ended on submission (one row, written once); its events go out once it is stored."""
        record.digest = workflow.digest()
        writing = self.store.add_async(record)

        def stored(done: asyncio.Future) -> None:
            if done.cancelled() or done.exception() is not None:
                self._records.pop(record.id, None)  # never acknowledged: the caller hears the store's error
                return
            self._storing.pop(record.id, None)
            self._publish(ev.JobQueued(record.id, position=1))  # it never waited: first in line
            for event in held:
                if not event.terminal:
                    self._publish(event)
            self._end(record, held[-1])

        self._storing[record.id] = writing
        self._records[record.id] = record
        writing.add_done_callback(stored)
        if wait_stored:
            await asyncio.shield(writing)
        return record

    async def _store_and_enqueue(self, record: JobRecord, workflow: Workflow, owned: bool,
                                 large_: bool) -> JobRecord:
        # durable before anyone is told the job exists; a small one's document hash is computed
        # once per workflow object (an endpoint's: once per process)
        if large_:
            await asyncio.to_thread(self.store.add, record)
        else:
            record.digest = workflow.digest()
            await self.store.add_async(record)
        if owned:
            self._owned.add(record.id)
        self._enqueue(record, workflow)
        return record

    def _store_while_queued(self, record: JobRecord, workflow: Workflow, owned: bool, *, queue: bool = True) -> None:
        """Store ``record`` in the next group commit and enqueue it meanwhile (``queue=False``: only
        registered, for a job its caller runs now)."""
        record.digest = workflow.digest()
        writing = self.store.add_async(record)
        self._storing[record.id] = writing
        writing.add_done_callback(lambda done: done.exception() or self._storing.pop(record.id, None))
        if owned:
            self._owned.add(record.id)
        if queue:
            self._enqueue(record, workflow)
        else:
            self._workflows[record.id] = workflow
            self._records[record.id] = record
            self._publish(ev.JobQueued(record.id, position=1))

    async def stored(self, job_id: str) -> None:
        """Returns once the job's record is committed; raises what failed to store it."""
        writing = self._storing.get(job_id)
        if writing is not None:
            try:
                await asyncio.shield(writing)
            finally:
                if writing.done():
                    self._storing.pop(job_id, None)

    def _enqueue(self, record: JobRecord, workflow: Workflow) -> None:
        self._workflows[record.id] = workflow
        self._records[record.id] = record
        self._queue.append(record.id)
        self._publish(ev.JobQueued(record.id, position=len(self._queue)))
        self._wake.set()

    def get(self, job_id: str) -> JobRecord:
        """The job with its live state (queue position, current node, progress)."""
        return self._live_state(job_id, self._known(job_id) or self.store.get(job_id))

    async def fetch(self, job_id: str, *, workflow: bool = True) -> JobRecord:
        """:meth:`get`, reading an ended job from the store off the event loop (a large one takes a while).

        Without ``workflow``, a stored job is read without its workflow document (then None).
        """
        known = self._known(job_id)
        if known is not None:
            return self._live_state(job_id, known)
        if not workflow:
            return self._live_state(job_id, self.store.get(job_id, workflow=False))
        return self._live_state(job_id, await asyncio.to_thread(self._read, job_id))

    def _known(self, job_id: str) -> JobRecord | None:
        return self._records.get(job_id) or self._recent.get(job_id)

    def _read(self, job_id: str) -> JobRecord | None:
        """The stored job with its workflow, read in a thread (a large one is many objects: see engine.large)."""
        with quiet_gc():
            return self.store.get(job_id)

    def _settle_if_idle(self) -> None:
        if not (self._queue or self._tokens or self._adding):
            settle_gc()  # no large job is alive: frozen objects go back to the collector

    def _live_state(self, job_id: str, record: JobRecord | None) -> JobRecord:
        if record is None:
            raise JobNotFound(job_id)
        record.extra = {}
        if record.state == QUEUED and job_id in self._queue:
            record.extra["position"] = self._queue.index(job_id) + 1
        elif record.state == RUNNING:
            record.extra.update(self._live.get(job_id, {}))
        return record

    def page(self, *, state: str | None = None, limit: int = 50, before: int | None = None) -> list[JobRecord]:
        """Queue and history, newest first."""
        return self.store.page(state=state, limit=limit, before=before)

    def counts(self) -> dict[str, int]:
        """Jobs per state."""
        return self.store.counts()

    async def wait(self, job_id: str, timeout: float) -> JobRecord:
        """The job once it ended, or as it stands when ``timeout`` seconds have passed."""
        record = await self.fetch(job_id, workflow=False)
        if record.terminal:
            return record
        loop = asyncio.get_running_loop()
        ended = loop.create_future()  # a future and a timer: asyncio.wait_for costs a task per call
        self._done.setdefault(job_id, []).append(ended)
        timer = loop.call_later(timeout, _resolve, ended)
        try:
            await ended
        finally:
            timer.cancel()
        return record if record.terminal else await self.fetch(job_id, workflow=False)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job now, or ask a running one to stop; raises JobEnded if it ended."""
        # Without its workflow: an ended job's may be large, and the answer does not show it.
        record = self._live_state(job_id, self._records.get(job_id) or self.store.get(job_id, workflow=False))
        if record.terminal:
            raise JobEnded(f"job {job_id!r} already ended ({record.state}); nothing to cancel")
        if record.state == QUEUED and (self.dispatch is None or job_id in self._queue):
            self._queue.remove(job_id)
            self._workflows.pop(job_id, None)
            self._bound.pop(job_id, None)
            self._owned.discard(job_id)
            record.state, record.ended = CANCELLED, time.time()
            record.error = {"type": "cancelled", "message": "cancelled before it started"}
            self.store.save(record)
            self._end(record, ev.JobCancelled(job_id, reason="cancelled before it started"))
        else:
            self._tokens[job_id].cancel("cancelled by request")
        return record

    def subscribe(self, job_id: str | None = None, maxsize: int = 1000) -> Subscription:
        """Events of one job (or all jobs); call :meth:`unsubscribe` when done."""
        subscription = Subscription(job_id, maxsize)
        self._subscribers.add(subscription)
        return subscription

    def close_subscriptions(self) -> None:
        """End every event stream (SSE, WebSocket): called when the server shuts down."""
        for subscription in list(self._subscribers):
            subscription.close()
        self._subscribers.clear()

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription``."""
        self._subscribers.discard(subscription)

    # -- running -------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            # a job run by its caller (accept) holds a worker's place too
            while not self._queue or self._running >= self._workers_wanted:
                self._wake.clear()
                await self._wake.wait()
            await self._run_in_slot(self._queue.popleft())

    async def _run_in_slot(self, job_id: str, plan: Plan | None = None) -> None:
        """Run one job in one of the ``workers`` places; the worker must survive anything a job does."""
        self._running += 1
        try:
            await (self._run(job_id, plan) if self.dispatch is None else self.dispatch.run(self, job_id))
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("job %s: unexpected error in the queue", job_id)
        finally:
            self._running -= 1
            if self._queue:
                self._wake.set()
        self._settle_if_idle()

    async def _run(self, job_id: str, plan: Plan | None = None) -> None:
        # A large job's store reads and writes, parsing and presenting run in threads (they take a
        # while); a small job's run inline: a thread hop costs more than they do.
        record = self._records.get(job_id) or await asyncio.to_thread(self._read, job_id)
        if record is None or record.state != QUEUED:
            self._bound.pop(job_id, None)
            return
        large_ = _size(self._workflows.get(job_id) or record.workflow or {}) > LARGE_GRAPH
        self._records[job_id] = record
        record.state, record.started = RUNNING, time.time()
        record.attempts += 1
        token = self._tokens[job_id] = CancelToken()  # before any await: cancel() may come at once
        self._live[job_id] = {}
        timer = (asyncio.get_running_loop().call_later(self.time_limit, token.cancel,
                                                       f"time limit of {self.time_limit:g} s reached")
                 if self.time_limit else None)
        held: list[ev.Event] = []

        def listener(event: ev.Event) -> None:
            if event.terminal:
                held.append(event)  # published once the record says the same
            else:
                self._track(event)
                self._publish(event)

        shutting_down, workflow = False, None
        try:
            if large_:
                await asyncio.to_thread(self.store.save, record)
            else:
                self.store.save_later(record)  # nobody waits for "running": the end is written after it
            workflow = self._workflows.pop(job_id, None)
            if workflow is None:
                workflow = await asyncio.to_thread(_parsed, record.workflow)
                self._owned.add(job_id)
            result = await self.engine.run(workflow, record.params, outputs=record.outputs, job_id=job_id,
                                           listener=listener, cancel=token, bound=self._bound.pop(job_id, None),
                                           plan=plan)
            used = self.engine.compile(workflow).effective_params(record.params)
            presented = await _off_loop(large_, self.present, workflow, result, job_id)
            record.state, record.result = FINISHED, {**presented, "params": used}
        except Cancelled as exc:
            shutting_down = token.reason == "the server is shutting down"
            record.state, record.error = CANCELLED, {"type": "cancelled", "message": str(exc)}
        except InvalidWorkflow as exc:
            record.state = FAILED
            record.error = {**exc.to_json(), "message": redact_paths(str(exc))}
        except NodeError as exc:
            record.state, record.error = FAILED, self._node_error(job_id, exc)
        except Exception:
            self.log.exception("job %s failed inside the engine", job_id)
            record.state, record.error = FAILED, _internal_error(job_id)
        finally:
            if timer is not None:
                timer.cancel()
            self._tokens.pop(job_id, None)
            self._live.pop(job_id, None)
        if shutting_down:
            # Not the job's fault: it runs again on the next start, without using up an attempt.
            record.state, record.error, record.attempts = QUEUED, None, record.attempts - 1
            self.store.save(record)  # at once: no cancel() may see it queued but not in the queue
            self._records.pop(job_id, None)
            self._owned.discard(job_id)
            return
        record.ended = time.time()
        took = record.ended - (record.started or record.ended)
        self._mean_s = took if self._mean_s is None else 0.8 * self._mean_s + 0.2 * took
        terminal = held[0] if held else terminal_event(record)
        if not large_:
            # Durable before the end is published, but the worker goes on to the next job
            # meanwhile: the write joins the next group commit with the other jobs'.
            ending = self.store.save_async(record)
            self._ending.add(ending)
            ending.add_done_callback(lambda done: self._end_stored(done, record, terminal))
            self._owned.discard(job_id)
            return
        await asyncio.to_thread(self.store.save, record)
        self._end(record, terminal)
        if job_id in self._owned:
            self._owned.discard(job_id)
            if workflow is not None and len(workflow.nodes) > LARGE_GRAPH:
                # Some ten objects per node: freed a piece at a time in a thread (see large.empty).
                garbage = [workflow]
                workflow = None
                await asyncio.to_thread(self._teardown, garbage)

    def _end_stored(self, done: asyncio.Future, record: JobRecord, terminal: ev.Event) -> None:
        self._ending.discard(done)
        if done.cancelled() or done.exception() is not None:  # logged by the store; callers still hear the end
            self.log.error("job %s: its end could not be stored", record.id)
        self._end(record, terminal)

    def _teardown(self, garbage: list[Workflow]) -> None:
        """Free an ended job's large graph, which this queue alone holds, a piece at a time."""
        workflow = garbage.pop()
        try:
            compiled = self.engine.compile(workflow)  # cached: this returns the job's own
        except InvalidWorkflow:
            compiled = None
        if compiled is not None and compiled.built_steps is not None:  # a job cancelled before its plan built none
            large.empty(compiled.built_steps)
            large.empty(compiled.position)
        large.empty(workflow.nodes)

    def _node_error(self, job_id: str, exc: NodeError) -> dict[str, Any]:
        """A failed node as the job's error: a named cause says what to do; any other is a bug, logged."""
        error = {"type": exc.kind, "node": exc.node, "node_type": exc.node_type,
                 "cause": getattr(exc.cause, "kind", "internal"), "status": exc.status}
        if isinstance(exc.cause, FlowError):
            error["message"] = redact_paths(str(exc))
            if isinstance(exc.cause, InvalidInput):
                error["input"] = exc.cause.input
        else:  # not raised on purpose: the traceback goes to the log, the client gets the text without paths
            self.log.error("job %s: node %r (%s) raised", job_id, exc.node, exc.node_type, exc_info=exc.cause)
            error["message"] = f"{redact_paths(str(exc))}; the server log has the details (job {job_id})"
        return error

    def _track(self, event: ev.Event) -> None:
        live = self._live.get(event.job_id)
        if live is None:
            return
        if isinstance(event, ev.NodeStarted):
            live.update(node=event.node, node_type=event.node_type, progress=None)
        elif isinstance(event, ev.NodeProgress):
            live["progress"] = {"done": event.done, "total": event.total, "message": event.message}

    def _publish(self, event: ev.Event) -> None:
        dropped = [s for s in self._subscribers
                   if (s.job_id is None or s.job_id == event.job_id) and not s.offer(event)]
        for subscription in dropped:
            self.log.warning("dropping a slow event listener (%d events behind)", subscription.queue.qsize())
            self._subscribers.discard(subscription)

    def _end(self, record: JobRecord, terminal: ev.Event) -> None:
        self._records.pop(record.id, None)
        record.extra = {}  # no queue position or current node once it ended
        if _size(record.workflow or {}) <= LARGE_GRAPH:
            self._recent[record.id] = record
            if len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
        self._publish(terminal)
        for ended in self._done.pop(record.id, ()):
            _resolve(ended)


class _Repeat:
    """What a request that ended from the cache leaves for an identical one (JobQueue._remember)."""

    __slots__ = ("plan", "roots", "result", "text")

    def __init__(self, plan: Plan, roots: tuple, result: dict, text: str | None):
        self.plan = plan  # nothing to run: every output it needs was cached (its hits: read again each time)
        # per root node: (node, cache key, id() of the values the cache held, the class whose still_valid
        # checks them or None). An id, not the values: holding them would outlast the cache's bound. A
        # new entry under the same key (the same computation again) that got the same address passes.
        self.roots = roots
        self.result = result  # the job's result as presented (read-only: each job gets a shallow copy)
        self.text = text  # its JSON text, as the store writes it


def _repeat_key(workflow: Workflow, params: dict[str, Any], outputs: list[str] | None) -> tuple | None:
    """What identifies a request among repeats: its workflow object, its params and outputs as canonical
    JSON; None for a value that has no JSON form (a Python caller's): such a request is never a repeat."""
    try:
        return workflow, canonical([params, outputs])
    except (TypeError, ValueError):
        return None


#: identical requests remembered (JobQueue._repeats), at most; and the longest result text kept for one
_REPEATS = 256
_REPEAT_TEXT = 64 << 10


def _internal_error(job_id: str) -> dict[str, str]:
    """A job's error when the engine itself failed (a bug): the details are in the server log, not here."""
    return {"type": "internal", "message": f"internal error; the server log has the details (job {job_id})"}


def new_job_id() -> str:
    """32 hex digits: the time in milliseconds, then 80 random bits (as a UUIDv7 orders them).

    Ids in time order are appended to the store's index of ids, a page or two a commit, where
    random ones land on a different page each (measured: a third less work per stored job);
    the random part keeps them unguessable.
    """
    return (time.time_ns() // 1_000_000).to_bytes(6, "big").hex() + os.urandom(10).hex()


#: small ended jobs kept in memory for their callers (a few kB each)
_RECENT = 256


async def _off_loop(large_: bool, fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` in a thread for a large job, inline for a small one."""
    return await asyncio.to_thread(fn, *args) if large_ else fn(*args)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _size(workflow: Workflow | dict) -> int:
    if isinstance(workflow, Workflow):
        return len(workflow.nodes)
    nodes = workflow.get("nodes") if isinstance(workflow, dict) else None
    return len(nodes) if isinstance(nodes, dict) else 0


def _parsed(doc: dict) -> Workflow:
    with quiet_gc(_size(doc)):
        return Workflow.from_dict(doc)
