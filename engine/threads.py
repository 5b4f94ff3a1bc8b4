"""The threads that run blocking node work, kept available when some of them never return.

Python cannot stop a thread. A node blocked on a server that stalled keeps its thread after
its job has ended (cancelled, timed out, failed): the executor stops waiting, the thread does
not. A plain thread pool counts such a thread as busy for good, and a handful of them leave
every later job waiting for a thread that never comes. Here work whose job stopped waiting for
it is *abandoned*: it no longer counts against ``workers``, so another thread starts in its
place (up to a hard cap, with a warning), and :meth:`NodeThreads.stuck` reports it.
Backends close their streams on cancel (``ctx.on_cancel``), so a stuck thread is the exception
this guards against, not the rule.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable


class _Work:
    """One call waiting for or running on a thread, with what /health says about it."""

    __slots__ = ("fn", "future", "job", "node", "node_type", "abandoned_at")

    def __init__(self, fn: Callable[[], Any], job: str, node: str, node_type: str):
        self.fn = fn
        self.future: Future = Future()
        self.job, self.node, self.node_type = job, node, node_type
        self.abandoned_at: float | None = None  # monotonic time its job stopped waiting for it


class NodeThreads:
    """Runs blocking node work on up to ``workers`` threads at once, not counting abandoned work.

    ``max_stuck`` bounds the threads started in place of abandoned ones; past it, new work waits
    for a thread (and a warning says so): a thread leak must not become a memory leak.
    Threads are daemons, so a stuck one does not keep the process from exiting.
    """

    def __init__(self, workers: int, *, max_stuck: int = 32, log: logging.Logger | None = None):
        self.workers = max(1, workers)
        self.max_threads = self.workers + max(0, max_stuck)
        self.log = log or logging.getLogger("flow.engine")
        self._cond = threading.Condition()
        self._queue: deque[_Work] = deque()
        self._running: dict[Future, _Work] = {}
        self._threads = 0
        self._numbered = 0
        self._closed = False
        self._at_cap = False  # warned that the cap holds work back (once until it clears)

    # -- submitting --------------------------------------------------------------------------

    def submit(self, fn: Callable[[], Any], *, job: str = "", node: str = "", node_type: str = "") -> Future:
        """Run ``fn()`` on a thread; its result (or exception) arrives in the returned future."""
        work = _Work(fn, job, node, node_type)
        with self._cond:
            if self._closed:
                raise RuntimeError("the node threads were closed")
            self._queue.append(work)
            self._dispatch()
        return work.future

    def run(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], Any], **labels: str) -> asyncio.Future:
        """:meth:`submit` as a future of ``loop``; cancelling that future abandons the work if it already runs."""
        future = self.submit(fn, **labels)
        waiter = asyncio.wrap_future(future, loop=loop)  # its cancel() cancels work still queued
        waiter.add_done_callback(lambda w: self.abandon(future) if w.cancelled() else None)
        return waiter

    def abandon(self, future: Future) -> None:
        """Its job no longer waits for this work: it stops counting against ``workers``."""
        future.cancel()  # work still queued never runs
        with self._cond:
            work = self._running.get(future)
            if work is not None and work.abandoned_at is None:
                work.abandoned_at = time.monotonic()
                self._dispatch()

    # -- reporting ---------------------------------------------------------------------------

    def stuck(self) -> int:
        """How many threads still run work whose job has ended."""
        with self._cond:
            return self._stuck()

    def stuck_nodes(self) -> list[dict[str, Any]]:
        """The abandoned work still running: job, node, node type, and seconds since its job ended."""
        now = time.monotonic()
        with self._cond:
            return [{"job": w.job, "node": w.node, "node_type": w.node_type,
                     "stuck_s": round(now - w.abandoned_at, 3)}
                    for w in self._running.values() if w.abandoned_at is not None]

    def close(self, wait: bool = True, grace: float = 2.0) -> None:
        """Drop queued work; with ``wait``, wait for running work, and up to ``grace`` seconds for abandoned work.

        Abandoned work usually returns at once (its job's cancel closed its stream); what is still
        running after the grace may never end, and its daemon thread must not hold up the exit.
        """
        deadline = time.monotonic() + grace
        with self._cond:
            self._closed = True
            for work in self._queue:
                work.future.cancel()
            self._queue.clear()
            self._cond.notify_all()
            while wait and self._live() > 0:
                self._cond.wait()
            while wait and self._running and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())

    # -- the threads (everything below runs under self._cond) --------------------------------

    def _live(self) -> int:
        return sum(w.abandoned_at is None for w in self._running.values())

    def _stuck(self) -> int:
        return len(self._running) - self._live()

    def _startable(self) -> int:
        return min(len(self._queue), self.workers - self._live())

    def _dispatch(self) -> None:
        """Wake idle threads for work that may start now; start threads where too few are idle."""
        startable = self._startable()
        if startable <= 0:
            return
        self._cond.notify_all()
        idle = self._threads - len(self._running)  # threads not running work take queued work before waiting
        missing = min(startable - idle, self.max_threads - self._threads)
        for _ in range(max(0, missing)):
            self._start_thread()
        if startable - idle > missing:
            if not self._at_cap:
                self._at_cap = True
                self.log.warning("%d node threads are stuck in work of ended jobs (the cap); new node work waits "
                                 "until one returns - restart the server if they never do. Stuck: %s",
                                 self._stuck(), _describe(self._running.values()))
        else:
            self._at_cap = False

    def _start_thread(self) -> None:
        self._threads += 1
        self._numbered += 1
        if self._threads > self.workers:
            self.log.warning("%d node threads still run work of ended jobs (%s); starting thread %d of at most %d "
                             "so new work is not held up", self._stuck(), _describe(self._running.values()),
                             self._threads, self.max_threads)
        threading.Thread(target=self._loop, name=f"flow-node_{self._numbered}", daemon=True).start()

    def _take(self) -> _Work | None:
        """The next work this thread runs, or None when it should end."""
        while True:
            while self._queue and self._live() < self.workers:
                work = self._queue.popleft()
                if work.future.set_running_or_notify_cancel():
                    self._running[work.future] = work
                    return work
            if self._closed or self._threads - self._stuck() > self.workers:
                self._threads -= 1  # one too many now that stuck threads returned, or closing
                return None
            self._cond.wait()

    def _loop(self) -> None:
        while True:
            with self._cond:
                work = self._take()
            if work is None:
                return
            try:
                result = work.fn()
            except BaseException as exc:  # the future carries it to whoever waits, as a pool would
                work.future.set_exception(exc)
            else:
                work.future.set_result(result)
            with self._cond:
                del self._running[work.future]
                if work.abandoned_at is not None:
                    self.log.info("node %s (%s) of job %s returned %.1f s after its job ended", work.node,
                                  work.node_type, work.job, time.monotonic() - work.abandoned_at)
                self._cond.notify_all()  # close() waits for running work
            work = None  # drop the result and its frames before waiting for the next work


def _describe(works) -> str:
    stuck = [f"{w.node} ({w.node_type}) of job {w.job}" for w in works if w.abandoned_at is not None]
    return ", ".join(stuck[:5]) + (f" and {len(stuck) - 5} more" if len(stuck) > 5 else "")
