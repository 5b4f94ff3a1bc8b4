"""The engine: compiles workflows once, plans each run against the cache, and runs the DAG."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from . import events as ev
from .cache import Cache, MemoryCache, NullCache
from .cancel import CancelToken
from .compile import CompiledWorkflow, Step, compile_workflow
from .context import NodeContext, RunInfo
from .errors import Cancelled, InvalidWorkflow, NodeError, Problem, redact_paths
from .large import LARGE_GRAPH, quiet_gc
from .paths import OutputFiles
from .plan import Plan, make_plan
from .registry import Registry
from .threads import NodeThreads
from .workflow import Workflow

Listener = Callable[[ev.Event], None]

#: the token of a run with nothing to run (run_cached): nothing checks it, nobody cancels it
_NOTHING_TO_CANCEL = CancelToken()

# Inline (cheap) nodes give the event loop a turn at least this often, so a long chain
# never starves the gateway or delays a cancel request.
_YIELD_EVERY_S = 0.002


@dataclass(slots=True)
class RunResult:
    """What a run produced: outputs by name, which nodes ran or came from cache, the seeds used."""

    job_id: str
    outputs: dict[str, Any]
    executed: list[str]
    cached: list[str]
    seeds: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0


class Engine:
    """Runs workflows. One per process; the faces construct it and share it."""

    def __init__(self, registry: Registry, *, cache: Cache | None = None, models: Any = None,
                 output_dir: Any = "outputs", workers: int = 4, log: logging.Logger | None = None,
                 config: Mapping[str, Any] | None = None):
        self.registry = registry
        # Typed configuration of node backends by namespace (e.g. "text": TextBackends), built by
        # the faces from their settings; nodes read it through ctx.config, never the environment.
        self.config: Mapping[str, Any] = MappingProxyType(dict(config or {}))
        self.cache = cache if cache is not None else MemoryCache(1 << 30)
        self.models = models
        self.files = OutputFiles(output_dir)
        self.log = log or logging.getLogger("flow.engine")
        # Blocking node work; a thread stuck in work of an ended job is replaced, not waited for.
        self._pool = NodeThreads(workers, log=self.log)
        self._gpu_lock = threading.Lock()
        self._compiled: "weakref.WeakKeyDictionary[Workflow, CompiledWorkflow]" = weakref.WeakKeyDictionary()
        self._listeners: list[Listener] = []

    @classmethod
    def from_settings(cls, settings, registry: Registry, *, models: Any = None,
                      config: Mapping[str, Any] | None = None) -> "Engine":
        """An engine configured from :class:`engine.settings.Settings`."""
        cache = MemoryCache(settings.cache_bytes) if settings.cache_bytes > 0 else NullCache()
        return cls(registry, cache=cache, models=models, output_dir=settings.output_dir, workers=settings.workers,
                   config=config)

    def close(self) -> None:
        """Stop the worker threads (waits for running node work, not for threads stuck in work of ended jobs)."""
        self._pool.close()

    def stuck_workers(self) -> list[dict[str, Any]]:
        """Threads still running node work of a job that has ended: job, node, node_type, stuck_s (for /health)."""
        return self._pool.stuck_nodes()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Receive every event of every job; returns the function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def compile(self, workflow: Workflow) -> CompiledWorkflow:
        """Validate and compile ``workflow`` (once per workflow object); raises InvalidWorkflow."""
        compiled = self._compiled.get(workflow)
        if compiled is None:
            compiled = self._compiled[workflow] = compile_workflow(workflow, self.registry)
        return compiled

    def validate(self, workflow: Workflow, params: dict[str, Any] | None = None) -> list[Problem]:
        """Every problem with ``workflow`` and ``params`` (empty when it can run)."""
        try:
            self.compile(workflow).bind(params or {})
        except InvalidWorkflow as exc:
            return exc.problems
        return []

    def run_sync(self, workflow: Workflow, params: dict[str, Any] | None = None, **kwargs) -> RunResult:
        """:meth:`run` from synchronous code."""
        return asyncio.run(self.run(workflow, params, **kwargs))

    async def run(self, workflow: Workflow, params: dict[str, Any] | None = None, *,
                  outputs: Iterable[str] | None = None, job_id: str | None = None,
                  listener: Listener | None = None, cancel: CancelToken | None = None,
                  bound: dict[str, dict[str, Any]] | None = None, plan: Plan | None = None) -> RunResult:
        """Run ``workflow`` with ``params``; returns the requested outputs (all by default).

        ``bound`` is ``compile(workflow).bind(params)`` when the caller has it already (a job queue
        validated the params on submission): it is not bound again. ``plan`` is this run's plan
        when the caller made it just now (:meth:`plan_now`, the same params and outputs): it is
        not planned again. (A plan made earlier would miss what the cache gained since.)

        Raises InvalidWorkflow before anything runs, NodeError when a node raises, and
        Cancelled when ``cancel`` is cancelled. Exactly one terminal event ends each run.
        """
        job = _Job(job_id or uuid.uuid4().hex, [*self._listeners, *([listener] if listener is not None else [])],
                   cancel or CancelToken(), self.log)
        if plan is None:
            compiled, plan = await self._prepare(workflow, params or {}, outputs, job, bound)
        else:
            compiled = self.compile(workflow)
        job.info = RunInfo(job.id, workflow.doc, dict(params or {}), compiled.effective_params(params or {}),
                           plan.seeds, {nid: compiled.steps[nid].seed_input for nid in plan.seeds}, self.registry)
        started = time.perf_counter()
        job.emit(ev.JobStarted(job.id, to_run=len(plan.order), cached=len(plan.hits)))
        try:
            values, timings = await self._execute(compiled, plan, job)
        except Cancelled as exc:
            job.emit(ev.JobCancelled(job.id, reason=str(exc)))
            raise
        except NodeError as exc:
            job.token.cancel(f"node {exc.node!r} failed")  # stop sibling branches that check it
            job.emit(ev.JobFailed(job.id, error=exc.kind, message=redact_paths(str(exc)), node=exc.node,
                                  node_type=exc.node_type))
            raise
        except BaseException as exc:
            job.token.cancel("the engine failed")
            if isinstance(exc, Exception):  # not a task being cancelled
                job.log.error("job %s: the engine failed", job.id, exc_info=exc)
            job.emit(ev.JobFailed(job.id, error="internal", message="internal error; the server log has the details"))
            raise
        elapsed = time.perf_counter() - started
        job.emit(ev.JobFinished(job.id, elapsed=elapsed))
        return RunResult(
            job_id=job.id,
            outputs={name: values[node][out] for name, (node, out) in plan.outputs.items()},
            executed=list(timings), cached=list(plan.hits), seeds=plan.seeds, timings=timings, elapsed=elapsed,
        )

    def plan_now(self, workflow: Workflow, params: dict[str, Any] | None = None, *,
                 outputs: Iterable[str] | None = None, bound: dict[str, dict[str, Any]] | None = None) -> Plan:
        """This run's plan, on the calling thread (a small workflow's: tens of microseconds).

        A job queue asks it on submission: a plan with nothing to run ends the job at once
        (:meth:`run_cached`); one that runs next anyway goes to :meth:`run` as its ``plan``.
        Raises InvalidWorkflow as :meth:`run` does.
        """
        compiled = self.compile(workflow)
        return self.plan(compiled, compiled.bind(params or {}) if bound is None else bound, outputs)

    def inline_only(self, workflow: Workflow, plan: Plan) -> bool:
        """True when every node ``plan`` runs may run inline on the loop (no async node, no blocking
        one that cannot be cheap): such a run takes no turn of the loop unless a node is not cheap."""
        steps = self.compile(workflow).steps
        for nid in plan.order:
            cls = steps[nid].cls
            if cls.is_async() or (cls.blocking and not cls.may_be_cheap()):
                return False
        return True

    def run_cached(self, workflow: Workflow, plan: Plan, *, job_id: str | None = None,
                   listener: Listener | None = None) -> RunResult | None:
        """The run's result when ``plan`` (:meth:`plan_now`) has nothing to run: every output it needs
        is cached; else None, having emitted nothing.

        Synchronous: a fully cached run needs neither a worker nor a thread. It emits what
        :meth:`run` would (started, cached nodes, finished).
        """
        if plan.order:
            return None
        steps = self.compile(workflow).steps
        job = _Job(job_id or uuid.uuid4().hex, [*self._listeners, *([listener] if listener is not None else [])],
                   _NOTHING_TO_CANCEL, self.log)
        job.emit(ev.JobStarted(job.id, to_run=0, cached=len(plan.hits)))
        for nid in plan.hits:
            job.emit(ev.NodeCached(job.id, node=nid, node_type=steps[nid].cls.type))
        job.emit(ev.JobFinished(job.id, elapsed=0.0))
        return RunResult(job_id=job.id, outputs={name: plan.hits[node][out] for name, (node, out) in plan.outputs.items()},
                         executed=[], cached=list(plan.hits), seeds=plan.seeds)

    async def _prepare(self, workflow: Workflow, params: dict[str, Any], outputs: Iterable[str] | None,
                       job: "_Job", bound: dict[str, dict[str, Any]] | None = None) -> tuple[CompiledWorkflow, Plan]:
        """Compile, bind and plan; a large graph in a thread (a 100k-node one takes seconds), and a
        cancel stops waiting for it at once. A small one here: a few milliseconds, no thread hop."""

        def prepare() -> tuple[CompiledWorkflow, Plan]:
            compiled = self.compile(workflow)
            filled = compiled.bind(params) if bound is None else bound
            return compiled, self.plan(compiled, filled, outputs, cancel=job.token)

        def prepare_large() -> tuple[CompiledWorkflow, Plan]:
            with quiet_gc():
                return prepare()

        try:
            if len(workflow.nodes) <= LARGE_GRAPH:
                return prepare()
            work = asyncio.ensure_future(asyncio.to_thread(prepare_large))
            cancelled = job.token.waiter()
            try:
                await asyncio.wait([work, cancelled], return_when=asyncio.FIRST_COMPLETED)
            finally:
                cancelled.cancel()
                work.cancel()  # when cancelled: the result is dropped (the plan stops at its next check)
            job.token.raise_if_cancelled()
            return work.result()
        except Cancelled as exc:
            job.emit(ev.JobCancelled(job.id, reason=str(exc)))
            raise

    def plan(self, compiled: CompiledWorkflow, filled: dict[str, dict[str, Any]],
             outputs: Iterable[str] | None = None, *, cancel: CancelToken | None = None) -> Plan:
        """Prune to what the requested outputs need, draw seeds, key every node, consult the cache.

        Thread-safe (a large graph is planned off the event loop); raises Cancelled once ``cancel`` is.
        """
        return make_plan(compiled, filled, outputs, self.cache, self.files, cancel, self.config)

    async def _execute(self, compiled: CompiledWorkflow, plan: Plan, job: "_Job"):
        """The core loop: start what is ready, collect what finished, release what is no longer needed."""
        steps, loop = compiled.steps, asyncio.get_running_loop()
        values: dict[str, dict[str, Any]] = dict(plan.hits)
        last_yield = time.perf_counter()
        for nid in plan.hits:
            job.emit(ev.NodeCached(job.id, node=nid, node_type=steps[nid].cls.type))
            if time.perf_counter() - last_yield > _YIELD_EVERY_S:
                await asyncio.sleep(0)
                last_yield = time.perf_counter()
        waiting, uses = plan.waiting, plan.uses  # counted by the plan, used up here (waiting: the nodes to run)
        ready = deque(plan.ready)
        running: dict[asyncio.Future, tuple[str, float]] = {}
        timings: dict[str, float] = {}
        cancelled = job.token.waiter()
        try:
            while ready or running:
                job.token.raise_if_cancelled()
                while ready:
                    nid = ready.popleft()
                    step = steps[nid]
                    started = time.perf_counter()
                    outcome = self._start(step, plan, values, job, loop)
                    if isinstance(outcome, asyncio.Future):
                        running[outcome] = (nid, started)
                    else:
                        timings[nid] = self._finish(step, plan, outcome, started, values, uses, job)
                        ready.extend(c for c in step.consumers if c in waiting and _ready(waiting, c))
                    if started - last_yield > _YIELD_EVERY_S:
                        await asyncio.sleep(0)
                        last_yield = time.perf_counter()
                        job.token.raise_if_cancelled()
                if not running:
                    continue
                done, _ = await asyncio.wait([*running, cancelled], return_when=asyncio.FIRST_COMPLETED)
                last_yield = time.perf_counter()
                for fut in done:
                    if fut is cancelled:
                        continue
                    nid, started = running.pop(fut)
                    step = steps[nid]
                    outputs = _result(fut, step, job)
                    timings[nid] = self._finish(step, plan, outputs, started, values, uses, job)
                    ready.extend(c for c in step.consumers if c in waiting and _ready(waiting, c))
            return values, timings
        finally:
            cancelled.cancel()
            for fut in running:
                fut.cancel()  # async nodes stop now; thread work sees the token and its result is dropped

    def _start(self, step: Step, plan: Plan, values, job: "_Job", loop) -> dict | asyncio.Future:
        """Run an inline node now (its outputs), or start a thread/async one (a future)."""
        inputs = dict(step.literals)
        extra = plan.filled.get(step.id)
        if extra:
            inputs.update(extra)
        for name, src, out in step.links:
            inputs[name] = values[src][out]
        job.emit(ev.NodeStarted(job.id, node=step.id, node_type=step.cls.type))
        ctx = NodeContext(job.id, step.id, step.cls.type, self.models, self.files,
                          _NodeLog(self.log, {"node": step.id}), job.token, job.progress_reporter(step, loop),
                          self._gpu_lock, job.info, self.config)
        if step.cls.is_async():
            return asyncio.ensure_future(step.run(ctx, **inputs))
        if step.cls.blocking and not step.cls.cheap(inputs, job.info):
            return self._pool.run(loop, lambda: step.run(ctx, **inputs), job=job.id, node=step.id,
                                  node_type=step.cls.type)
        try:
            outputs = step.run(ctx, **inputs)
        except Exception as exc:
            raise _failure(step, exc, job) from exc
        return _checked(step, outputs, job)

    def _finish(self, step: Step, plan: Plan, outputs: dict, started: float, values, uses, job: "_Job") -> float:
        """Store a node's outputs (and cache them), release inputs nothing else needs; its duration."""
        elapsed = time.perf_counter() - started
        values[step.id] = outputs
        if not step.volatile:
            self.cache.put(plan.keys[step.id], outputs)
        for src in step.sources:
            uses[src] -= 1
            if uses[src] == 0 and src not in plan.roots:
                del values[src]
        job.emit(ev.NodeFinished(job.id, node=step.id, node_type=step.cls.type, elapsed=elapsed))
        return elapsed


class _NodeLog(logging.LoggerAdapter):
    """The engine's logger as one node sees it: each message names the node.

    Not ``log.getChild(node)``: that registers a logger per node id for the life of the process
    (100k of them for a 100k-node graph, and more with every new id).
    """

    def process(self, msg, kwargs):
        return f"node {self.extra['node']!r}: {msg}", kwargs


def _ready(waiting: dict[str, int], nid: str) -> bool:
    waiting[nid] -= 1
    return waiting[nid] == 0


def _result(fut: asyncio.Future, step: Step, job: "_Job") -> dict:
    try:
        outputs = fut.result()
    except Cancelled:
        raise
    except Exception as exc:
        raise _failure(step, exc, job) from exc
    return _checked(step, outputs, job)


def _failure(step: Step, exc: Exception, job: "_Job") -> Exception:
    if isinstance(exc, Cancelled):
        return exc
    # events leave the process (WebSocket, SSE): server paths stay in the log
    job.emit(ev.NodeFailed(job.id, node=step.id, node_type=step.cls.type,
                           message=redact_paths(str(exc)) or type(exc).__name__))
    return NodeError(step.id, step.cls.type, exc)


def _checked(step: Step, outputs: Any, job: "_Job") -> dict:
    """A node must return a dict with exactly its declared outputs."""
    if not isinstance(outputs, dict) or outputs.keys() != step.cls.outputs.keys():
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise _failure(step, TypeError(f"run() returned {got}; expected a dict with outputs "
                                       f"{sorted(step.cls.outputs)}"), job)
    return outputs


class _Job:
    """Per-run state the executor threads through: id, listeners, cancel token."""

    __slots__ = ("id", "listeners", "token", "log", "loop_thread", "ended", "info")

    def __init__(self, job_id: str, listeners: list[Listener], token: CancelToken, log: logging.Logger):
        self.id = job_id
        self.listeners = listeners
        self.token = token
        self.log = log
        self.loop_thread = threading.get_ident()
        self.ended = False
        self.info: RunInfo | None = None

    def emit(self, event: ev.Event) -> None:
        """Deliver ``event`` to every listener; a failing listener is logged, never fatal to the job.

        Nothing is delivered after the terminal event (an abandoned thread may still report).
        """
        if self.ended:
            return
        self.ended = event.terminal
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                self.log.exception("event listener %r failed on %s", listener, event.kind)

    def progress_reporter(self, step: Step, loop) -> Callable[[float, float | None, str | None], None]:
        """A thread-safe function that emits progress events for ``step`` on the loop's thread."""
        job_id, node, node_type = self.id, step.id, step.cls.type

        def report(done: float, total: float | None = None, message: str | None = None) -> None:
            event = ev.NodeProgress(job_id, node=node, node_type=node_type, done=done, total=total, message=message)
            if threading.get_ident() == self.loop_thread:
                self.emit(event)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(self.emit, event)

        return report
