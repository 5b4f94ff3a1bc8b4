"""The base of every save node: common inputs, the run's description, a fresh file in the output folder."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from .node import Input, Node, Output
from .provenance import describe, encode, sidecar
from .types import JSON, TEXT


class SaveNode(Node):
    """Base of the nodes that write a file: `prefix` and `metadata` inputs, the run's description in the file.

    A subclass declares ``inputs = {..., **SaveNode.common_inputs(prefix, where)}`` and calls
    :meth:`save` from its ``run``: that allocates ``<prefix>_NNNNN<suffix>`` through
    ``ctx.files.new_path``, hands the writer the description (by default the run's own: the
    whole re-runnable workflow, params and drawn seeds written in) and returns ``{"path": ...}``.
    """

    # Writing a file is the point: by default every run writes one. A save node that sets
    # ``volatile = False`` is cached like any node instead, its key covering the whole run it
    # describes (describes_run: the workflow, every param, the seeds): a repeat of the same run
    # answers the file written then, while that file is still as written (still_valid), and makes no copy.
    volatile = True
    describes_run = True
    outputs = {"path": Output(TEXT, "path of the file written")}
    #: a save of at most this many characters (from a workflow of at most CHEAP_NODES nodes, whose
    #: document the sidecar carries) runs inline: a thread hop costs more than writing it
    CHEAP_CHARS: ClassVar[int] = 16 << 10
    CHEAP_NODES: ClassVar[int] = 100

    @staticmethod
    def common_inputs(prefix: str, where: str | None) -> dict[str, Input]:
        """The inputs every save node declares: the file name prefix, and what to store as the workflow
        (``where`` it goes; None for a node that declares a `metadata` of its own)."""
        inputs = {"prefix": Input(TEXT, "file name prefix, may include sub-folders", default=prefix, maxLength=200)}
        if where is not None:
            inputs["metadata"] = Input(JSON, f"what to store as the workflow ({where}); null: the run's own "
                                             "workflow, params and seeds filled in, so that `flow run FILE` "
                                             "re-makes it", default=None)
        return inputs

    @staticmethod
    def description(ctx, params: Mapping[str, Any], metadata: Any = None, **picked) -> dict:
        """What the file carries (:func:`engine.provenance.describe`); a given ``metadata`` is the workflow."""
        found = describe(ctx.run, params, **picked)
        if metadata is not None:
            found["workflow"] = metadata
        return found

    @staticmethod
    def save(ctx, prefix: str, suffix: str, description: dict, write: Callable[[Path, dict], None]) -> dict:
        """``{"path": ...}`` of a fresh file that ``write(path, description)`` fills; removed if that fails."""
        path = ctx.files.new_path(prefix, suffix)
        try:
            write(path, description)
        except BaseException:
            path.unlink(missing_ok=True)  # no empty file left behind by a failed write
            raise
        ctx.files.wrote(path)  # a cached save answers this file while it stays as written (still_valid)
        return {"path": str(path)}

    @classmethod
    def still_valid(cls, outputs: dict[str, Any], files) -> bool:
        """A cached save (a save node that is not volatile) is answered while its file is as it wrote it."""
        return files.unchanged(outputs.get("path"))


def open_new(path: Path):
    """The empty file ``new_path`` made, opened to write text, without truncating it.

    Not ``open(path, "w")``: ext4 writes a file back at once when it was truncated and rewritten
    (its ``auto_da_alloc``), about 0.1 ms a file on the machines measured, for nothing here.
    """
    return open(path, "r+", encoding="utf-8")


def write_sidecar(path: Path, description: dict) -> None:
    """Store ``description`` in ``<file>.json`` beside ``path`` (for formats that cannot hold it)."""
    sidecar(path).write_text(encode(description), encoding="utf-8")


#: the attribute a saved media value carries: {job id: path, or list of paths}, of the latest few runs
SAVED_ATTR = "_flow_saved"
_KEEP_RUNS = 8  # a cached value is saved again by every run that uses it: remember only the latest runs
_saved_lock = threading.Lock()


def remember_saved(ctx, value: Any, saved: str | list[str]) -> None:
    """Note on ``value`` that this run's save node wrote it to ``saved`` (a path, or a list for a batch).

    The faces then show those files for an output of ``value`` instead of writing a copy
    (:func:`saved_files`). A value that cannot carry the note (slots) is simply written again.
    """
    job_id = getattr(ctx, "job_id", None)
    if value is None or not job_id:
        return
    with _saved_lock:
        runs = dict(getattr(value, SAVED_ATTR, None) or {})
        runs.pop(job_id, None)
        runs[job_id] = list(saved) if isinstance(saved, (list, tuple)) else str(saved)
        while len(runs) > _KEEP_RUNS:
            runs.pop(next(iter(runs)))
        try:
            object.__setattr__(value, SAVED_ATTR, runs)  # frozen dataclasses too: a note, not the value
        except (AttributeError, TypeError):
            pass


def saved_files(value: Any, job_id: str) -> str | list[str] | None:
    """The file (or list of files, a batch) a save node of run ``job_id`` wrote ``value`` to, else None."""
    runs = getattr(value, SAVED_ATTR, None)
    return runs.get(job_id) if isinstance(runs, dict) else None
