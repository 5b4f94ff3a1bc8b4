"""How a node is declared: its ports (inputs, outputs) in one place, beside its `run`."""

from __future__ import annotations

import inspect
import json
import math
import sys
from typing import Any, ClassVar, Iterable, Mapping

from .errors import InvalidInput
from .types import FLOAT, INT, TEXT, ValueType

# Marks "no default given" inside Input only; it never leaves this module (see Input.required).
_NO_DEFAULT = object()

# Seeds stay below 2**53 so that JSON readers that use doubles (browsers) keep them exact.
SEED_MAX = 2**53 - 1

#: Presentation hints an input may carry (``Input(..., widget="model")``): the one vocabulary, with the
#: value types each fits. ``/nodes`` serves the hint with the input and the web page picks its control
#: from it, never from names or descriptions; no hint means the control the value type implies.
WIDGETS: dict[str, tuple[frozenset[ValueType], str]] = {
    "model": (frozenset({TEXT}), "a model reference: a picker of the local models and the default, or any other"),
    "multiline": (frozenset({TEXT}), "long text (a prompt, a template): a text area"),
    "file": (frozenset({TEXT}), "the path of a file in the input folder"),
    "image": (frozenset({TEXT}), "an image written inline as base64 or a data URL: a file picker fills it"),
    "seed": (frozenset({INT}), "a random seed, empty to draw one; every Seed() has it"),
}


class Input:
    """One input port: value type, JSON Schema constraints, default and description."""

    __slots__ = ("type", "description", "_default", "constraints", "seed", "widget", "schema", "_validator",
                 "_memo")

    def __init__(self, value_type: ValueType, description: str, /, *, default: Any = _NO_DEFAULT,
                 seed: bool = False, widget: str | None = None, **constraints: Any):
        # value_type is positional-only so that `type=` may be given as a JSON Schema constraint
        self.type = ValueType(value_type)
        self.description = description
        self._default = default
        self.seed = seed
        self.widget = _widget(self.type, widget, seed)
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
        """Messages saying how ``value`` breaks this input's schema (empty when it fits).

        Besides the JSON Schema: what :func:`json_problem` refuses (NaN, Infinity, lone surrogates,
        nesting deeper than MAX_DEPTH), and an integer too large for a FLOAT input.
        """
        if self.schema is None:
            return [f"{self.type.value} inputs take a link to a node output, not a literal value"]
        unfit = json_problem(value) if type(value) in _WALKED else None
        if unfit is not None:
            return [unfit]
        if self.type is FLOAT and type(value) is int and abs(value) > _FLOAT_MAX:
            return [f"{_shown(value)} is too large for a number (at most about 1.8e308)"]
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

    @property
    def checked_at_run(self) -> bool:
        """True when a value must be checked again as a run hands it to the node (see :meth:`accept`).

        Links only promise a value's type: an INT output may be 500 where this input wants a
        multiple of 8, a JSON output may be anything. Unconstrained scalar inputs need no check.
        """
        return self.schema is not None and (self.type is INT or bool(self.constraints))

    def accept(self, name: str, value: Any) -> Any:
        """``value`` as the node receives it as input ``name``; raises InvalidInput when it breaks the schema.

        An integral float given to an INT input (``2.0``, which JSON Schema calls an integer)
        becomes the int ``2``, so that every INT input is an int; ``2.5`` was refused before the run.
        """
        if self.type is INT and type(value) is float and value.is_integer():
            value = int(value)
        problems = self.literal_problems(value) if self.constraints or self.type is not INT else ()
        if problems or (self.type is INT and not _is_int_or_none(value)):
            raise InvalidInput(name, "; ".join(problems) or f"expected an integer, got {_shown(value)}")
        return value

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
        if self.widget is not None:
            entry["widget"] = self.widget
        entry["accepts"] = [t.value for t in self.type.accepted]  # output types a link may bring here
        return entry


def _widget(value_type: ValueType, widget: str | None, seed: bool) -> str | None:
    """The checked presentation hint of an input (a wrong one is a programming error, found at import)."""
    if seed:
        widget = widget or "seed"
    if widget is None:
        return None
    if widget not in WIDGETS:
        raise ValueError(f"unknown widget {widget!r}; the widgets are: {', '.join(WIDGETS)}")
    types, _ = WIDGETS[widget]
    if value_type not in types:
        raise ValueError(f"widget {widget!r} fits {'/'.join(sorted(t.value for t in types))} inputs, "
                         f"not {value_type.value}")
    if widget == "seed" and not seed:
        raise ValueError("widget 'seed' belongs to seed inputs; declare them with Seed()")
    return widget


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
    #: what this node writes carries its whole run (the workflow, every param's value, the seeds), as
    #: a save node's file does: its cache key covers the run, so another run with the same graph
    #: and values (and only such a run) is answered from its cache entry while :meth:`still_valid` holds
    describes_run: ClassVar[bool] = False

    def run(self, ctx, **inputs) -> dict[str, Any]:
        """Compute the outputs from the inputs."""
        raise NotImplementedError

    @classmethod
    def cheap(cls, inputs: dict[str, Any], run: Any) -> bool:
        """True when this blocking node's run with ``inputs`` is cheap enough to run inline (no thread hop).

        E.g. a save node writing a few kB; ``run`` is the run's :class:`engine.context.RunInfo`.
        """
        return False

    @classmethod
    def upgrade(cls, version: int, inputs: dict[str, Any]) -> dict[str, Any]:
        """The inputs of a node saved with an older ``version`` of this type, rewritten for the current one.

        Override it when a new version renames, drops or re-means an input. ``inputs`` is the saved
        node's own (literals and links as written; a copy, free to change); a param bound to a renamed
        input must be re-bound by hand. Raise ValueError saying why for a version that cannot be
        upgraded. By default none can: a node saved with an older version is refused, naming both.
        """
        raise ValueError(f"{cls.type} declares no upgrade from version {version}")

    @classmethod
    def check(cls, literals: dict[str, Any], given: set[str]) -> Iterable[tuple[str | None, str]]:
        """Cross-input checks before anything runs: yields (input, message).

        ``literals`` holds the literal inputs; ``given`` names every input the workflow sets
        (literal, link or param).
        """
        return ()

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], files, config: Mapping[str, Any] | None = None) -> Any:
        """What, outside the graph, this node's output depends on (e.g. a file's size and mtime).

        Nodes that read the outside world override it; the value (JSON-able) enters the cache
        key each run, so a changed file is read again while an unchanged one is served from
        cache. ``inputs`` holds the literal and param inputs; ``files`` the output folder;
        ``config`` the engine's configuration (what ``ctx.config`` is in a run, e.g. the input folder;
        a fingerprint that declares only ``(inputs, files)`` is called without it).
        """
        return None

    @classmethod
    def still_valid(cls, outputs: dict[str, Any], files) -> bool:
        """Whether this node's cached ``outputs`` may still be used: e.g. the file a save node wrote is
        still there, unchanged (``files``: the output folder). Checked on every cache hit of a node
        that overrides it; False runs the node again."""
        return True

    @classmethod
    def may_be_cheap(cls) -> bool:
        """True when the node overrides :meth:`cheap` (a blocking node that may run inline)."""
        return cls.cheap.__func__ is not Node.cheap.__func__

    @classmethod
    def has_fingerprint(cls) -> bool:
        """True when the node overrides :meth:`fingerprint`."""
        return cls.fingerprint.__func__ is not Node.fingerprint.__func__

    @classmethod
    def checks_hits(cls) -> bool:
        """True when the node overrides :meth:`still_valid` (its cache hits are checked)."""
        return cls.still_valid.__func__ is not Node.still_valid.__func__

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


#: deepest nesting of arrays and objects a JSON literal may have (the engine and encoders recurse per level)
MAX_DEPTH = 100
_FLOAT_MAX = sys.float_info.max


def json_problem(value: Any) -> str | None:
    """What makes ``value`` unfit to travel as JSON, as a message; None when it is fit.

    NaN and Infinity (Python's JSON reader accepts them, no JSON writer may emit them), text
    with a lone UTF-16 surrogate (``"\\ud800"`` is valid JSON but no UTF-8 encoder takes it) and
    nesting deeper than :data:`MAX_DEPTH`. An explicit stack, so a deep value cannot exhaust
    recursion here; where the problem sits is worked out only once one is found.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() and not _encodable(item):
                return _located(value, item, _surrogate_message(item))
        elif kind is float:
            if not math.isfinite(item):
                name = "NaN" if item != item else ("-Infinity" if item < 0 else "Infinity")
                return _located(value, item, f"{name} is not a JSON number (numbers beyond ±1.8e308 read as "
                                             "Infinity); give a finite number")
        elif kind is dict or kind is list or kind is tuple:
            if depth >= MAX_DEPTH:
                return f"arrays and objects are nested more than {MAX_DEPTH} levels deep; flatten the value"
            if kind is dict:
                stack.extend((key, depth) for key in item if type(key) is str and not key.isascii())
                children = item.values()
            else:
                children = item
            stack.extend((child, depth + 1) for child in children if type(child) in _WALKED)
    return None


_WALKED = frozenset({str, float, dict, list, tuple})


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _surrogate_message(text: str) -> str:
    at = next(i for i, char in enumerate(text) if "\ud800" <= char <= "\udfff")
    return (f"text holds a lone surrogate \\u{ord(text[at]):04x} at character {at}, which is not valid Unicode; "
            "send the character itself (or a complete surrogate pair)")


def _located(value: Any, target: Any, message: str) -> str:
    """``message`` prefixed with where ``target`` (the very object) sits inside ``value``."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if item is target:
            return f"{where}: {message}" if where else message
        if type(item) is dict:
            for key, child in item.items():
                if key is target:
                    return f"{where} (a key): {message}" if where else f"a key: {message}"
                stack.append((child, f"{where}[{json.dumps(key)}]"))
        elif type(item) is list or type(item) is tuple:
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return message


def _is_int_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _shown(value: Any, limit: int = 60) -> str:
    """A short repr of ``value`` for messages (long strings and numbers are cut)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}…{text[-10:]} ({len(text)} characters)"


def _memo_key(value: Any) -> tuple | None:
    """A hashable key for small scalar literals (validation results are memoised on it)."""
    if value is None or isinstance(value, (bool, int, float)):
        return (type(value), value)
    if isinstance(value, str) and len(value) <= 256:
        return (str, value)
    return None


def _explain(err) -> str:
    """A jsonschema error as a sentence: where in the value, and what is wrong (long values cut short)."""
    where = "".join(f"[{json.dumps(p)}]" for p in err.absolute_path)
    message = err.message
    if isinstance(err.instance, (str, int)) and not isinstance(err.instance, bool):
        full = repr(err.instance)
        if len(full) > 60 and full in message:
            message = message.replace(full, _shown(err.instance))
    return f"{where}: {message}" if where else message
