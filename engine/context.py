"""The narrow view of the engine a node sees while it runs."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from .cancel import CancelToken
from .errors import NotConfigured
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
    registry: Any = None  # reproducible() writes each node's version from it

    def reproducible(self, pick: Mapping[str, dict] | None = None) -> dict:
        """A workflow document that reproduces this run as is: params default to the values used and
        every drawn seed is written in. Save nodes embed it in the files they write.

        ``pick`` singles one item out of a batch: nodes as a workflow writes them (an image's recipe),
        whose literal inputs are written over this run's (image i: seed + i, batch size 1). Only nodes
        of this run with the same type are touched, and an input this run links stays linked.
        """
        # Copied where it is written (the params, each written node), the rest shared with the run's
        # workflow: the result is read-only (it is encoded into files). A deep copy cost more than
        # the write of a small file.
        doc = dict(self.workflow)
        nodes = doc["nodes"] = dict(doc["nodes"])
        params = {name: {**body, "bind": [dict(b) for b in body["bind"]]} for name, body in doc.get("params", {}).items()}
        if "params" in doc:
            doc["params"] = params
        writes = {(node, self.seed_inputs[node]): seed for node, seed in self.seeds.items()}
        for node, decl in (pick or {}).items():
            mine = nodes.get(node)
            if not isinstance(mine, dict) or not isinstance(decl, dict) or mine.get("type") != decl.get("type"):
                continue  # a recipe from another run (served from cache) whose node is not here
            for name, value in (decl.get("inputs") or {}).items():
                if not _is_link(value) and not _is_link((mine.get("inputs") or {}).get(name)):
                    writes[(node, name)] = value
        for name in list(params):
            self._fill_param(params, name, writes)
        for node in {node for node, _ in writes}:
            nodes[node] = {**nodes[node], "inputs": dict(nodes[node].get("inputs") or {})}
        for (node, name), value in writes.items():
            nodes[node]["inputs"][name] = value
        if self.registry is None:
            return doc
        from .upgrade import stamp_versions

        return stamp_versions(doc, self.registry)  # a saved file says which version of each node made it

    def _fill_param(self, params: dict, name: str, writes: dict) -> None:
        """Give param ``name`` the value it had; an input that got another value (a seed each) leaves it."""
        param = params[name]
        used = self.used.get(name, _UNSET)
        values = [writes.get((b["node"], b["input"]), used) for b in param["bind"]]
        if values[0] is not _UNSET and all(v is not _UNSET and v == values[0] for v in values):
            param["default"] = values[0]  # one value for every input it binds: the param keeps them all
            for b in param["bind"]:
                writes.pop((b["node"], b["input"]), None)
            return
        # Its inputs got different values: those written leave the param (and get the literal).
        param["bind"] = [b for b in param["bind"] if (b["node"], b["input"]) not in writes]
        if not param["bind"]:
            del params[name]
        elif used is not _UNSET:
            param["default"] = used


#: a param with no value in this run (no default, none given)
_UNSET = object()


def _is_link(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"from", "output"}


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

    def require_models(self) -> Any:
        """The model manager; raise :class:`engine.errors.NotConfigured` when this engine was built without one."""
        if self.models is None:
            raise NotConfigured(f"{self.node_type} needs the model manager, and this engine was built without one; "
                                "run it through `flow` or the gateway, which configure one")
        return self.models

    def model_progress(self, report: Any) -> None:
        """A model manager's or store's report (pulling, loading) as this node's progress: pass it as
        ``progress=`` to ``ctx.models.run``/``lease``, so a load shows in flow's events, not a library's bars."""
        self.progress(report.completed or 0, report.total, f"{report.status} {report.ref}")

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
