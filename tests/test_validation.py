"""Validation: every kind of problem, all reported at once, each located by node and input."""

from __future__ import annotations

import json

import pytest

from engine import InvalidWorkflow, Workflow
from zoo import G, chain, link


def problems_of(engine, doc_or_g, params=None):
    with pytest.raises(InvalidWorkflow) as info:
        wf = doc_or_g.build() if isinstance(doc_or_g, G) else Workflow.from_dict(doc_or_g)
        engine.compile(wf).bind(params or {})
    return info.value.problems


def test_validation_reports_every_kind_of_problem_together(engine):
    g = (G().node("unknown", "zoo.nope")
         .node("missing", "zoo.add")                                   # missing required input a
         .node("bad_literal", "zoo.add", a=1, b=5000)                  # b above its maximum
         .node("bad_link", "zoo.inc", x=link("ghost", "x"))            # link to a missing node
         .node("bad_output", "zoo.inc", x=link("bad_literal", "nope")) # link to a missing output
         .node("mismatch", "zoo.inc", x=link("txt", "value"))          # TEXT into INT
         .node("txt", "primitive.text", value="hi")
         .node("c1", "zoo.inc", x=link("c2", "x")).node("c2", "zoo.inc", x=link("c1", "x"))
         .param("unbound", ("nowhere", "x"))
         .output("o", "missing", "sum"))
    found = problems_of(engine, g)
    where = {(p.node, p.input, p.param) for p in found}
    assert ("unknown", None, None) in where
    assert ("missing", "a", None) in where
    assert ("bad_literal", "b", None) in where
    assert ("bad_link", "x", None) in where
    assert ("bad_output", "x", None) in where
    assert ("mismatch", "x", None) in where
    assert ("nowhere", "x", "unbound") in where
    assert any("cycle" in p.message and "'c1', 'c2'" in p.message for p in found)
    messages = "\n".join(map(str, found))
    assert "unknown node type 'zoo.nope'" in messages
    assert "1000" in messages and "missing node 'ghost'" in messages
    assert "type mismatch: 'txt'.value is TEXT, this input takes INT" in messages


def test_validation_unknown_param_and_bad_param_value_reported_together(engine):
    g = G().node("a", "zoo.add", a=1).param("b", ("a", "b"), default=0).output("s", "a", "sum")
    found = problems_of(engine, g, {"b": "ten", "c": 1})
    assert {(p.param, p.input) for p in found} == {("b", "b"), ("c", None)}


def test_validation_required_param_without_default(engine):
    g = G().node("a", "zoo.add").param("a", ("a", "a")).output("s", "a", "sum")
    wf = g.build()
    assert engine.compile(wf).params["a"].required
    with pytest.raises(InvalidWorkflow, match="param 'a': required"):
        engine.run_sync(wf)
    assert engine.run_sync(wf, {"a": 4}).outputs == {"s": 4}


def test_validation_param_default_and_binding_checked(engine):
    g = (G().node("a", "zoo.add", a=link("t", "value")).node("t", "primitive.int", value=1)
         .node("txt", "primitive.text", value="x")
         .param("p", ("a", "a"), ("txt", "value"), default="no")
         .param("q", ("t", "value"), ("t", "value"))
         .output("s", "a", "sum"))
    messages = [str(p) for p in problems_of(engine, g)]
    assert any("a param fills literal inputs only" in m for m in messages)
    assert any("different types" in m for m in messages)
    assert any("default: 'no' is not of type 'integer'" in m for m in messages)
    assert any("bound by two params" in m for m in messages)


@pytest.mark.parametrize("doc, fragment", [
    ({"nodes": {}}, "should be non-empty"),
    ({"nodes": {"a": {"type": "Bad Type"}}}, "does not match"),
    ({"nodes": {"a": {"type": "zoo.inc", "inputs": {"x": {"from": "b"}}}}}, "'output' is a required property"),
    ({"nodes": {"a": {"type": "zoo.inc", "extra": 1}}}, "Additional properties"),
    ({"nodes": {"a": {"type": "zoo.inc"}}, "params": {"p": {"bind": []}}}, "'description' is a required"),
    ({"nodes": {"a": {"type": "zoo.inc"}}, "outputs": {"o": "a.x"}}, "is not of type 'object'"),
    (["not", "an", "object"], "is not of type 'object'"),
])
def test_validation_schema_problems_are_located(doc, fragment):
    with pytest.raises(InvalidWorkflow) as info:
        Workflow.from_dict(doc)
    assert any(fragment in p.message for p in info.value.problems), info.value.problems


def test_validation_schema_problem_names_node_and_input():
    with pytest.raises(InvalidWorkflow) as info:
        Workflow.from_dict({"nodes": {"a": {"type": "zoo.inc", "inputs": {"x": {"from": "b", "output": 3}}}}})
    (problem,) = info.value.problems
    assert (problem.node, problem.input) == ("a", "x")


def test_validation_invalid_json_text_is_a_problem():
    with pytest.raises(InvalidWorkflow, match="not valid JSON"):
        Workflow.loads("{nodes: 1}")


def test_validation_literal_that_looks_like_a_link_is_a_link(engine):
    wf = Workflow.from_dict({"nodes": {"k": {"type": "zoo.const", "inputs": {"value": {"from": "x", "output": "y"}}}}})
    assert any("missing node 'x'" in p.message for p in engine.validate(wf))


@pytest.mark.slow  # over 3 s
def test_validation_100000_node_chain_validates_iteratively(engine):
    wf = Workflow.loads(json.dumps(chain(100_000).doc))
    compiled = engine.compile(wf)
    assert len(compiled.order) == 100_000 and compiled.order[0] == "n0"


def test_validation_variadic_inputs_and_template_placeholders(engine):
    ok = G().node("t", "text.template", template="{a} and {b}", a="x", b=link("n", "value")) \
        .node("n", "primitive.int", value=2).output("t", "t", "text")
    assert engine.run_sync(ok.build()).outputs == {"t": "x and 2"}
    missing = G().node("t", "text.template", template="{a} {missing} }", a="x")
    messages = [str(p) for p in problems_of(engine, missing)]
    assert any("placeholder {missing} has no input named 'missing'" in m for m in messages)
    assert any("unmatched brace" in m for m in messages)
    odd_name = G().node("t", "text.template", template="{a}", a="x", **{"not an identifier": 1})
    assert [p.input for p in problems_of(engine, odd_name)] == ["not an identifier"]
