"""The narrow view of the engine a node sees while it runs."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from .cancel import CancelToken
from .paths import OutputFiles


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a run is: the workflow document, the params given, every param's value used, the seeds."""

    job_id: str
    workflow: dict
    params: dict[str, Any]
    used: dict[str, Any]
    seeds: dict[str, int]
    seed_inputs: dict[str, str]  # node -> the name of its seed input

    def reproducible(self) -> dict:
        """A workflow document that reproduces this run as is: params default to the values used and
        every drawn seed is written in. Save nodes embed it in the files they write."""
        import copy

        doc = copy.deepcopy(self.workflow)
        bound = {(b["node"], b["input"]): name for name, p in doc.get("params", {}).items() for b in p["bind"]}
        for name, param in doc.get("params", {}).items():
            if name in self.used:
                param["default"] = self.used[name]
        for node, seed in self.seeds.items():
            seed_input = self.seed_inputs[node]
            if (node, seed_input) in bound:
                doc["params"][bound[(node, seed_input)]]["default"] = seed
            else:
                doc["nodes"][node].setdefault("inputs", {})[seed_input] = seed
        return doc


@dataclass(slots=True)
class NodeContext:
    """What a node may use: models, output files, progress, cancellation, a logger, the GPU lock.

    Nothing else of the application is reachable from here, on purpose.
    """

    job_id: str
    node_id: str
    node_type: str
    models: Any  # the model manager (engine.models), or None where no manager is configured
    files: OutputFiles
    log: logging.Logger
    _cancel: CancelToken
    _progress: Callable[[float, float | None, str | None], None]
    _gpu_lock: threading.Lock
    #: the run this node belongs to (save nodes embed ``run.reproducible()`` in their files)
    run: RunInfo | None = None
    #: backend configuration by namespace, read-only (e.g. ``ctx.config.get("text")``)
    config: Mapping[str, Any] = field(default_factory=dict)

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress of this node (e.g. step 3 of 20); safe to call from any thread."""
        self._progress(done, total, message)

    @property
    def cancelled(self) -> bool:
        """True once the job has been asked to stop."""
        return self._cancel.cancelled

    def check_cancelled(self) -> None:
        """Raise :class:`engine.errors.Cancelled` if the job was cancelled; call it inside long loops."""
        self._cancel.raise_if_cancelled()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` once if the job is cancelled (at once if it already was); returns the unregister function.

        For blocking I/O: register what closes the stream, so a read blocked on a stalled server
        returns when the job is cancelled or times out. The callback runs on the cancelling thread,
        so it must be quick (shut a socket down, cancel a task). Unregister when the I/O is done.
        """
        return self._cancel.on_cancel(callback)

    @contextmanager
    def gpu(self) -> Iterator[None]:
        """Hold the engine-wide lock that serialises GPU work, giving up if the job is cancelled."""
        while not self._gpu_lock.acquire(timeout=0.05):
            self._cancel.raise_if_cancelled()
        try:
            yield
        finally:
            self._gpu_lock.release()
