"""Cooperative cancellation shared by the executor (asyncio) and node threads."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

from .errors import Cancelled

log = logging.getLogger("flow.engine")

#: ``on_cancel(callback) -> unregister``: run ``callback`` once when the job is cancelled (at once if it
#: already was); the returned function unregisters it. Blocking I/O takes one to close its stream on
#: cancel, so a thread blocked in a read returns instead of waiting for a server that stalled.
OnCancel = Callable[[Callable[[], None]], Callable[[], None]]


class CancelToken:
    """A flag a job's nodes check; cancelling it also wakes the executor waiting on asyncio."""

    __slots__ = ("_event", "_waiters", "_callbacks", "_lock", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._waiters: list[asyncio.Future] = []
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.reason = "the job was cancelled"

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def cancel(self, reason: str | None = None) -> None:
        """Ask the job to stop; safe from any thread, idempotent."""
        with self._lock:
            if self._event.is_set():
                return
            if reason:
                self.reason = reason
            self._event.set()
            waiters, self._waiters = self._waiters, []
            callbacks, self._callbacks = self._callbacks, []
        for fut in waiters:
            loop = fut.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)
        for callback in callbacks:
            _call(callback)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` once when the token is cancelled (now, if it already was); returns the unregister function.

        The callback runs on the thread that cancels (often the event loop's): it must be quick and
        must not block, e.g. shut a socket down or schedule a task's cancellation.
        """
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._forget(callback)
        _call(callback)
        return _nothing

    def _forget(self, callback: Callable[[], None]) -> None:
        with self._lock:
            try:
                self._callbacks.remove(callback)
            except ValueError:
                pass  # already run, or unregistered twice

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` when the job was cancelled."""
        if self._event.is_set():
            raise Cancelled(self.reason)

    def waiter(self) -> asyncio.Future:
        """A future (on the running loop) that completes when the token is cancelled."""
        fut = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._event.is_set():
                fut.set_result(None)
            else:
                self._waiters.append(fut)
        return fut


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _call(callback: Callable[[], None]) -> None:
    # One failing callback must neither stop the others nor fail whoever cancelled (a timer, a request).
    try:
        callback()
    except Exception:
        log.exception("a cancel callback failed")


def _nothing() -> None:
    pass
