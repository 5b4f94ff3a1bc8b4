"""Caller mistakes found while running are InvalidInput (the gateway's 422), never a bare exception (a 500);
INT inputs receive ints; NaN and Infinity are refused before anything runs."""

from __future__ import annotations

import json

import pytest

from engine import InvalidInput, InvalidWorkflow, NodeError, Workflow
from engine.errors import InvalidModelRef, NotConfigured
from zoo import G, link


def failure(engine, g: G, params=None) -> NodeError:
    with pytest.raises(NodeError) as caught:
        engine.run_sync(g.build(), params)
    return caught.value


def problems(engine, g: G, params=None) -> list:
    with pytest.raises(InvalidWorkflow) as caught:
        engine.compile(g.build()).bind(params or {})
    return caught.value.problems


def load(**inputs) -> G:
    return G().node("n", "image.load", **inputs).output("w", "n", "width")


# (graph, input named, words in the message); the failing node is always "n"
RUN_TIME_CASES = {
    "image.load of a folder": (lambda: load(path="."), "path", "is a folder"),
    "image.load of a missing file": (lambda: load(path="nope.png"), "path", "no file 'nope.png'"),
    "image.load of a non-image file": (lambda: load(path="notes.png"), "path", "not a readable image"),
    "image.load of a 999-character name": (lambda: load(path="a" * 999), "path", "cannot read"),
    "image.load of nothing": (lambda: load(), "data", "no image given"),
    "image.load of bad base64": (lambda: load(data="%%%"), "data", "not valid base64"),
    "image.load of empty base64": (lambda: load(data="===="), "data", "not valid base64"),
    "json.get of a missing path": (
        lambda: G().node("k", "primitive.json", value={"a": [1]})
        .node("n", "json.get", value=link("k", "value"), path="a.5").output("t", "n", "text"),
        "path", "path 'a.5' not found"),
    "json.get of a path that is not an index": (
        lambda: G().node("k", "primitive.json", value=[1, 2])
        .node("n", "json.get", value=link("k", "value"), path="--1").output("t", "n", "text"),
        "path", "path '--1' not found"),
    "json.get of a superscript digit": (
        lambda: G().node("k", "primitive.json", value=[1, 2])
        .node("n", "json.get", value=link("k", "value"), path="²").output("t", "n", "text"),
        "path", "not found"),
    "text.template linked with a missing placeholder": (
        lambda: G().node("k", "primitive.text", value="hi {who}")
        .node("n", "text.template", template=link("k", "value")).output("t", "n", "text"),
        "template", "placeholder {who} has no input named 'who'"),
    "text.template linked with a stray brace": (
        lambda: G().node("k", "primitive.text", value="a { b")
        .node("n", "text.template", template=link("k", "value")).output("t", "n", "text"),
        "template", "unmatched brace"),
    "a linked value above the input's maximum": (
        lambda: G().node("k", "primitive.int", value=5000)
        .node("n", "zoo.add", a=1, b=link("k", "value")).output("s", "n", "sum"),
        "b", "5000 is greater than the maximum of 1000"),
    "a linked JSON value of the wrong shape": (
        lambda: G().node("k", "primitive.json", value={"role": "user"})
        .node("n", "text.chat", messages=link("k", "value")).output("r", "n", "reply"),
        "messages", "is not of type 'array'"),
    "text.chat linked messages ending with the assistant": (
        lambda: G().node("k", "primitive.json", value=[{"role": "assistant", "content": "hi"}])
        .node("n", "text.chat", messages=link("k", "value")).output("r", "n", "reply"),
        "messages", "the last message must be the user's"),
    "image.save of an optional load that got nothing": (
        lambda: G().node("l", "image.load", optional=True)
        .node("n", "image.save", images=link("l", "image")).output("p", "n", "path"),
        "images", "no image"),
}


@pytest.mark.parametrize("case", RUN_TIME_CASES)
def test_input_errors_found_while_running_fail_as_invalid_input_naming_the_input(engine, case):
    build, input_, words = RUN_TIME_CASES[case]
    (engine.files.root / "notes.png").parent.mkdir(parents=True, exist_ok=True)
    (engine.files.root / "notes.png").write_text("not an image")
    failed = failure(engine, build())
    assert failed.node == "n" and isinstance(failed.cause, InvalidInput), repr(failed.cause)
    assert failed.cause.input == input_ and words in str(failed.cause)


@pytest.mark.parametrize(("node_type", "inputs", "input_"), [
    ("text.generate", {"prompt": "hi"}, "prompt"),
    ("text.evaluate", {"text": "hi"}, "text"),
    ("text.edit", {"text": "hi", "instruction": "fix it"}, "text"),
])
def test_input_errors_whitespace_text_by_param_is_invalid_input(engine, node_type, inputs, input_):
    # Literals are checked before the run; a param's value only against the schema (non-empty).
    g = G().node("n", node_type, **inputs).param("p", ("n", input_)).output("o", "n", "usage")
    failed = failure(engine, g, {"p": " \n\t"})
    assert isinstance(failed.cause, InvalidInput) and failed.cause.input == input_
    assert "only whitespace" in str(failed.cause)


@pytest.mark.parametrize(("fmt", "words"), [
    ({"$ref": "http://127.0.0.1:9/schema.json"}, "leaves the schema"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "points to nothing"),
    ({"$ref": "#nowhere"}, "names no $anchor"),
    ({"type": "nonsense"}, "is not a valid JSON Schema"),
])
def test_input_errors_text_generate_format_schema_that_cannot_be_used(engine, fmt, words):
    g = G().node("n", "text.generate", prompt="hi").param("f", ("n", "format")).output("t", "n", "text")
    failed = failure(engine, g, {"f": fmt})  # by param: check() never saw it
    assert isinstance(failed.cause, InvalidInput) and failed.cause.input == "format" and words in str(failed.cause)
    (problem,) = problems(engine, G().node("n", "text.generate", prompt="hi", format=fmt).output("t", "n", "text"))
    assert (problem.node, problem.input) == ("n", "format") and words in problem.message


def test_input_errors_text_generate_format_with_local_references_is_accepted(engine):
    fmt = {"$defs": {"a b": {"type": "string"}}, "type": "object",
           "properties": {"x": {"$ref": "#/$defs/a%20b"}, "y": {"$ref": "#"}, "z": {"$ref": "#here"}},
           "$anchor": "here"}
    assert engine.validate(G().node("n", "text.generate", prompt="hi", format=fmt).build()) == []


def test_input_errors_model_pull_without_a_manager_is_a_named_configuration_error(engine):
    failed = failure(engine, G().node("n", "model.pull", ref="hf:acme/tiny").output("r", "n", "ref"))
    assert isinstance(failed.cause, NotConfigured) and "model manager" in str(failed.cause)


@pytest.mark.parametrize("model", ["openai:../x", "openai:a/../b", "openai:.hidden"])
def test_input_errors_malformed_openai_model_literal_is_refused_before_running(engine, model):
    found = problems(engine, G().node("n", "text.generate", prompt="hi", model=model).output("t", "n", "text"))
    assert [(p.node, p.input) for p in found] == [("n", "model")]


def test_input_errors_malformed_model_ref_by_param_is_invalid_model_ref(engine):
    from engine.models import ModelManager, ModelStore

    engine.models = ModelManager(ModelStore(engine.files.root / "models"), device="cpu",
                                 gpu_budget=1 << 20, cpu_budget=1 << 20)
    g = G().node("n", "text.generate", prompt="hi").param("model", ("n", "model")).output("t", "n", "text")
    for model in ("openai:../x", "hf:../etc"):
        failed = failure(engine, g, {"model": model})
        assert isinstance(failed.cause, InvalidModelRef), (model, repr(failed.cause))


# -- INT inputs are ints ----------------------------------------------------------------------


def test_input_errors_integral_float_for_an_int_input_arrives_as_an_int(engine):
    g = (G().node("i", "primitive.int", value=2.0).node("a", "zoo.add", a=link("i", "value"), b=3.0)
         .param("b", ("a", "b")).output("v", "i", "value").output("s", "a", "sum"))
    for params in ({}, {"b": 4.0}):
        out = engine.run_sync(g.build(), params).outputs
        assert type(out["v"]) is int and type(out["s"]) is int and out["v"] == 2


@pytest.mark.parametrize("params", [{}, {"b": 2.5}])
def test_input_errors_fractional_float_for_an_int_input_is_refused_naming_node_and_input(engine, params):
    g = G().node("a", "zoo.add", a=2.5 if not params else 1).param("b", ("a", "b"), default=0)
    g.output("s", "a", "sum")
    (problem,) = problems(engine, g, params)
    assert (problem.node, problem.input) == ("a", "b" if params else "a") and "not of type 'integer'" in problem.message


# -- NaN, Infinity and lone surrogates never enter, so never leave ----------------------------


@pytest.mark.parametrize(("node_type", "value", "shown"), [
    ("primitive.json", float("nan"), "NaN"),
    ("primitive.float", float("inf"), "Infinity"),
    ("primitive.float", float("-inf"), "-Infinity"),
    ("primitive.json", {"a": [1, float("nan")]}, '["a"][1]: NaN'),
    ("primitive.json", json.loads('{"big": 1e400}'), '["big"]: Infinity'),
    ("primitive.text", json.loads('"a\\ud800"'), "lone surrogate \\ud800 at character 1"),
    ("primitive.json", {"a": {"k\udfff": 1}}, '["a"] (a key): text holds a lone surrogate'),
])
def test_input_errors_unencodable_literals_are_refused_naming_node_and_input(engine, node_type, value, shown):
    (problem,) = problems(engine, G().node("k", node_type, value=value).output("v", "k", "value"))
    assert (problem.node, problem.input) == ("k", "value") and shown in problem.message


def test_input_errors_unencodable_name_and_meta_are_refused_when_the_workflow_is_read():
    doc = {"name": "a\ud800", "nodes": {"k": {"type": "primitive.int", "inputs": {"value": 1},
                                              "meta": {"x": float("nan")}}}}
    with pytest.raises(InvalidWorkflow) as caught:
        Workflow.from_dict(doc)
    assert [(p.node, p.message.split(":")[0]) for p in caught.value.problems] == [(None, "name"), ("k", "meta")]


def test_input_errors_nan_in_workflow_text_and_in_a_param_is_refused(engine):
    text = '{"nodes": {"k": {"type": "primitive.json", "inputs": {"value": [NaN]}}}}'
    with pytest.raises(InvalidWorkflow) as caught:
        engine.compile(Workflow.loads(text))
    assert [(p.node, p.input) for p in caught.value.problems] == [("k", "value")]
    g = G().node("k", "primitive.float", value=1.0).param("x", ("k", "value")).output("v", "k", "value")
    (problem,) = problems(engine, g, {"x": float("nan")})
    assert (problem.param, problem.node, problem.input) == ("x", "k", "value")


@pytest.mark.parametrize("depth", [101, 900])
def test_input_errors_literal_nested_too_deeply_is_refused_naming_node_and_input(engine, depth):
    text = '{"nodes": {"k": {"type": "primitive.json", "inputs": {"value": %s}}}}' % ("[" * depth + "]" * depth)
    with pytest.raises(InvalidWorkflow) as caught:
        engine.compile(Workflow.loads(text))
    (problem,) = caught.value.problems
    assert (problem.node, problem.input) == ("k", "value") and "nested more than 100 levels" in problem.message


def test_input_errors_document_nested_too_deeply_to_read_is_an_invalid_workflow():
    with pytest.raises(InvalidWorkflow, match="nested too deeply"):
        Workflow.loads('{"nodes": {"k": {"type": "primitive.json", "inputs": {"value": %s}}}}'
                       % ("[" * 100_000 + "]" * 100_000))


def test_input_errors_integer_too_large_for_a_float_input_is_refused(engine):
    (problem,) = problems(engine, G().node("k", "primitive.float", value=10**400).output("v", "k", "value"))
    assert problem.input == "value" and "too large" in problem.message and len(problem.message) < 200


# -- file names -------------------------------------------------------------------------------


@pytest.mark.parametrize(("save_type", "inputs"), [
    ("text.save", {"text": "x"}),
    ("json.save", {"value": 1}),
    ("image.save", {"images": link("src", "image")}),
    ("audio.save", {"audio": link("src", "audio")}),
    ("video.save", {"video": link("src", "video")}),
])
def test_input_errors_999_character_file_name_is_refused_before_running(engine, save_type, inputs):
    sources = {"image": ("image.load", {"optional": True}), "audio": ("music.generate", {"prompt": "x"}),
               "video": ("video.generate", {"prompt": "x"})}
    g = G()
    for value in inputs.values():
        if isinstance(value, dict):
            node_type, source_inputs = sources[value["output"].rstrip("s")]
            g.node("src", node_type, **source_inputs)
    g.node("s", save_type, prefix="a" * 999, **inputs).output("p", "s", "path")
    (problem,) = problems(engine, g)
    assert (problem.node, problem.input) == ("s", "prefix") and "too long" in problem.message
    assert len(problem.message) < 200  # the 999 characters are not echoed back
