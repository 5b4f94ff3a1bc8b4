"""Typed progress events. The executor emits them and knows nothing of who listens.

Each event is O(1) in size and carries its job id; each job ends with exactly one terminal
event (`JobFinished`, `JobFailed` or `JobCancelled`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event."""

    kind: ClassVar[str] = "event"
    terminal: ClassVar[bool] = False
    job_id: str

    def to_json(self) -> dict:
        """``{"event": kind, ...fields}``: the form the gateway streams."""
        return {"event": self.kind, **asdict(self)}


@dataclass(frozen=True, slots=True)
class JobQueued(Event):
    """A job was accepted and waits in the queue."""

    kind: ClassVar[str] = "job.queued"
    position: int = 0


@dataclass(frozen=True, slots=True)
class JobStarted(Event):
    """A job began: how many nodes will run and how many come from the cache."""

    kind: ClassVar[str] = "job.started"
    to_run: int = 0
    cached: int = 0


@dataclass(frozen=True, slots=True)
class JobFinished(Event):
    """A job completed."""

    kind: ClassVar[str] = "job.finished"
    terminal: ClassVar[bool] = True
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class JobFailed(Event):
    """A job failed; names the node that failed, when one did."""

    kind: ClassVar[str] = "job.failed"
    terminal: ClassVar[bool] = True
    error: str = ""
    message: str = ""
    node: str | None = None
    node_type: str | None = None


@dataclass(frozen=True, slots=True)
class JobCancelled(Event):
    """A job stopped because it was cancelled."""

    kind: ClassVar[str] = "job.cancelled"
    terminal: ClassVar[bool] = True
    reason: str = ""


@dataclass(frozen=True, slots=True)
class NodeEvent(Event):
    """Base of node events."""

    node: str = ""
    node_type: str = ""


@dataclass(frozen=True, slots=True)
class NodeStarted(NodeEvent):
    """A node began running."""

    kind: ClassVar[str] = "node.started"


@dataclass(frozen=True, slots=True)
class NodeProgress(NodeEvent):
    """A running node reports progress (``done`` of ``total``, e.g. a diffusion step)."""

    kind: ClassVar[str] = "node.progress"
    done: float = 0.0
    total: float | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class NodeCached(NodeEvent):
    """A node's outputs came from the cache; it did not run."""

    kind: ClassVar[str] = "node.cached"


@dataclass(frozen=True, slots=True)
class NodeFinished(NodeEvent):
    """A node completed."""

    kind: ClassVar[str] = "node.finished"
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class NodeFailed(NodeEvent):
    """A node raised."""

    kind: ClassVar[str] = "node.failed"
    message: str = ""
