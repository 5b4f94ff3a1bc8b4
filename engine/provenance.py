"""How a saved file says how it was made: one description, written by every save node, read back by one reader.

A description is ``{"params": ..., "workflow": ...}``: ``params`` are the parameters of the value
saved (node, model, prompt, seed...), ``workflow`` the whole document that re-makes it (params
defaulting to the values used, drawn seeds written in), or None when unknown. Each file format
keeps it where it can (PNG text chunks, EXIF, an audio comment tag, MP4 metadata), else in a
``<file>.json`` sidecar; :mod:`engine.embedded` reads it back from any of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from .context import RunInfo


def describe(run: RunInfo | None, params: Mapping[str, Any], *, pick: Mapping[str, dict] | None = None,
             alone: dict | None = None) -> dict:
    """The description a saved file carries: ``{"params", "workflow"}``.

    ``workflow`` is ``run.reproducible(pick)``: the run's whole document, with ``pick`` (an image's
    recipe nodes: seed + i, batch size 1) singling out one item of a batch. Without a run (a value
    written outside a graph) it is ``alone``, a stand-alone document, or None.
    """
    workflow = run.reproducible(pick) if run is not None else alone
    return {"params": dict(params), "workflow": workflow}


def encode(description: Mapping[str, Any]) -> str:
    """A description as the compact JSON text files store."""
    return json.dumps(description, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


def sidecar(path: str | Path) -> Path:
    """Where a file's description goes when its format cannot hold it: ``<file>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def rerunnable(found: Mapping[str, Any], registry=None,
               saved: Callable[[str], dict | None] | None = None) -> tuple[dict, dict]:
    """``(document, params)`` that re-run what a file carries (:func:`engine.embedded.read_description`).

    The document is the file's own workflow. Files written before every save embedded one may
    instead name a saved workflow (``{"workflow": NAME}``: ``saved(NAME)`` gives its document, run
    with the file's params), or carry only the params of the node that made the value (rebuilt
    as a one-node graph from ``registry``). The params are also written in as the defaults.
    Raises :class:`NoEmbeddedWorkflow` when none of these applies.
    """
    from .errors import NoEmbeddedWorkflow

    workflow, params = found.get("workflow"), found.get("params") or {}
    if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), dict):
        return workflow, {}
    name = workflow.get("workflow", workflow.get("name")) if isinstance(workflow, dict) else None
    doc = saved(name) if isinstance(name, str) and saved is not None else None
    if doc is not None:
        values = {k: v for k, v in params.items() if k in doc.get("params", {})}
        return _with_defaults(doc, values), values
    cls = registry.get(str(params.get("node"))) if registry is not None else None
    if cls is not None:
        inputs = {k: v for k, v in params.items() if k in cls.inputs}
        return {"name": cls.type, "nodes": {"gen": {"type": cls.type, "inputs": inputs}}}, {}
    raise NoEmbeddedWorkflow("the file carries no workflow flow can re-run; only files saved by flow's save "
                             "nodes (image.save, audio.save, video.save...) do")


def _with_defaults(doc: dict, values: Mapping[str, Any]) -> dict:
    doc = {**doc, "params": {name: dict(p) for name, p in doc.get("params", {}).items()}}
    for name, value in values.items():
        doc["params"][name]["default"] = value
    return doc
