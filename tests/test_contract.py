"""One contract over every registered node: docstring, valid schemas, defaults, run signature."""

from __future__ import annotations

import inspect

import pytest
from jsonschema import Draft202012Validator

import nodes
from engine import IMAGE, INT, Input, Node, Output, Registry, Seed, TEXT, ValueType
from engine.node import WIDGETS
from engine.registry import RegistryError

ALL = list(nodes.registry())


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.type)
def test_contract_node_declaration(cls):
    # docstring, version, run's parameters vs the inputs: Registry checked them when it built ALL
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
    described = cls.describe()
    assert described["type"] == cls.type and set(described["inputs"]) == set(cls.inputs)
    for name, entry in described["inputs"].items():
        spec = cls.inputs[name]
        # the link rule as /nodes serves it: exactly the output types validation lets in
        assert set(entry["accepts"]) == {t.value for t in ValueType if spec.type.accepts(t)}, name
        assert entry["accepts"][0] == spec.type.value, name
        assert entry.get("widget") == spec.widget and (spec.widget is None or spec.widget in WIDGETS), name
        assert (entry.get("widget") == "seed") == spec.seed, name


def test_contract_catalogue_serves_hints_where_the_web_page_needs_them():
    catalogue = nodes.registry().describe()
    widget = {(t, n): s.get("widget") for t, e in catalogue.items() for n, s in e["inputs"].items()}
    assert widget[("image.generate", "model")] == widget[("text.generate", "model")] == "model"
    assert widget[("image.generate", "prompt")] == widget[("text.template", "template")] == "multiline"
    assert widget[("image.load", "path")] == "file" and widget[("image.load", "data")] == "image"
    assert widget[("image.generate", "seed")] == "seed" and widget[("image.generate", "width")] is None
    json_in = catalogue["json.get"]["inputs"]["value"]["accepts"]
    assert sorted(json_in) == ["BOOL", "FLOAT", "INT", "JSON", "TEXT"]
    assert catalogue["text.join"]["inputs"]["a"]["accepts"] == ["TEXT"]


@pytest.mark.parametrize("value_type, widget, message", [
    (TEXT, "slider", "unknown widget 'slider'"),
    (INT, "model", "fits TEXT inputs, not INT"),
    (IMAGE, "file", "fits TEXT inputs, not IMAGE"),
    (INT, "seed", "declare them with Seed"),
])
def test_contract_input_refuses_a_wrong_widget(value_type, widget, message):
    with pytest.raises(ValueError, match=message):
        Input(value_type, "x", widget=widget)


def test_contract_seed_input_carries_the_seed_widget():
    assert Seed().widget == "seed" and Seed().describe()["widget"] == "seed"


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


def test_contract_registry_rejects_an_upgrade_that_is_not_a_classmethod():
    class Old(Node):
        """Upgrade declared as a plain method."""

        type = "test.old"
        version = 2
        outputs = {"b": Output(TEXT, "b")}

        def run(self, ctx):
            return {"b": ""}

        def upgrade(self, version, inputs):
            return inputs

    with pytest.raises(RegistryError, match="must be a classmethod"):
        Registry([Old])


@pytest.mark.parametrize("type_id", ["nonamespace", "Bad.Case", "a..b", ""])
def test_contract_registry_rejects_malformed_type_id(type_id):
    cls = type("X", (Node,), {"__doc__": "x.", "type": type_id, "run": lambda self, ctx: {}})
    with pytest.raises(RegistryError, match="must look like"):
        Registry([cls])


def test_contract_registry_is_a_value_not_global_state():
    first, second = nodes.registry(), nodes.registry()
    assert first is not second and len(first) == len(second) == len(nodes.NODES)
