"""A job's events on their way to listeners: bounded subscriptions, and the terminal event of an ended job."""

from __future__ import annotations

import asyncio

from . import events as ev
from .jobstore import CANCELLED, FINISHED, JobRecord


class Subscription:
    """A bounded stream of events for one listener; a listener that falls behind is dropped, never waited for."""

    def __init__(self, job_id: str | None, maxsize: int):
        self.job_id = job_id
        self.queue: asyncio.Queue[ev.Event | None] = asyncio.Queue(maxsize)
        self.dropped = False  # fell behind: events were lost
        self.closed = False  # the server is shutting down

    def close(self) -> None:
        """End the stream (server shutdown): the listener's next() returns None."""
        self.closed = True
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            self.dropped = True

    def offer(self, event: ev.Event) -> bool:
        """Queue ``event``; False (and the stream ends) when the listener is too slow."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.dropped = True
            return False

    async def next(self, timeout: float | None = None) -> ev.Event | None:
        """The next event; None when the stream was dropped. Raises TimeoutError after ``timeout``."""
        if (self.dropped or self.closed) and self.queue.empty():
            return None
        if not self.queue.empty():
            # At once, not through wait_for (a loop turn per event): a large job emits events
            # faster than one per turn, and a listener that cannot keep up is dropped.
            return self.queue.get_nowait()
        return await asyncio.wait_for(self.queue.get(), timeout)

    def pending(self, limit: int) -> list[ev.Event]:
        """Up to ``limit`` events already queued, without waiting (a listener sends them as one batch)."""
        found: list[ev.Event] = []
        while len(found) < limit and not self.queue.empty():
            event = self.queue.get_nowait()
            if event is None:  # the end marker stays for next()
                self.queue.put_nowait(None)
                break
            found.append(event)
        return found


def terminal_event(record: JobRecord) -> ev.Event:
    """The one terminal event of an ended job, rebuilt from its record (for listeners that come late)."""
    error = record.error or {}
    if record.state == FINISHED:
        return ev.JobFinished(record.id, elapsed=(record.ended or 0) - (record.started or 0))
    if record.state == CANCELLED:
        return ev.JobCancelled(record.id, reason=error.get("message", ""))
    return ev.JobFailed(record.id, error=error.get("type", "error"), message=error.get("message", ""),
                        node=error.get("node"), node_type=error.get("node_type"))
