"""The few named errors of flow; each message says what happened, the value, and what to do."""

from __future__ import annotations

import re
from dataclasses import dataclass


class FlowError(Exception):
    """Base of every error flow raises on purpose; faces map these to exit codes and statuses."""

    #: short machine-readable kind, used by the faces (JSON `error.type`)
    kind = "error"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a workflow or a request: where it is and what to do about it."""

    message: str
    node: str | None = None
    input: str | None = None
    param: str | None = None

    def where(self) -> str:
        """Human-readable location, e.g. ``node 'gen' input 'width'``."""
        parts = []
        if self.param is not None:
            parts.append(f"param {self.param!r}")
        if self.node is not None:
            parts.append(f"node {self.node!r}")
        if self.input is not None:
            parts.append(f"input {self.input!r}")
        return " ".join(parts) or "workflow"

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"

    def to_json(self) -> dict:
        """JSON form used by the CLI's and the gateway's error bodies."""
        body = {"message": self.message}
        for field in ("node", "input", "param"):
            value = getattr(self, field)
            if value is not None:
                body[field] = value
        return body


class InvalidWorkflow(FlowError):
    """The workflow or its params are invalid; carries every problem found, not just the first.

    ``problems`` holds them all (the CLI lists them all). The message and :meth:`to_json` (every
    error body and job record) carry the first :attr:`SHOWN` and the total ``count``: a graph of
    100k broken nodes gives a readable error, not a body of many megabytes.
    """

    kind = "invalid_workflow"
    SHOWN = 100  # problems a message or an error body carries

    def __init__(self, problems: list[Problem], count: int | None = None):
        self.problems = list(problems)
        # ``count``: the total when ``problems`` is itself a capped list (a client re-raising a server's error).
        self.count = max(count or 0, len(self.problems))
        head = f"{self.count} problem{'s' if self.count != 1 else ''} in the workflow"
        lines = [f"  {p}" for p in self.shown]
        if self.count > len(lines):
            lines.append(f"  ... and {self.count - len(lines)} more")
        super().__init__(head + ":\n" + "\n".join(lines))

    @property
    def shown(self) -> list[Problem]:
        """The problems an error body carries: the first :attr:`SHOWN`."""
        return self.problems[:self.SHOWN]

    def to_json(self) -> dict:
        """The error as bodies and job records carry it: type, message, the first problems, their total count."""
        return {"type": self.kind, "message": str(self), "problems": [p.to_json() for p in self.shown],
                "count": self.count}


class NodeFailed(FlowError):
    """A node raised while running; names the node, its type and the cause."""

    kind = "node_failed"

    def __init__(self, node: str, node_type: str, cause: BaseException):
        self.node = node
        self.node_type = node_type
        self.cause = cause
        detail = str(cause) or type(cause).__name__
        super().__init__(f"node {node!r} ({node_type}) failed: {detail}")


class Cancelled(FlowError):
    """The job was cancelled; raised between nodes and inside long node loops."""

    kind = "cancelled"

    def __init__(self, message: str = "the job was cancelled"):
        super().__init__(message)


class ModelNotFound(FlowError):
    """A model reference names nothing on disk; the message carries the command that pulls it."""

    kind = "model_not_found"

    def __init__(self, ref: str, pull_command: str | None = None, detail: str = ""):
        self.ref = ref
        self.pull_command = pull_command or f"flow pull {ref}"
        message = f"model {ref!r} is not available locally"
        if detail:
            message += f" ({detail})"
        super().__init__(f"{message}; pull it with: {self.pull_command}")


class InvalidModelRef(FlowError):
    """A model reference that is malformed or points outside the allowed roots."""

    kind = "invalid_model_ref"


class OutOfMemory(FlowError):
    """A model's work did not fit even after freeing memory and lower-memory modes."""

    kind = "out_of_memory"


class PullFailed(FlowError):
    """Fetching a model failed part-way; running the same pull again resumes it."""

    kind = "pull_failed"

    def __init__(self, ref: str, reason: str):
        self.ref = ref
        self.reason = reason
        super().__init__(f"pulling {ref} failed: {reason}; run `flow pull {ref}` again to resume")


class InvalidInput(FlowError):
    """A node's input value cannot be used (found while running): names the input and what to do.

    Raised by nodes for input errors that the schema cannot express (a 1x1 image, a file that is
    not an image, a JSON path that does not exist); the gateway answers it 422, not 500.
    """

    kind = "invalid_input"

    def __init__(self, input: str, message: str):
        self.input = input
        super().__init__(f"input {input!r}: {message}")


_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s'\"/:]+/)+([^\s'\"/:]*)")


def redact_paths(message: str) -> str:
    """``message`` with absolute server paths cut to their last part (``…/name``).

    Error bodies leave the server; the full paths (and tracebacks) go to its log only.
    """
    return _ABSOLUTE_PATH.sub(lambda m: "…/" + m.group(1), message)


class NotConfigured(FlowError):
    """This process lacks what a node needs (a model manager, a server URL): the operator's fix, not the caller's."""

    kind = "not_configured"
