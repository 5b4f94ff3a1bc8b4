"""The few named errors of flow; each message says what happened, the value, and what to do."""

from __future__ import annotations

import re
from dataclasses import dataclass


class FlowError(Exception):
    """Base of every error flow raises on purpose; faces map these to exit codes and statuses."""

    #: short machine-readable kind, used by the faces (JSON `error.type`)
    kind = "error"
    #: the HTTP status the gateway answers it with (declared here, once, for every error)
    status = 500


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
    status = 400
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


class NodeError(FlowError):
    """A node raised while running; names the node, its type and the cause."""

    kind = "node_failed"
    status = 500

    def __init__(self, node: str, node_type: str, cause: BaseException):
        self.node = node
        self.node_type = node_type
        self.cause = cause
        self.status = getattr(cause, "status", 500)  # a node that failed on purpose answers its cause's status
        detail = str(cause) or type(cause).__name__
        super().__init__(f"node {node!r} ({node_type}) failed: {detail}")


class Cancelled(FlowError):
    """The job was cancelled; raised between nodes and inside long node loops."""

    kind = "cancelled"
    status = 409

    def __init__(self, message: str = "the job was cancelled"):
        super().__init__(message)


class ModelNotFound(FlowError):
    """A model reference names nothing on disk; the message carries the command that pulls it."""

    kind = "model_not_found"
    status = 404

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
    status = 400


class OutOfMemory(FlowError):
    """A model's work did not fit even after freeing memory and lower-memory modes."""

    kind = "out_of_memory"
    status = 503


class PullFailed(FlowError):
    """Fetching a model failed part-way; running the same pull again resumes it."""

    kind = "pull_failed"
    status = 503

    def __init__(self, ref: str, reason: str, *, resumable: bool = True):
        self.ref = ref
        self.reason = reason
        # nothing fetched yet (offline, refused): there is nothing to resume, only to try again
        then = f"run `flow pull {ref}` again to resume" if resumable else "then pull again"
        super().__init__(f"pulling {ref} failed: {reason}; {then}")


class InvalidInput(FlowError):
    """A node's input value cannot be used (found while running): names the input and what to do.

    Raised by nodes for input errors that the schema cannot express (a 1x1 image, a file that is
    not an image, a JSON path that does not exist); the gateway answers it 422, not 500.
    """

    kind = "invalid_input"
    status = 422

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
    status = 503


# -- backends: servers and libraries flow calls ---------------------------------------------------

class BackendUnavailable(FlowError):
    """A backend (Ollama, an OpenAI-compatible server, a model hub) did not answer, or is busy: retry later."""

    kind = "backend_unavailable"
    status = 503


class OllamaUnavailable(BackendUnavailable):
    """The Ollama server did not answer (not running, wrong URL)."""

    kind = "ollama_unavailable"


class BackendFailed(FlowError):
    """A backend answered, but with an error or an answer flow cannot use (the upstream's fault, not the caller's)."""

    kind = "backend_failed"
    status = 502


class RemoteRateLimited(FlowError):
    """A remote provider (AI Horde) answered 429: too many requests; wait, or use an API key with a higher limit."""

    kind = "rate_limited"
    status = 429


class RemoteRefused(FlowError):
    """A remote provider refused the request (AI Horde's 403: not enough kudos, an anonymous key's limits)."""

    kind = "remote_refused"
    status = 502


class PrivacyRefused(FlowError):
    """A request would leave this machine while privacy is strict."""

    kind = "privacy_refused"
    status = 403


class MediaFileError(FlowError):
    """Writing or reading an audio or video file failed (encoder error, unsupported format)."""

    kind = "media_file"
    status = 500


class UnsafePath(FlowError):
    """A path that would leave its root folder (``..``, absolute, a symlink pointing out), or is not servable."""

    kind = "unsafe_path"
    status = 404


# -- outbound fetches (engine/fetch.py, the one SSRF guard) ---------------------------------------

class BadURL(FlowError):
    """A URL flow was asked to fetch is malformed, not http(s), or carries credentials."""

    kind = "bad_url"
    status = 400


class FetchRefused(FlowError):
    """A URL resolves to an address flow does not fetch (loopback, private, metadata...): names the fix."""

    kind = "fetch_refused"
    status = 403


class FetchLimit(FlowError):
    """A fetched resource breaks a limit: too large, or not of a content type the caller takes."""

    kind = "fetch_limit"
    status = 422


class FetchFailed(FlowError):
    """A fetch did not succeed: no such host, no answer, too slow, an HTTP error, too many redirects."""

    kind = "fetch_failed"
    status = 502


# -- the job queue --------------------------------------------------------------------------------

class QueueFull(FlowError):
    """Too many jobs wait already; the caller should retry after ``retry_after`` seconds."""

    kind = "queue_full"
    status = 429

    def __init__(self, limit: int, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"the queue is full ({limit} jobs wait); retry in about {retry_after} s")


class JobNotFound(FlowError):
    """No job has this id."""

    kind = "not_found"
    status = 404

    def __init__(self, job_id: str):
        super().__init__(f"no job {job_id[:100]!r}; `GET /jobs` lists them")


class ProductNotFound(FlowError):
    """No product has this id (engine/products.py)."""

    kind = "not_found"
    status = 404

    def __init__(self, product_id: str):
        super().__init__(f"no product {str(product_id)[:100]!r}; `GET /products` lists them")


class JobEnded(FlowError):
    """The job already ended, so it cannot be cancelled."""

    kind = "conflict"
    status = 409


# -- requests (raised by the gateway before anything runs) ----------------------------------------

class InvalidRequest(FlowError):
    """The request itself is malformed (not JSON, wrong shape, bad query value)."""

    kind = "invalid_request"
    status = 400

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = problems or []


class Unauthorized(FlowError):
    """The API token is missing or wrong."""

    kind = "unauthorized"
    status = 401


class Forbidden(FlowError):
    """The request came from somewhere this server does not answer (a foreign Host or Origin)."""

    kind = "forbidden"
    status = 403


class TooLarge(FlowError):
    """The request body is larger than the server takes."""

    kind = "too_large"
    status = 413


class UnsupportedMediaType(FlowError):
    """The body's Content-Type is not one the route takes."""

    kind = "unsupported_media_type"
    status = 415


def named_errors() -> dict[str, type[FlowError]]:
    """Every error kind flow declares, with its class (the one error table)."""
    found, stack = {}, [FlowError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.kind, cls)
        stack.extend(cls.__subclasses__())
    return found


def status_of(kind: str | None, default: int = 500) -> int:
    """The HTTP status of an error kind (as job records store it); ``default`` for a kind nobody declared."""
    cls = named_errors().get(kind or "")
    return cls.status if cls is not None else default


class NoEmbeddedWorkflow(InvalidWorkflow):
    """A file holds no workflow flow can read back: not a file flow saved, saved without one, broken or hostile."""

    kind = "no_embedded_workflow"
    status = 400

    def __init__(self, message: str):
        super().__init__([Problem(message)])
        self.args = (message,)  # the message alone, not "1 problem in the workflow: ..."
