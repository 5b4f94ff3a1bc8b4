"""A workflow as a directed graph of node ids: its order, and (the one place networkx meets flow's
types) its cycles.

The order and each node's consumers are plain dicts and lists (:func:`consumers`,
:func:`topological`): building a networkx graph of a 50k-node workflow took more than half of
its compile. networkx finds the cycles when there are some (:func:`workflow_graph`, :func:`cycles`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from .workflow import Workflow


def consumers(workflow: Workflow) -> dict[str, list[str]]:
    """Node id -> the nodes that read its outputs, each once, in document order (links to missing nodes left out)."""
    found: dict[str, list[str]] = {nid: [] for nid in workflow.nodes}
    for nid, decl in workflow.nodes.items():
        for link in decl.links.values():
            readers = found.get(link.node)
            if readers is not None and (not readers or readers[-1] != nid):
                readers.append(nid)  # a node's links are read together: a repeat is always the last reader
    return found


def topological(workflow: Workflow, readers: dict[str, list[str]]) -> list[str] | None:
    """Node ids so that every source comes before its consumers, generation by generation in document
    order (the order networkx's topological_sort gives); None when the links loop (then see :func:`cycles`)."""
    waiting = dict.fromkeys(workflow.nodes, 0)
    for consumers_ in readers.values():
        for nid in consumers_:
            waiting[nid] += 1
    generation = [nid for nid, count in waiting.items() if count == 0]
    order: list[str] = []
    while generation:
        order.extend(generation)
        following = []
        for nid in generation:
            for reader in readers[nid]:
                waiting[reader] -= 1
                if waiting[reader] == 0:
                    following.append(reader)
        generation = following
    return order if len(order) == len(waiting) else None


def to_graph(workflow: Workflow):
    """A ``networkx.DiGraph`` with an edge source -> consumer for every link to an existing node."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(workflow.nodes)
    graph.add_edges_from(
        (link.node, nid)
        for nid, decl in workflow.nodes.items()
        for link in decl.links.values()
        if link.node in workflow.nodes
    )
    return graph


@contextmanager
def workflow_graph(workflow: Workflow) -> Iterator:
    """:func:`to_graph`, emptied on exit.

    A networkx graph refers to itself (its cached views), so once dropped it waits for a full
    garbage collection, with its few dicts per node: for a 100k-node graph that pass alone
    stops every thread for a good part of a second. Emptied, those dicts go at once.
    """
    graph = to_graph(workflow)
    try:
        yield graph
    finally:
        graph.clear()


def cycles(graph) -> list[list[str]]:
    """Each cycle's node ids (strongly connected components, found iteratively, no recursion)."""
    import networkx as nx

    found = []
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1 or any(graph.has_edge(n, n) for n in component):
            found.append(sorted(component))
    return sorted(found)
