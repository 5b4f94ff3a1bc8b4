"""One contract over every registered node: docstring, valid schemas, defaults, run signature."""

from __future__ import annotations

import inspect

import pytest
from jsonschema import Draft202012Validator

import nodes
from engine import Input, Node, Output, Registry, TEXT
from engine.registry import RegistryError

ALL = list(nodes.registry())


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.type)
def test_contract_node_declaration(cls):
    assert cls.summary(), "a one-line docstring is required"
    assert isinstance(cls.version, int) and cls.version >= 1
    assert cls.outputs, "a node produces at least one output"
    specs = dict(cls.inputs)
    if cls.variadic is not None:
        specs["<variadic>"] = cls.variadic
    for name, spec in specs.items():
        assert isinstance(spec, Input) and spec.description, name
        if spec.schema is not None:
            Draft202012Validator.check_schema(spec.schema)
            if not spec.required:
                assert spec.literal_problems(spec.default) == [], f"default of {name} breaks its schema"
    for name, spec in cls.outputs.items():
        assert isinstance(spec, Output) and spec.description, name
    params = list(inspect.signature(cls.run).parameters.values())
    assert [p.name for p in params[:2]] == ["self", "ctx"]
    named = {p.name for p in params[2:] if p.kind is not p.VAR_KEYWORD}
    assert named == set(cls.inputs)
    assert any(p.kind is p.VAR_KEYWORD for p in params) == (cls.variadic is not None)
    described = cls.describe()
    assert described["type"] == cls.type and set(described["inputs"]) == set(cls.inputs)


def test_contract_registry_rejects_duplicate_type():
    class Again(nodes.text.Join):
        """Same type id again."""

    with pytest.raises(RegistryError, match="declared twice"):
        Registry([nodes.text.Join, Again])


def test_contract_registry_rejects_run_signature_that_differs_from_inputs():
    class Wrong(Node):
        """Inputs and run disagree."""

        type = "test.wrong"
        inputs = {"a": Input(TEXT, "a")}
        outputs = {"b": Output(TEXT, "b")}

        def run(self, ctx, b):
            return {"b": b}

    with pytest.raises(RegistryError, match="differ from declared inputs"):
        Registry([Wrong])


@pytest.mark.parametrize("type_id", ["nonamespace", "Bad.Case", "a..b", ""])
def test_contract_registry_rejects_malformed_type_id(type_id):
    cls = type("X", (Node,), {"__doc__": "x.", "type": type_id, "run": lambda self, ctx: {}})
    with pytest.raises(RegistryError, match="must look like"):
        Registry([cls])


def test_contract_registry_is_a_value_not_global_state():
    first, second = nodes.registry(), nodes.registry()
    assert first is not second and len(first) == len(second) == len(nodes.NODES)
