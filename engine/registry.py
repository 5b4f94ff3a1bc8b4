"""The node registry: a value built once from an explicit list of node classes."""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Callable, Iterable, Iterator

from .node import Node

TYPE_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class RegistryError(Exception):
    """A node class is declared wrongly (a programming error, found when the registry is built)."""


class Registry:
    """Maps namespaced type ids to node classes; refuses duplicates and malformed declarations.

    It also hands out the `run` that executes each type: the node's own, behind a check of the
    input values a run passes (see :func:`_checked_run`), so a node never sees ``2.0`` for an
    INT input, nor a linked value its declared constraints refuse.
    """

    __slots__ = ("_classes", "_instances")

    def __init__(self, classes: Iterable[type[Node]]):
        self._classes: dict[str, type[Node]] = {}
        for cls in classes:
            _check_declaration(cls)
            if cls.type in self._classes:
                other = self._classes[cls.type]
                raise RegistryError(
                    f"node type {cls.type!r} is declared twice: {_where(other)} and {_where(cls)}"
                )
            self._classes[cls.type] = cls
        # Nodes are stateless; one instance per class serves every run.
        self._instances = {type_id: _instance(cls) for type_id, cls in self._classes.items()}

    def get(self, type_id: str) -> type[Node] | None:
        """The class registered under ``type_id``, or None."""
        return self._classes.get(type_id)

    def instance(self, type_id: str) -> Node:
        """The shared instance whose `run` executes nodes of ``type_id``."""
        return self._instances[type_id]

    def __contains__(self, type_id: object) -> bool:
        return type_id in self._classes

    def __iter__(self) -> Iterator[type[Node]]:
        return iter(self._classes.values())

    def __len__(self) -> int:
        return len(self._classes)

    def describe(self) -> dict[str, dict]:
        """The catalogue of every node type (what ``flow nodes --json`` and ``/nodes`` serve)."""
        return {type_id: cls.describe() for type_id, cls in sorted(self._classes.items())}


def _instance(cls: type[Node]) -> Node:
    """The shared instance of ``cls``, its `run` behind the input check where the class needs one."""
    node = cls()
    checked = _checked_run(cls, node.run)
    if checked is not node.run:
        node.run = checked  # an instance attribute: the class itself is left as declared
    return node


def _checked_run(cls: type[Node], run: Callable[..., Any]) -> Callable[..., Any]:
    """``run`` with its inputs passed through `Input.accept` first (INT values as ints, constraints checked).

    Literals were validated before the run; links and params are only type-checked, so this is
    where a linked 500 for a multiple-of-8 width, or a linked non-list for a list input, becomes
    InvalidInput naming the input (the executor wraps it in NodeError). Only inputs that need
    it are visited: a class without INT or constrained inputs keeps its plain `run`.
    """
    specs = {name: spec for name, spec in cls.inputs.items() if spec.checked_at_run}
    extra = cls.variadic if cls.variadic is not None and cls.variadic.checked_at_run else None
    if not specs and extra is None:
        return run
    declared = cls.inputs

    def accept(inputs: dict[str, Any]) -> dict[str, Any]:
        for name, value in inputs.items():
            spec = specs.get(name) if name in declared else extra
            if spec is not None:
                inputs[name] = spec.accept(name, value)
        return inputs

    if cls.is_async():
        async def checked(ctx, **inputs):
            return await run(ctx, **accept(inputs))
    else:
        def checked(ctx, **inputs):
            return run(ctx, **accept(inputs))
    return functools.wraps(run)(checked)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_declaration(cls: type[Node]) -> None:
    """Cheap structural checks; schema validity is covered by the contract test."""
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise RegistryError(f"{cls!r} is not a Node subclass")
    type_id = getattr(cls, "type", None)
    if not isinstance(type_id, str) or not TYPE_ID.match(type_id):
        raise RegistryError(f"{_where(cls)}: type {type_id!r} must look like 'namespace.name'")
    if not isinstance(cls.version, int) or isinstance(cls.version, bool) or cls.version < 1:
        raise RegistryError(f"{_where(cls)}: version must be a positive integer, got {cls.version!r}")
    if not cls.summary():
        raise RegistryError(f"{_where(cls)}: a one-line docstring is required")
    if cls.run is Node.run:
        raise RegistryError(f"{_where(cls)}: run() is not implemented")
    if not isinstance(inspect.getattr_static(cls, "upgrade"), classmethod):
        raise RegistryError(f"{_where(cls)}: upgrade(version, inputs) must be a classmethod (it runs before any "
                            "instance exists, when a saved workflow is loaded)")
    params = list(inspect.signature(cls.run).parameters.values())[2:]  # after self, ctx
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_extra = any(p.kind is p.VAR_KEYWORD for p in params)
    if named != set(cls.inputs):
        raise RegistryError(
            f"{_where(cls)}: run() parameters {sorted(named)} differ from declared inputs {sorted(cls.inputs)}"
        )
    if takes_extra != (cls.variadic is not None):
        raise RegistryError(f"{_where(cls)}: run() takes **kwargs exactly when the node declares `variadic`")
