"""Accepting a large graph fast: one pass parses a conforming document, compiling only validates,
and every problem is still reported, located by node and input, however many nodes share it."""

from __future__ import annotations

import random
import threading

import pytest

import engine.compile as compile_module
import engine.workflow as workflow_module
from engine import InvalidWorkflow, Workflow
from engine.workflow import _node, _parse_conforming
from test_workflow_schema import BASE, mutate
from zoo import link

LARGE = 3000  # nodes: above engine.large.LARGE_GRAPH, small enough for a quick test


def add_chain(n: int, broken: dict[int, dict] | None = None) -> dict:
    """n zoo.add nodes in a chain; ``broken`` replaces the inputs of some nodes."""
    nodes = {"n0": {"type": "zoo.add", "inputs": {"a": 1}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "zoo.add", "inputs": {"a": link(f"n{i - 1}", "sum"), "b": 1}}
    for i, inputs in (broken or {}).items():
        nodes[f"n{i}"]["inputs"] = inputs
    return {"name": "adds", "nodes": nodes, "outputs": {"sum": link(f"n{n - 1}", "sum")}}


def problems_of(engine, doc: dict) -> list:
    with pytest.raises(InvalidWorkflow) as info:
        engine.compile(Workflow.from_dict(doc))
    return info.value.problems


def test_large_submission_one_pass_parse_agrees_with_the_plain_parse():
    rng = random.Random(17)
    parsed = 0
    for _ in range(2000):
        doc = mutate(BASE, rng)
        found = _parse_conforming(doc)
        if found is None:
            continue
        parsed += 1
        nodes, versioned = found
        assert nodes == {nid: _node(nid, body) for nid, body in doc["nodes"].items()}
        assert versioned == any("version" in body for body in doc["nodes"].values())
    assert parsed > 50


def test_large_submission_conforming_document_never_reaches_jsonschema(engine, monkeypatch):
    def refuse():
        raise AssertionError("jsonschema ran on a conforming document")

    monkeypatch.setattr(workflow_module, "_validator", refuse)
    workflow = Workflow.from_dict(add_chain(LARGE))
    assert len(engine.compile(workflow).order) == LARGE


def test_large_submission_schema_problems_located_in_a_large_graph():
    doc = add_chain(LARGE, broken={10: {"a": {"from": "n9"}}, 2000: {"a": {"from": "n1999"}}})
    with pytest.raises(InvalidWorkflow) as info:
        Workflow.from_dict(doc)
    assert {(p.node, p.input) for p in info.value.problems} == {("n10", "a"), ("n2000", "a")}


def test_large_submission_every_node_sharing_a_problem_reports_it(engine):
    broken = {
        5: {"a": link("n4", "sum"), "b": 5000},  # above b's maximum
        6: {"a": link("n5", "sum"), "b": 5000},
        7: {"a": link("n6", "nope")},  # no such output
        8: {"a": link("n7", "nope")},
        9: {"a": link("n8", "sum"), "c": 1},  # no such input
        10: {"a": link("n9", "sum"), "c": 1},
        11: {"b": 1},  # a missing
        12: {"b": 1},
        13: {"a": link("ghost", "sum")},
        14: {"a": link("ghost", "sum")},
    }
    found = {(p.node, p.input): p.message for p in problems_of(engine, add_chain(LARGE, broken))}
    assert set(found) == {(f"n{i}", name) for i, name in ((5, "b"), (6, "b"), (7, "a"), (8, "a"), (9, "c"), (10, "c"),
                                                          (11, "a"), (12, "a"), (13, "a"), (14, "a"))}
    assert "1000" in found[("n5", "b")] and found[("n5", "b")] == found[("n6", "b")]
    assert "no output 'nope'" in found[("n7", "a")] and "'n7'" in found[("n8", "a")]
    assert "no input 'c'" in found[("n10", "c")]
    assert "missing required input" in found[("n12", "a")]
    assert "missing node 'ghost'" in found[("n14", "a")]


def test_large_submission_type_mismatch_reported_per_link(engine):
    doc = add_chain(LARGE)
    doc["nodes"]["t"] = {"type": "primitive.text", "inputs": {"value": "hi"}}
    for i in (100, 200):
        doc["nodes"][f"n{i}"]["inputs"]["b"] = link("t", "value")
    found = problems_of(engine, doc)
    assert [(p.node, p.input) for p in found] == [("n100", "b"), ("n200", "b")]
    assert all("type mismatch: 't'.value is TEXT, this input takes INT" in p.message for p in found)


def test_large_submission_compile_builds_steps_only_when_asked(engine, monkeypatch):
    calls = []
    real = compile_module._step
    monkeypatch.setattr(compile_module, "_step", lambda *args: calls.append(1) or real(*args))
    compiled = engine.compile(Workflow.from_dict(add_chain(LARGE)))
    assert not calls  # accepting a job only validates it
    steps = compiled.steps
    assert len(calls) == LARGE and compiled.steps is steps
    assert list(steps) == compiled.order


def test_large_submission_steps_built_once_under_concurrent_plans(engine):
    compiled = engine.compile(Workflow.from_dict(add_chain(LARGE)))
    seen, start = [], threading.Barrier(4)

    def read():
        start.wait()
        seen.append(compiled.steps)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4 and all(steps is seen[0] for steps in seen)


def test_large_submission_keys_come_with_the_first_plan_and_stay(engine):
    doc = add_chain(LARGE)
    compiled = engine.compile(Workflow.from_dict(doc))
    assert all(step.key is None for step in compiled.steps.values())
    first = engine.plan(compiled, compiled.bind({}))
    assert {nid: step.key for nid, step in compiled.steps.items()} == first.keys
    assert engine.plan(compiled, compiled.bind({})).keys == first.keys
    fresh = engine.compile(Workflow.from_dict(doc))  # another document object: the same keys
    assert engine.plan(fresh, fresh.bind({})).keys == first.keys


def test_large_submission_large_chain_runs_and_hits_the_cache(engine):
    doc = add_chain(LARGE)
    first = engine.run_sync(Workflow.from_dict(doc))
    assert first.outputs == {"sum": LARGE} and len(first.executed) == LARGE
    again = engine.run_sync(Workflow.from_dict(doc))
    assert again.outputs == {"sum": LARGE} and not again.executed
