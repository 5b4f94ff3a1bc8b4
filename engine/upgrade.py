"""Node versions in saved workflows: written when a document is saved, upgraded when one is loaded.

Each node of a workflow document may carry ``version``: its type's version when it was saved
(none means the current one). A node saved with an older version is upgraded by its class's
:meth:`engine.node.Node.upgrade`, or refused with a problem naming the node and both versions; a
node saved with a newer version than this flow's is refused too.
"""

from __future__ import annotations

import copy

from .errors import Problem


def stamp_versions(doc: dict, registry) -> dict:
    """``doc`` with every node of a registered type carrying its type's version, for saving.

    A shallow copy: ``doc`` itself is left as is. A node that already carries a version keeps it.
    """
    nodes = {}
    for nid, body in doc["nodes"].items():
        cls = registry.get(body.get("type")) if type(body) is dict else None
        nodes[nid] = body if cls is None or "version" in body else {**body, "version": cls.version}
    return {**doc, "nodes": nodes}


def upgrade_document(doc: dict, registry) -> tuple[dict, list[Problem]]:
    """``doc`` with each node saved with an older version rewritten for the current one, and the problems.

    Returns ``doc`` itself when no node needs an upgrade, and with the problems when some node
    cannot have one; otherwise a copy whose upgraded nodes carry the current version. Nodes of
    unknown types are left to validation, which names them.
    """
    upgraded: dict[str, dict] = {}
    problems: list[Problem] = []
    for nid, body in doc["nodes"].items():
        saved = body.get("version")
        cls = registry.get(body["type"]) if saved is not None else None
        if cls is None or saved == cls.version:
            continue
        saved = int(saved)  # the schema lets 2.0 through as an integer
        if saved > cls.version:
            problems.append(Problem(f"saved with {cls.type} version {saved}, newer than this flow's version "
                                    f"{cls.version}; update flow to load it", node=nid))
            continue
        try:
            inputs = cls.upgrade(saved, copy.deepcopy(body.get("inputs", {})))
        except Exception as exc:  # however a node's upgrade fails, the problem is reported on its node
            reason = str(exc) if isinstance(exc, ValueError) else f"its upgrade failed: {type(exc).__name__}: {exc}"
            problems.append(Problem(f"saved with {cls.type} version {saved}, and this flow has version "
                                    f"{cls.version}: {reason}; re-create the node from the catalogue", node=nid))
            continue
        if type(inputs) is not dict:
            problems.append(Problem(f"{cls.type}.upgrade from version {saved} returned a "
                                    f"{type(inputs).__name__}, not the inputs (a dict)", node=nid))
            continue
        upgraded[nid] = {**body, "inputs": inputs, "version": cls.version}
    if problems or not upgraded:
        return doc, problems
    return {**doc, "nodes": {**doc["nodes"], **upgraded}}, []

