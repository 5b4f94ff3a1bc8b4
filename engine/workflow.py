"""The workflow document: parsed once, checked against `workflow.schema.json`, then read-only.

The one change it may see: nodes saved with an older version of their type are upgraded, once,
against the registry that compiles it (:meth:`Workflow.upgrade`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from .errors import InvalidWorkflow, Problem
from .node import json_problem
from .upgrade import upgrade_document

SCHEMA_PATH = Path(__file__).with_name("workflow.schema.json")


# Link and NodeDecl are read-only by convention, not frozen: a frozen dataclass's __init__ costs three
# times a plain one's, and a 50k-node graph makes 100k of them. Link keeps its hash (unsafe_hash).
@dataclass(slots=True, unsafe_hash=True)
class Link:
    """A reference to another node's output."""

    node: str
    output: str


@dataclass(slots=True)
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

    __slots__ = ("doc", "name", "description", "endpoint", "nodes", "params", "outputs", "source", "_upgraded_for",
                 "_versioned", "_digest", "answer", "__weakref__")

    def __init__(self, doc: dict, source: str | None = None):
        # One pass checks a conforming document and parses its nodes; jsonschema runs only on one
        # that does not, to say where it breaks the schema.
        parsed = _parse_conforming(doc)
        problems = (schema_problems(doc) if parsed is None else []) or _unfit_text_problems(doc)
        if problems:
            raise InvalidWorkflow(problems)
        if parsed is None:  # the fast check refused what jsonschema accepts: parse it the plain way
            parsed = {nid: _node(nid, body) for nid, body in doc["nodes"].items()}, None
        self.doc = doc
        self.source = source
        self.name: str = doc.get("name") or (Path(source).stem if source else "workflow")
        self.description: str = doc.get("description", "")
        self.endpoint: str | None = doc.get("endpoint")
        self.answer: str = doc.get("answer", "job")  # an endpoint's 200: the job, or its outputs alone
        self.nodes: dict[str, NodeDecl] = parsed[0]
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
        self._upgraded_for = None  # the registry the node versions were last brought up to
        self._versioned: bool | None = parsed[1]  # whether a node carries a version (None: not known)
        self._digest: tuple[Any, str] | None = None  # (the doc it was computed from, the hash)

    def upgrade(self, registry) -> None:
        """Bring nodes saved with an older version of their type up to ``registry``'s, in place; once.

        Raises InvalidWorkflow naming every node that cannot be: saved with an older version its
        type declares no upgrade from, or with a newer version than the registry's. Afterwards
        :attr:`doc` is the upgraded document (what jobs store and save nodes embed). Compiling calls
        it first; nodes that carry no version (the common case) cost one look each.
        """
        if self._upgraded_for is registry:
            return
        if self._versioned is None:
            self._versioned = any("version" in body for body in self.doc["nodes"].values())
        if self._versioned:
            doc, problems = upgrade_document(self.doc, registry)
            if problems:
                raise InvalidWorkflow(problems)
            if doc is not self.doc:
                fresh = Workflow(doc, self.source)  # checks what the upgrades wrote against the schema
                self.doc, self.nodes, self._versioned = fresh.doc, fresh.nodes, fresh._versioned
        self._upgraded_for = registry

    def digest(self) -> str:
        """The hash the job store keeps this document under; computed once per document object."""
        if self._digest is None or self._digest[0] is not self.doc:
            from .jobstore import document_digest
            from .large import dumps

            self._digest = (self.doc, document_digest(dumps(self.doc)))
        return self._digest[1]

    @classmethod
    def from_dict(cls, doc: Any, source: str | None = None) -> "Workflow":
        """Check ``doc`` against the schema and parse it."""
        return cls(doc, source)

    @classmethod
    def loads(cls, text: str, source: str | None = None) -> "Workflow":
        """Parse JSON text."""
        where = f"{source}: " if source else ""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidWorkflow(
                [Problem(f"{where}not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
            ) from exc
        except RecursionError as exc:  # the reader recurses per level of nesting
            raise InvalidWorkflow([Problem(f"{where}arrays and objects are nested too deeply to read; "
                                           "flatten the document")]) from exc
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


def _unfit_text_problems(doc: dict) -> list[Problem]:
    """NaN, Infinity, lone surrogates or absurd nesting in the free-form parts of a schema-valid document.

    Node inputs and param defaults are checked against their inputs' specs when compiled (with
    the node and input named); what is checked here travels with the document (job store, files
    that embed it) and must stay encodable JSON as well.
    """
    problems = []
    for field in ("name", "description"):
        message = json_problem(doc.get(field))
        if message:
            problems.append(Problem(f"{field}: {message}"))
    for nid, body in doc["nodes"].items():
        meta = body.get("meta")
        message = json_problem(meta) if meta else None  # an absent or empty meta is fit
        if message:
            problems.append(Problem(f"meta: {message}", node=nid))
    for name, body in doc.get("params", {}).items():
        message = json_problem(body["description"])
        if message:
            problems.append(Problem(f"description: {message}", param=name))
    return problems


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
    """Every way ``doc`` breaks the workflow schema, each located by node, input or param.

    The schema is the source of truth and jsonschema reports the problems; a hand-written
    predicate that accepts exactly what the schema accepts (tests check the two agree)
    spares valid documents jsonschema's ~100 us per node.
    """
    if _conforms(doc):
        return []
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
        message += "; a workflow has nodes, params, outputs, name, description, version and endpoint"
    return Problem(message + suffix, node=node, input=input_, param=param)


# ---- fast path: mirrors workflow.schema.json; tests/test_workflow_schema.py holds them equal ----

_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_TOP_KEYS = frozenset({"name", "description", "version", "endpoint", "nodes", "params", "outputs"})
_ENDPOINT = re.compile(r"^(/[a-z0-9][a-z0-9_-]{0,31}){1,4}$")
_NODE_KEYS = frozenset({"type", "version", "inputs", "meta"})
_LINK_KEYS = frozenset({"from", "output"})
_PARAM_KEYS = frozenset({"description", "default", "bind"})
_BIND_KEYS = frozenset({"node", "input"})


def _matches(pattern: re.Pattern, value: Any) -> bool:
    # re.search, as jsonschema does, so both accept the same strings
    return isinstance(value, str) and pattern.search(value) is not None


def _is_link(value: Any) -> bool:
    return (type(value) is dict and value.keys() == _LINK_KEYS and _matches(_ID, value["from"])
            and isinstance(value["output"], str) and 1 <= len(value["output"]) <= 128)


def _is_integer(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer())


def _conforms(doc: Any) -> bool:
    """True when ``doc`` satisfies workflow.schema.json (a fast predicate, no messages)."""
    return _parse_conforming(doc) is not None


def _parse_conforming(doc: Any) -> tuple[dict[str, NodeDecl], bool] | None:
    """``doc``'s parsed nodes and whether any carries a version, when ``doc`` satisfies the schema; else None.

    Checking and parsing in one pass: a 50k-node graph is walked once, not three times.
    """
    if type(doc) is not dict or not doc.keys() <= _TOP_KEYS or "nodes" not in doc:
        return None
    if "name" in doc and not (isinstance(doc["name"], str) and len(doc["name"]) <= 200):
        return None
    if "description" in doc and not isinstance(doc["description"], str):
        return None
    if "endpoint" in doc and not _matches(_ENDPOINT, doc["endpoint"]):
        return None
    if "version" in doc and not (isinstance(doc["version"], str) or _is_integer(doc["version"])):
        return None
    parsed = _parse_nodes(doc["nodes"])
    if parsed is None or not _params_conform(doc.get("params", {})):
        return None
    outputs = doc.get("outputs", {})
    if type(outputs) is not dict:
        return None
    if not all(_matches(_NAME, name) and _is_link(link) for name, link in outputs.items()):
        return None
    return parsed


def _parse_nodes(nodes: Any) -> tuple[dict[str, NodeDecl], bool] | None:
    if type(nodes) is not dict or not nodes:
        return None
    decls: dict[str, NodeDecl] = {}
    types: set[str] = set()  # type names already matched: a large graph has few
    versioned = False
    id_ok = _ID.search
    for nid, node in nodes.items():
        if not (isinstance(nid, str) and id_ok(nid)) or type(node) is not dict or not node.keys() <= _NODE_KEYS:
            return None
        kind = node.get("type")
        if type(kind) is not str or kind not in types:
            if not _matches(_TYPE, kind):
                return None
            types.add(kind)
        if "meta" in node and type(node["meta"]) is not dict:
            return None
        if "version" in node:
            if not (_is_integer(node["version"]) and node["version"] >= 1):
                return None
            versioned = True
        inputs = node.get("inputs", _EMPTY)
        if type(inputs) is not dict:
            return None
        literals, links = {}, {}
        for name, value in inputs.items():
            if len(name) > 128:
                return None
            if type(value) is dict and "from" in value:
                # _is_link, inline; a source that is one of the nodes has its id checked as such
                source, output = value["from"], value.get("output")
                if not (value.keys() == _LINK_KEYS and isinstance(source, str) and (source in nodes or id_ok(source))
                        and isinstance(output, str) and 1 <= len(output) <= 128):
                    return None
                links[name] = Link(source, output)
            else:
                literals[name] = value
        decls[nid] = NodeDecl(nid, kind, literals, links)
    return decls, versioned


_EMPTY: dict = {}


def _params_conform(params: Any) -> bool:
    if type(params) is not dict:
        return False
    for name, param in params.items():
        if not _matches(_NAME, name) or type(param) is not dict or not param.keys() <= _PARAM_KEYS:
            return False
        if not isinstance(param.get("description"), str):
            return False
        bind = param.get("bind")
        if type(bind) is not list or not bind:
            return False
        for item in bind:
            if (type(item) is not dict or item.keys() != _BIND_KEYS or not _matches(_ID, item["node"])
                    or not isinstance(item["input"], str)):
                return False
    return True
