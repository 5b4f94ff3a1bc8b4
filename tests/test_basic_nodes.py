"""The model-free nodes: template, join, json.get, saving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import NodeError
from zoo import G, link


def run(engine, g, **params):
    return engine.run_sync(g.build(), params).outputs


def test_template_fills_named_inputs_and_keeps_escaped_braces(engine):
    g = (G().node("t", "text.template", template="{{x}} {name} has {n} {tags}", name="Ann", n=3, tags=["a"])
         .output("t", "t", "text"))
    assert run(engine, g) == {"t": '{x} Ann has 3 ["a"]'}


def test_template_does_not_reach_into_objects(engine):
    g = G().node("t", "text.template", template="{name.__class__}", name="x").output("t", "t", "text")
    assert engine.validate(g.build())  # not a placeholder: a stray brace, refused before running


def test_join_uses_separator(engine):
    g = G().node("j", "text.join", a="a", b="b", separator="-").output("t", "j", "text")
    assert run(engine, g) == {"t": "a-b"}


@pytest.mark.parametrize("path, expected", [("a.b.1", 3), ("", {"a": {"b": [2, 3]}}), ("a.b.-1", 3)])
def test_json_get_follows_paths(engine, path, expected):
    g = (G().node("k", "primitive.json", value={"a": {"b": [2, 3]}})
         .node("g", "json.get", value=link("k", "value"), path=path).output("v", "g", "value").output("t", "g", "text"))
    out = run(engine, g)
    assert out["v"] == expected and out["t"] == json.dumps(expected)


def test_json_get_missing_path_uses_default_or_fails(engine):
    base = G().node("k", "primitive.json", value={"a": 1})
    with_default = G()
    with_default.doc = json.loads(json.dumps(base.doc))
    with_default.node("g", "json.get", value=link("k", "value"), path="b", default="none").output("t", "g", "text")
    assert run(engine, with_default) == {"t": "none"}
    base.node("g", "json.get", value=link("k", "value"), path="a.b").output("t", "g", "text")
    with pytest.raises(NodeError, match="path 'a.b' not found"):
        run(engine, base)


def test_json_save_writes_a_file(engine):
    g = G().node("k", "primitive.json", value={"a": [1]}).node("s", "json.save", value=link("k", "value"),
                                                                 prefix="data/x").output("p", "s", "path")
    path = Path(run(engine, g)["p"])
    assert json.loads(path.read_text()) == {"a": [1]} and path.name == "x_00001.json"


def test_save_refuses_prefix_leaving_output_folder(engine):
    g = G().node("s", "text.save", text="x", prefix="../escape").output("p", "s", "path")
    with pytest.raises(NodeError, match="not allowed"):
        run(engine, g)
