"""Cooperative cancellation shared by the executor (asyncio) and node threads."""

from __future__ import annotations

import asyncio
import threading

from .errors import Cancelled


class CancelToken:
    """A flag a job's nodes check; cancelling it also wakes the executor waiting on asyncio."""

    __slots__ = ("_event", "_waiters", "_lock", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._waiters: list[asyncio.Future] = []
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
        for fut in waiters:
            loop = fut.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)

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
