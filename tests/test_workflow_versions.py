"""Node versions in workflow documents: stamped when saved, upgraded or refused (naming the node) when loaded."""

from __future__ import annotations

import pytest

from engine import INT, Engine, Input, InvalidWorkflow, Node, NullCache, Output, Registry, Workflow
from engine.upgrade import stamp_versions


class Scale(Node):
    """Multiply a number (version 3: input `by`, called `factor` in version 2; version 1 cannot be upgraded)."""

    type = "test.scale"
    version = 3
    blocking = False
    inputs = {"x": Input(INT, "the number"), "by": Input(INT, "the factor", default=2)}
    outputs = {"y": Output(INT, "x * by")}

    def run(self, ctx, x, by):
        return {"y": x * by}

    @classmethod
    def upgrade(cls, version, inputs):
        if version == 1:
            raise ValueError("version 1 scaled by a float, which this version cannot take")
        if "factor" in inputs:
            inputs["by"] = inputs.pop("factor")
        return inputs


class Plain(Node):
    """Pass a number on (version 2, no upgrade declared)."""

    type = "test.plain"
    version = 2
    blocking = False
    inputs = {"x": Input(INT, "the number")}
    outputs = {"x": Output(INT, "the same number")}

    def run(self, ctx, x):
        return {"x": x}


class Broken(Node):
    """A node whose upgrade writes a malformed link."""

    type = "test.broken"
    version = 2
    inputs = {"x": Input(INT, "the number", default=0)}
    outputs = {"x": Output(INT, "the same number")}

    def run(self, ctx, x):
        return {"x": x}

    @classmethod
    def upgrade(cls, version, inputs):
        return {"x": {"from": "nowhere"}}


@pytest.fixture
def registry():
    return Registry([Scale, Plain, Broken])


def doc(**nodes):
    return {"nodes": nodes, "outputs": {"y": {"from": "s", "output": "y"}}} if "s" in nodes else {"nodes": nodes}


def refused(registry, document):
    with pytest.raises(InvalidWorkflow) as info:
        Workflow.from_dict(document).upgrade(registry)
    return info.value.problems


def test_versions_older_node_is_upgraded_by_its_declared_upgrade(registry, tmp_path):
    saved = doc(s={"type": "test.scale", "version": 2, "inputs": {"x": 5, "factor": 3}})
    workflow = Workflow.from_dict(saved)
    workflow.upgrade(registry)
    assert workflow.doc["nodes"]["s"] == {"type": "test.scale", "version": 3, "inputs": {"x": 5, "by": 3}}
    assert dict(workflow.nodes["s"].literals) == {"x": 5, "by": 3}
    assert saved["nodes"]["s"]["version"] == 2  # the caller's document is left as given
    engine = Engine(registry, cache=NullCache(), output_dir=tmp_path)
    try:
        assert engine.run_sync(workflow).outputs == {"y": 15}
    finally:
        engine.close()


def test_versions_current_or_absent_version_leaves_the_document_as_is(registry):
    for body in ({"type": "test.scale", "inputs": {"x": 1}}, {"type": "test.scale", "version": 3, "inputs": {"x": 1}},
                 {"type": "test.nope", "version": 7}):  # an unknown type is validation's to name
        workflow = Workflow.from_dict(doc(a=body))
        before = workflow.doc
        workflow.upgrade(registry)
        assert workflow.doc is before


@pytest.mark.parametrize("node, saved, words", [
    ("test.plain", 1, ["version 1", "version 2", "declares no upgrade from version 1"]),
    ("test.scale", 1, ["version 1", "version 3", "scaled by a float"]),
    ("test.plain", 3, ["version 3", "newer than this flow's version 2"]),
])
def test_versions_node_that_cannot_be_upgraded_is_named(registry, node, saved, words):
    problems = refused(registry, doc(ok={"type": "test.scale", "inputs": {"x": 1}},
                                     old={"type": node, "version": saved, "inputs": {"x": 1}}))
    assert [p.node for p in problems] == ["old"]
    assert all(word in problems[0].message for word in words), problems[0].message


def test_versions_every_node_that_cannot_be_upgraded_is_reported_at_once(registry):
    problems = refused(registry, doc(a={"type": "test.plain", "version": 1, "inputs": {"x": 1}},
                                     b={"type": "test.plain", "version": 9, "inputs": {"x": 1}}))
    assert {p.node for p in problems} == {"a", "b"}


def test_versions_upgrade_that_writes_a_malformed_document_is_refused(registry):
    problems = refused(registry, doc(b={"type": "test.broken", "version": 1}))
    assert problems and all(p.node == "b" for p in problems)


def test_versions_stamp_writes_each_known_nodes_version_without_changing_the_document(registry):
    saved = doc(s={"type": "test.scale", "inputs": {"x": 1}}, p={"type": "test.plain", "version": 1},
                u={"type": "test.nope"})
    stamped = stamp_versions(saved, registry)
    assert {nid: body.get("version") for nid, body in stamped["nodes"].items()} == {"s": 3, "p": 1, "u": None}
    assert "version" not in saved["nodes"]["s"]
    assert Workflow.from_dict(stamped).doc is stamped  # still a valid document


@pytest.mark.parametrize("version", [0, -1, 1.5, "2", True])
def test_versions_schema_refuses_a_version_that_is_not_a_positive_integer(version):
    with pytest.raises(InvalidWorkflow) as info:
        Workflow.from_dict({"nodes": {"a": {"type": "test.plain", "version": version}}})
    assert info.value.problems[0].node == "a"


def test_versions_engine_upgrades_when_it_compiles(registry, tmp_path):
    engine = Engine(registry, cache=NullCache(), output_dir=tmp_path)
    try:
        workflow = Workflow.from_dict(doc(s={"type": "test.scale", "version": 2, "inputs": {"x": 5, "factor": 3}}))
        assert engine.run_sync(workflow).outputs == {"y": 15}
        problems = engine.validate(Workflow.from_dict(doc(p={"type": "test.plain", "version": 3, "inputs": {"x": 1}})))
        assert [p.node for p in problems] == ["p"] and "newer" in problems[0].message
    finally:
        engine.close()
