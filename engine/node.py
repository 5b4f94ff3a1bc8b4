"""How a node is declared: its ports (inputs, outputs) in one place, beside its `run`."""

from __future__ import annotations

import inspect
import json
from typing import Any, ClassVar, Iterable

from .types import INT, ValueType

# Marks "no default given" inside Input only; it never leaves this module (see Input.required).
_NO_DEFAULT = object()

# Seeds stay below 2**53 so that JSON readers that use doubles (browsers) keep them exact.
SEED_MAX = 2**53 - 1


class Input:
    """One input port: value type, JSON Schema constraints, default and description."""

    __slots__ = ("type", "description", "_default", "constraints", "seed", "schema", "_validator", "_memo")

    def __init__(self, value_type: ValueType, description: str, /, *, default: Any = _NO_DEFAULT,
                 seed: bool = False, **constraints: Any):
        # value_type is positional-only so that `type=` may be given as a JSON Schema constraint
        self.type = ValueType(value_type)
        self.description = description
        self._default = default
        self.seed = seed
        self.constraints = constraints
        self.schema = self._build_schema()
        self._validator = None
        self._memo: dict = {}

    @property
    def required(self) -> bool:
        """True when the input has no default: the workflow must give a literal or a link."""
        return self._default is _NO_DEFAULT

    @property
    def default(self) -> Any:
        """The default value (only meaningful when not ``required``)."""
        return None if self._default is _NO_DEFAULT else self._default

    def _build_schema(self) -> dict | None:
        base = self.type.literal_schema
        if base is None:
            return None
        schema = {**base, **self.constraints}
        if not self.required and self._default is None:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema

    def literal_problems(self, value: Any) -> list[str]:
        """Messages saying how ``value`` breaks this input's schema (empty when it fits)."""
        if self.schema is None:
            return [f"{self.type.value} inputs take a link to a node output, not a literal value"]
        memo_key = _memo_key(value)
        if memo_key is not None:
            found = self._memo.get(memo_key)
            if found is not None:
                return found
        if self._validator is None:
            from jsonschema import Draft202012Validator

            self._validator = Draft202012Validator(self.schema)
        messages = [_explain(err) for err in self._validator.iter_errors(value)]
        if memo_key is not None:
            if len(self._memo) >= 4096:
                self._memo.clear()
            self._memo[memo_key] = messages
        return messages

    def describe(self) -> dict:
        """The catalogue entry for this input (``/nodes``, forms, OpenAPI, ``--help``)."""
        entry: dict[str, Any] = {"type": self.type.value, "description": self.description,
                                 "required": self.required}
        if self.schema is not None:
            entry["schema"] = self.schema
        if not self.required:
            entry["default"] = self.default
        if self.seed:
            entry["seed"] = True
        return entry


def Seed(description: str = "random seed; leave unset to draw one (the seed used is reported)") -> Input:
    """A `seed` input: unset means the engine draws one and reports it."""
    return Input(INT, description, default=None, seed=True, minimum=0, maximum=SEED_MAX)


class Output:
    """One output port: value type and description."""

    __slots__ = ("type", "description")

    def __init__(self, value_type: ValueType, description: str, /):
        self.type = ValueType(value_type)
        self.description = description

    def describe(self) -> dict:
        """The catalogue entry for this output."""
        return {"type": self.type.value, "description": self.description}


class Node:
    """Base of every node: declare `type`, `version`, `inputs`, `outputs` and `run`.

    `run(self, ctx, **inputs)` returns a dict with one value per declared output. A plain
    `run` is blocking work and runs in a worker thread; set ``blocking = False`` for cheap
    work that runs inline, or write ``async def run`` for I/O-bound work.
    """

    type: ClassVar[str]
    version: ClassVar[int] = 1
    inputs: ClassVar[dict[str, Input]] = {}
    outputs: ClassVar[dict[str, Output]] = {}
    #: extra named inputs (any identifier) of this spec, passed to `run` as keyword arguments
    variadic: ClassVar[Input | None] = None
    #: False for cheap work: run inline on the executor loop, no thread hop
    blocking: ClassVar[bool] = True
    #: output varies by design (clock, files written): never served from cache
    volatile: ClassVar[bool] = False

    def run(self, ctx, **inputs) -> dict[str, Any]:
        """Compute the outputs from the inputs."""
        raise NotImplementedError

    @classmethod
    def check(cls, literals: dict[str, Any], given: set[str]) -> Iterable[tuple[str | None, str]]:
        """Cross-input checks before anything runs: yields (input, message).

        ``literals`` holds the literal inputs; ``given`` names every input the workflow sets
        (literal, link or param).
        """
        return ()

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], files) -> Any:
        """What, outside the graph, this node's output depends on (e.g. a file's size and mtime).

        Nodes that read the outside world override it; the value (JSON-able) enters the cache
        key each run, so a changed file is read again while an unchanged one is served from
        cache. ``inputs`` holds the literal and param inputs; ``files`` the output folder.
        """
        return None

    @classmethod
    def has_fingerprint(cls) -> bool:
        """True when the node overrides :meth:`fingerprint`."""
        return cls.fingerprint.__func__ is not Node.fingerprint.__func__

    @classmethod
    def input_spec(cls, name: str) -> Input | None:
        """The spec of input ``name`` (a declared one, or a variadic one), None if unknown."""
        spec = cls.inputs.get(name)
        if spec is None and cls.variadic is not None and name.isidentifier():
            return cls.variadic
        return spec

    @classmethod
    def is_async(cls) -> bool:
        """True when `run` is a coroutine function."""
        return inspect.iscoroutinefunction(cls.run)

    @classmethod
    def summary(cls) -> str:
        """The one-line docstring."""
        return (inspect.getdoc(cls) or "").strip().splitlines()[0] if cls.__doc__ else ""

    @classmethod
    def describe(cls) -> dict:
        """The catalogue entry of this node type."""
        entry = {
            "type": cls.type,
            "version": cls.version,
            "description": cls.summary(),
            "inputs": {name: spec.describe() for name, spec in cls.inputs.items()},
            "outputs": {name: spec.describe() for name, spec in cls.outputs.items()},
            "volatile": cls.volatile,
        }
        if cls.variadic is not None:
            entry["variadic"] = cls.variadic.describe()
        return entry


def _memo_key(value: Any) -> tuple | None:
    """A hashable key for small scalar literals (validation results are memoised on it)."""
    if value is None or isinstance(value, (bool, int, float)):
        return (type(value), value)
    if isinstance(value, str) and len(value) <= 256:
        return (str, value)
    return None


def _explain(err) -> str:
    """A jsonschema error as a sentence: where in the value, and what is wrong."""
    where = "".join(f"[{json.dumps(p)}]" for p in err.absolute_path)
    return f"{where}: {err.message}" if where else err.message
