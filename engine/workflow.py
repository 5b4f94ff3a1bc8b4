"""The workflow document: parsed once, checked against `workflow.schema.json`, then read-only."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from .errors import InvalidWorkflow, Problem

SCHEMA_PATH = Path(__file__).with_name("workflow.schema.json")


@dataclass(frozen=True, slots=True)
class Link:
    """A reference to another node's output."""

    node: str
    output: str


@dataclass(frozen=True, slots=True)
class NodeDecl:
    """One node of the document: its type, literal inputs and linked inputs."""

    id: str
    type: str
    literals: Mapping[str, Any]
    links: Mapping[str, Link]


@dataclass(frozen=True, slots=True)
class ParamDecl:
    """A named entry point bound to node inputs."""

    name: str
    description: str
    has_default: bool
    default: Any
    bind: tuple[tuple[str, str], ...]  # (node id, input name)


class Workflow:
    """A parsed, schema-valid workflow document. Build it with `load`, `loads` or `from_dict`."""

    __slots__ = ("doc", "name", "description", "nodes", "params", "outputs", "source", "__weakref__")

    def __init__(self, doc: dict, source: str | None = None):
        problems = schema_problems(doc)
        if problems:
            raise InvalidWorkflow(problems)
        self.doc = doc
        self.source = source
        self.name: str = doc.get("name") or (Path(source).stem if source else "workflow")
        self.description: str = doc.get("description", "")
        self.nodes: dict[str, NodeDecl] = {nid: _node(nid, body) for nid, body in doc["nodes"].items()}
        self.params: dict[str, ParamDecl] = {
            name: ParamDecl(
                name=name,
                description=body["description"],
                has_default="default" in body,
                default=body.get("default"),
                bind=tuple((b["node"], b["input"]) for b in body["bind"]),
            )
            for name, body in doc.get("params", {}).items()
        }
        declared = doc.get("outputs")
        self.outputs: dict[str, Link] | None = (
            None if declared is None else {name: Link(l["from"], l["output"]) for name, l in declared.items()}
        )

    @classmethod
    def from_dict(cls, doc: Any, source: str | None = None) -> "Workflow":
        """Check ``doc`` against the schema and parse it."""
        return cls(doc, source)

    @classmethod
    def loads(cls, text: str, source: str | None = None) -> "Workflow":
        """Parse JSON text."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"{source}: " if source else ""
            raise InvalidWorkflow(
                [Problem(f"{where}not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
            ) from exc
        return cls(doc, source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Workflow":
        """Read a workflow from a JSON file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidWorkflow([Problem(f"cannot read workflow file {str(path)!r}: {exc}")]) from exc
        return cls.loads(text, source=str(path))

    def to_dict(self) -> dict:
        """The document as given (JSON-ready)."""
        return self.doc


def _node(nid: str, body: dict) -> NodeDecl:
    literals, links = {}, {}
    for name, value in body.get("inputs", {}).items():
        if isinstance(value, dict) and "from" in value:
            links[name] = Link(value["from"], value["output"])
        else:
            literals[name] = value
    return NodeDecl(nid, body["type"], literals, links)


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_problems(doc: Any) -> list[Problem]:
    """Every way ``doc`` breaks the workflow schema, each located by node, input or param."""
    problems = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        problems.append(_locate(err))
    return problems


def _locate(err) -> Problem:
    path = [str(p) for p in err.absolute_path]
    node = input_ = param = None
    rest = path
    if path[:1] == ["nodes"] and len(path) >= 2:
        node, rest = path[1], path[2:]
        if rest[:1] == ["inputs"] and len(rest) >= 2:
            input_, rest = rest[1], rest[2:]
    elif path[:1] == ["params"] and len(path) >= 2:
        param, rest = path[1], path[2:]
    suffix = f" (at {'/'.join(rest)})" if rest else ""
    message = err.message
    if err.validator == "additionalProperties" and not path:
        message += "; a workflow has nodes, params, outputs, name, description and version"
    return Problem(message + suffix, node=node, input=input_, param=param)
