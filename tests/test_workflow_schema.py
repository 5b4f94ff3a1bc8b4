"""The workflow schema file, and the fast predicate that must accept exactly what it accepts."""

from __future__ import annotations

import copy
import json
import random

import pytest

from engine.workflow import SCHEMA_PATH, _conforms, _validator

BASE = {
    "name": "n", "description": "d", "version": 1, "endpoint": "/text/gen",
    "nodes": {
        "a": {"type": "zoo.inc", "version": 2, "inputs": {"x": 1, "lit": {"not_from": 1}}, "meta": {"pos": [0, 0]}},
        "b": {"type": "zoo.add", "inputs": {"a": {"from": "a", "output": "x"}, "b": [1, {"k": "v"}]}},
    },
    "params": {"p": {"description": "p", "default": 3, "bind": [{"node": "a", "input": "x"}]}},
    "outputs": {"out": {"from": "b", "output": "sum"}},
}

ODD_VALUES = [
    None, True, False, 0, 1, -1, 1.0, 1.5, "", "x", "a.b", "zoo.inc", "Bad.Type", "a\n", "9id", "_x", "x" * 129,
    "x" * 201, "é", "/a", "/a/b/c/d/e", "/A", "/x/", "/x//y", "/" + "a" * 33, [], [1], [{}], [{"node": "a", "input": "x"}], [{"node": "a"}], {},
    {"from": "a", "output": "x"}, {"from": "a"}, {"from": 1, "output": "x"}, {"from": "a", "output": ""},
    {"from": "a", "output": "x", "extra": 1}, {"from": "bad id", "output": "x"}, {"type": "zoo.inc"},
    {"description": "d", "bind": [{"node": "a", "input": "x"}]}, {"k": 1},
]


def paths(value, prefix=()):
    """Every (container, key) location inside a document."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield prefix + (key,)
            yield from paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield prefix + (i,)
            yield from paths(child, prefix + (i,))


def mutate(doc, rng):
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        locations = list(paths(doc))
        if not locations:
            break
        *parent_path, key = rng.choice(locations)
        parent = doc
        for step in parent_path:
            parent = parent[step]
        action = rng.random()
        if action < 0.6:
            parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif action < 0.8 and isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "9 bad", "type", "from", "version", "x" * 130, "ok_name"])] = \
                copy.deepcopy(rng.choice(ODD_VALUES))
    return doc


def test_schema_file_is_a_valid_json_schema():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_fast_predicate_accepts_the_base_document():
    assert _validator().is_valid(BASE) and _conforms(BASE)


def test_fast_predicate_agrees_with_jsonschema_on_mutated_documents():
    rng = random.Random(20261123)
    validator = _validator()
    disagreements, valid_seen = [], 0
    for _ in range(4000):
        doc = mutate(BASE, rng)
        expected = validator.is_valid(doc)
        valid_seen += expected
        if _conforms(doc) != expected:
            disagreements.append(doc)
    assert not disagreements, json.dumps(disagreements[:3], indent=1)
    assert 50 < valid_seen < 3950  # the corpus holds both kinds


@pytest.mark.parametrize("doc", [None, [], "x", {"nodes": {}}, {"nodes": {"a": {"type": "x.y"}}, "version": True},
                                 {"nodes": {"a": {"type": "x.y"}}, "version": 2.0},
                                 *({"nodes": {"a": {"type": "x.y", "version": v}}}
                                   for v in (1, 2.0, 0, -1, 1.5, True, "1", None, 10**30, 1e300))])
def test_fast_predicate_agrees_on_edge_cases(doc):
    assert _conforms(doc) == _validator().is_valid(doc)
