"""The one place networkx meets flow's types: a workflow as a directed graph of node ids."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from .workflow import Workflow


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


def topological_order(graph) -> list[str]:
    """Node ids so that every source comes before its consumers; stable (document order) across runs."""
    import networkx as nx

    return list(nx.topological_sort(graph))
