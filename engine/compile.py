"""Validation of a workflow against the registry, and its compiled, reusable form.

Every check is a small generator of `Problem`s; all of them run and every problem is reported
at once. Nothing here recurses, so a 100,000-node chain validates.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from .errors import InvalidWorkflow, Problem
from .graph import consumers, cycles, topological, workflow_graph
from .node import Input, Node
from .registry import Registry
from .types import ValueType
from .workflow import Link, NodeDecl, Workflow


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes of a value: the form literals take inside cache keys."""
    return _CANONICAL(value).encode()


# one encoder, not one per call (json.dumps with options builds one each time): every node of a compile
# and every keyed node of a run goes through it
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


@dataclass(slots=True, eq=False)
class Step:
    """One node, compiled: what to call, its fixed literals, its links and its cache-key parts."""

    id: str
    cls: type[Node]
    run: Callable[..., Any]
    literals: dict[str, Any]  # node defaults overlaid with the workflow's literals (params excluded)
    links: tuple[tuple[str, str, str], ...]  # (input, source node, source output)
    bound: tuple[str, ...]  # inputs filled per run by params
    seed_input: str | None
    dynamic: bool  # key changes per run: params, a drawn seed, a fingerprint or a volatile node feed it
    volatile: bool = False  # the node's output varies by design: never served from cache
    fingerprinted: bool = False  # the node reads the outside world: its fingerprint joins the key
    run_keyed: bool = False  # what it writes carries the run (Node.describes_run): the run's identity joins the key
    hits_checked: bool = False  # a cache hit is used only while the node's still_valid says so
    sources: tuple[str, ...] = ()  # distinct source nodes
    consumers: tuple[str, ...] = ()  # distinct consumer nodes
    # Neither is worked out at compile: accepting a 50k-node job does not wait for 50k hashes. The static
    # digest comes with the steps (built by the first run), a fixed key with the first plan (fixed_key).
    # Each is written once; a race writes the same bytes.
    static: bytes | None = None  # digest of type, version, literals and link structure
    key: bytes | None = None  # the whole key, when not dynamic


@dataclass(slots=True, eq=False)
class ParamInfo:
    """A param with its type and the input specs it fills."""

    name: str
    description: str
    type: ValueType
    specs: list[Input]
    bind: tuple[tuple[str, str], ...]
    has_default: bool
    default: Any
    # per bound input, the value used when the param is not given (None entry: none exists)
    fallbacks: list[tuple[Any] | None] = field(default_factory=list)

    @property
    def required(self) -> bool:
        """True when a run must give this param."""
        return not self.has_default and any(f is None for f in self.fallbacks)


class CompiledWorkflow:
    """A validated workflow, ordered and keyed once; each run only binds params.

    Its steps are built by the first caller that needs them (a run's plan, off the event loop for
    a large graph), not when it compiles: accepting a job only validates it.
    """

    __slots__ = ("_workflow", "order", "outputs", "params", "_steps", "_position", "_build", "_lock")

    def __init__(self, workflow: Workflow, build: Callable[[], dict[str, Step]], order: list[str],
                 outputs: dict[str, Link], params: dict[str, ParamInfo]):
        # Weakly: the engine caches compiled workflows in a WeakKeyDictionary keyed by the workflow,
        # and a value that held its key would keep both alive for good (every job's graph, forever).
        self._workflow = weakref.ref(workflow)
        self._build: Callable[[], dict[str, Step]] | None = build  # holds none of the workflow itself either
        self._steps: dict[str, Step] | None = None
        self._position: dict[str, int] | None = None
        self._lock = threading.Lock()  # two runs of one workflow may plan at once, each in a thread
        self.order = order
        self.outputs = outputs
        self.params = params

    @property
    def steps(self) -> dict[str, Step]:
        """Node id -> its compiled step, in topological order."""
        if self._steps is None:
            with self._lock:
                if self._steps is None:
                    self._steps = self._build()
                    self._build = None
        return self._steps

    @property
    def built_steps(self) -> dict[str, Step] | None:
        """:attr:`steps` if some caller built them, else None (without building them)."""
        return self._steps

    @property
    def position(self) -> dict[str, int]:
        """Node id -> its place in :attr:`order`."""
        if self._position is None:
            self._position = {nid: i for i, nid in enumerate(self.order)}  # a race builds the same dict
        return self._position

    @property
    def workflow(self) -> Workflow | None:
        """The workflow this was compiled from (None once nothing else holds it)."""
        return self._workflow()

    def bind(self, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Per node, the inputs params fill in this run; raises InvalidWorkflow with every problem."""
        problems: list[Problem] = []
        for name in values:
            if name not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                problems.append(Problem(f"unknown param; this workflow's params are: {known}", param=name))
        filled: dict[str, dict[str, Any]] = {}
        for name, info in self.params.items():
            given = name in values
            for (node, input_), spec, fallback in zip(info.bind, info.specs, info.fallbacks):
                if given:
                    value = values[name]
                    problems.extend(Problem(m, node=node, input=input_, param=name)
                                    for m in spec.literal_problems(value))
                elif info.has_default:
                    value = info.default
                elif fallback is not None:
                    value = fallback[0]
                else:
                    problems.append(Problem(f"required ({info.type.value}): {info.description}; "
                                            f"{missing_hint(name)}", param=name))
                    break
                filled.setdefault(node, {})[input_] = value
        if problems:
            raise InvalidWorkflow(problems)
        return filled

    def wanted(self, names: Iterable[str] | None) -> dict[str, tuple[str, str]]:
        """Result name -> (node, output) for the requested outputs (all when None); raises on unknown names."""
        names = list(self.outputs) if names is None else list(names)
        unknown = [n for n in names if n not in self.outputs]
        if unknown:
            known = ", ".join(self.outputs) or "none"
            raise InvalidWorkflow([Problem(f"unknown output {n!r}; this workflow's outputs are: {known}")
                                   for n in unknown])
        return {name: (self.outputs[name].node, self.outputs[name].output) for name in names}

    def effective_params(self, values: dict[str, Any]) -> dict[str, Any]:
        """Every param's value in a run with ``values``: given, else its default, else the literal it replaces."""
        effective = {}
        for name, info in self.params.items():
            if name in values:
                effective[name] = values[name]
            elif info.has_default:
                effective[name] = info.default
            elif info.fallbacks and info.fallbacks[0] is not None:
                effective[name] = info.fallbacks[0][0]
        return effective

    def params_from_text(self, raw: dict[str, str]) -> dict[str, Any]:
        """Turn ``NAME=VALUE`` strings (CLI) into typed param values; raises with every problem."""
        values, problems = {}, []
        for name, text in raw.items():
            info = self.params.get(name)
            if info is None:
                values[name] = text  # reported as unknown by bind()
                continue
            try:
                values[name] = parse_text(info.type, text)
            except ValueError as exc:
                problems.append(Problem(str(exc), param=name))
        if problems:
            raise InvalidWorkflow(problems)
        return values


def missing_hint(name: str) -> str:
    """How a missing required param is given, naming its JSON field; the CLI swaps in its own form."""
    return f'give it a value: "{name}"'


def parse_text(value_type: ValueType, text: str) -> Any:
    """Parse a command-line string as a value of ``value_type``."""
    if value_type is ValueType.TEXT:
        return text
    if value_type is ValueType.BOOL:
        lowered = text.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off"}:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if value_type is ValueType.INT:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if value_type is ValueType.FLOAT:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if value_type is ValueType.JSON:
            return text  # a bare word is a JSON string: --param name=world
        raise ValueError(f"expected JSON, got {text!r}") from None


def compile_workflow(workflow: Workflow, registry: Registry) -> CompiledWorkflow:
    """Validate ``workflow`` against ``registry`` and compile it; raises InvalidWorkflow with every problem."""
    workflow.upgrade(registry)  # nodes saved with an older version of their type; names those that cannot be
    kinds = _Kinds(registry)
    problems = [*_check_nodes(workflow, kinds), *_check_params(workflow, registry),
                *_check_outputs(workflow, registry)]
    readers = consumers(workflow)
    order = topological(workflow, readers)
    if order is None:  # the links loop: networkx names the cycles
        with workflow_graph(workflow) as graph:
            for cycle in cycles(graph):
                problems.append(Problem(f"cycle through nodes {', '.join(map(repr, cycle))}; links must not loop "
                                        "back", node=cycle[0]))
    if problems:
        raise InvalidWorkflow(problems)
    outputs = workflow.outputs if workflow.outputs is not None else _sink_outputs(workflow, registry, readers)
    params = _param_infos(workflow, registry)
    bound: dict[str, list[str]] = {}
    for info in params.values():
        for node, input_ in info.bind:
            bound.setdefault(node, []).append(input_)
    return CompiledWorkflow(workflow, functools.partial(_steps, workflow.nodes, kinds, bound, readers, order), order,
                            outputs, params)


def _steps(nodes: dict[str, NodeDecl], kinds: _Kinds, bound: dict[str, list[str]], readers: dict[str, list[str]],
           order: list[str]) -> dict[str, Step]:
    """Every node's step, in ``order``; a step is dynamic when it is itself or any of its sources is."""
    steps: dict[str, Step] = {}
    shapes: dict[tuple, bytes] = {}
    for nid in order:
        decl = nodes[nid]
        steps[nid] = step = _step(decl, kinds[decl.type], tuple(sorted(bound[nid])) if nid in bound else (),
                                  tuple(readers[nid]))
        step.static = _shared_static(step, shapes)
        if not step.dynamic:
            for source in step.sources:
                if steps[source].dynamic:
                    step.dynamic = True
                    break
    return steps


def step_key(step: Step, dynamic: bytes, upstream: list[bytes]) -> bytes:
    """Merkle key of a node: its static digest, its per-run literals and its sources' keys."""
    h = hashlib.blake2b(step.static or _static(step), digest_size=16)
    h.update(dynamic)
    for key in upstream:
        h.update(key)
    return h.digest()


def fixed_key(step: Step, upstream: list[bytes]) -> bytes:
    """The key of a step that is not dynamic (the same every run), computed once; ``upstream``: its sources' keys."""
    key = step.key
    if key is None:
        salt = canonical({step.seed_input: step.literals[step.seed_input]}) if step.seed_input else b""
        key = step.key = step_key(step, salt, upstream)
    return key


def _static(step: Step) -> bytes:
    """The digest of what a step's key never changes by: type, version, literals, link structure, bound inputs."""
    cls, seed_input, literals = step.cls, step.seed_input, step.literals
    # The seed enters the key with the per-run inputs (step_key's salt: Engine.plan), so a drawn seed and the
    # same seed written as a literal give one key: re-running with a reported seed hits the cache.
    keyed = literals if seed_input is None else {name: value for name, value in literals.items() if name != seed_input}
    static = step.static = hashlib.blake2b(
        canonical([cls.type, cls.version, keyed, [[i, o] for i, _, o in step.links], step.bound]),
        digest_size=16).digest()
    return static


def _shared_static(step: Step, shapes: dict[tuple, bytes]) -> bytes:
    """:func:`_static`, once per shape (type, scalar literals, link structure, bound inputs): a large graph
    repeats a few, and a lookup costs a fraction of encoding and hashing."""
    items = []
    for name, value in step.literals.items():
        kind = type(value)
        if kind not in _EXACT:
            return _static(step)
        items.append((name, kind, value))
    shape = (step.cls, tuple(items), tuple((i, o) for i, _, o in step.links), step.bound)
    static = shapes.get(shape)
    if static is None:
        static = shapes[shape] = _static(step)
    return static


# Scalars whose (type, value) pins their canonical JSON (not float: -0.0 == 0.0, but they encode apart)
_EXACT = frozenset({str, int, bool, type(None)})


class _Kind:
    """What every node of one type shares, found once per compile (a large graph has many nodes, few types)."""

    __slots__ = ("cls", "names", "spec", "required", "checks", "defaults", "seed_input", "run", "fingerprinted",
                 "hits_checked", "_fits")

    def __init__(self, cls: type[Node], registry: Registry):
        self.cls = cls
        self.names = frozenset(cls.inputs)
        #: cls.input_spec, looking up a declared input without a call into Python
        self.spec = cls.input_spec if cls.variadic is not None else cls.inputs.get
        self.required = tuple((name, spec) for name, spec in cls.inputs.items() if spec.required)
        self.checks = getattr(cls.check, "__func__", None) is not Node.check.__func__  # Node.check finds nothing
        self.defaults = {name: spec.default for name, spec in cls.inputs.items() if not spec.required}
        self.seed_input = next((name for name, spec in cls.inputs.items() if spec.seed), None)
        self.run = registry.instance(cls.type).run
        self.fingerprinted = cls.has_fingerprint()
        self.hits_checked = cls.checks_hits()
        self._fits: dict[tuple, list[str]] = {}  # (input, type, value) -> its problems, for scalar literals

    def literal_problems(self, name: str, spec: Input, value: Any) -> list[str]:
        """``spec.literal_problems(value)``, once per distinct scalar value of each input."""
        kind = type(value)
        if kind not in _SCALARS:
            return spec.literal_problems(value)
        memo = (name, kind, value)
        found = self._fits.get(memo)
        if found is None:
            found = self._fits[memo] = spec.literal_problems(value)
        return found


_SCALARS = frozenset({str, int, float, bool, type(None)})


class _Kinds(dict):
    """Node type -> its :class:`_Kind` (None for a type the registry lacks), filled as types are met."""

    def __init__(self, registry: Registry):
        super().__init__()
        self.registry = registry

    def __missing__(self, type_: str) -> _Kind | None:
        cls = self.registry.get(type_)
        kind = self[type_] = None if cls is None else _Kind(cls, self.registry)
        return kind


def _step(decl, kind: _Kind, bound: tuple[str, ...], readers: tuple[str, ...]) -> Step:
    cls, seed_input = kind.cls, kind.seed_input
    literals = {**kind.defaults, **decl.literals}
    for name in bound:
        literals.pop(name, None)
    if len(decl.links) == 1:  # the common case, without sorting
        ((name, link),) = decl.links.items()
        links: tuple[tuple[str, str, str], ...] = ((name, link.node, link.output),)
        sources: tuple[str, ...] = (link.node,)
    else:
        links = tuple(sorted((name, link.node, link.output) for name, link in decl.links.items()))
        sources = tuple(dict.fromkeys(src for _, src, _ in links))
    unset_seed = seed_input is not None and seed_input not in bound and literals.get(seed_input) is None
    # positional (in field order): keywords cost twice as much, 50k times
    return Step(decl.id, cls, kind.run, literals, links, bound, seed_input,
                bool(bound) or unset_seed or cls.volatile or kind.fingerprinted or cls.describes_run,  # dynamic
                cls.volatile, kind.fingerprinted, cls.describes_run, kind.hits_checked, sources, readers)


# Suggestions compare a word with every choice: among more than this many (a large graph's node
# ids) they would cost seconds per broken link, so none is offered.
_SUGGEST_AMONG = 1000


def _suggest(word: str, choices) -> str:
    choices = list(choices)
    if len(choices) > _SUGGEST_AMONG:
        return ""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _bound_inputs(workflow: Workflow) -> set[tuple[str, str]]:
    return {pair for decl in workflow.params.values() for pair in decl.bind}


def _check_nodes(workflow: Workflow, kinds: _Kinds) -> Iterator[Problem]:
    bound: dict[str, set[str]] = {}
    for node, input_ in _bound_inputs(workflow):
        bound.setdefault(node, set()).add(input_)
    registry = kinds.registry
    unknown: dict[str, str] = {}  # type -> its message: finding the suggestion is slow, so once per type
    linked: set[tuple] = set()  # (source type, output, input type) of links found sound: the same check, once
    nodes = workflow.nodes
    for nid, decl in nodes.items():
        kind = kinds[decl.type]
        if kind is None:
            if decl.type not in unknown:
                like = _suggest(decl.type, (c.type for c in registry))
                unknown[decl.type] = f"unknown node type {decl.type!r}{like}; `flow nodes` lists the known types"
            yield Problem(unknown[decl.type], node=nid)
            continue
        cls, literals, links = kind.cls, decl.literals, decl.links
        literal_ok = True
        if not (literals.keys() <= kind.names and links.keys() <= kind.names):  # some input is not declared
            for name in (*literals, *links):
                if cls.input_spec(name) is None:
                    literal_ok = False
                    known = ", ".join(cls.inputs) or "none"
                    yield Problem(f"{cls.type} has no input {name!r}{_suggest(name, cls.inputs)}; "
                                  f"its inputs are: {known}", node=nid, input=name)
        for name, value in literals.items():
            spec = kind.spec(name)
            if spec is not None:
                for message in kind.literal_problems(name, spec, value):
                    literal_ok = False
                    yield Problem(message, node=nid, input=name)
        own = bound.get(nid, ())
        for name, spec in kind.required:
            if name not in literals and name not in links and name not in own:
                yield Problem(f"missing required input ({spec.type.value}: {spec.description}); "
                              "give a literal, a link or bind a param", node=nid, input=name)
        for name, link in links.items():
            spec = kind.spec(name)
            if spec is None:
                continue
            source = nodes.get(link.node)
            sound = None if source is None else (source.type, link.output, spec.type)
            if sound in linked:
                continue
            found = list(_check_link(workflow, registry, link, spec.type, node=nid, input_=name))
            if found:
                yield from found
            elif sound is not None:
                linked.add(sound)
        if literal_ok and kind.checks:
            given = {*literals, *links, *own}
            for input_, message in cls.check(dict(literals), given):
                yield Problem(message, node=nid, input=input_)


def _check_link(workflow: Workflow, registry: Registry, link: Link, expected: ValueType | None,
                node: str | None, input_: str | None) -> Iterator[Problem]:
    source = workflow.nodes.get(link.node)
    if source is None:
        yield Problem(f"links to missing node {link.node!r}{_suggest(link.node, workflow.nodes)}",
                      node=node, input=input_)
        return
    source_cls = registry.get(source.type)
    if source_cls is None:
        return  # reported on the source node
    output = source_cls.outputs.get(link.output)
    if output is None:
        known = ", ".join(source_cls.outputs) or "none"
        yield Problem(f"node {link.node!r} ({source.type}) has no output {link.output!r}; its outputs are: {known}",
                      node=node, input=input_)
    elif expected is not None and not expected.accepts(output.type):
        yield Problem(f"type mismatch: {link.node!r}.{link.output} is {output.type.value}, "
                      f"this input takes {expected.value}", node=node, input=input_)


def _check_params(workflow: Workflow, registry: Registry) -> Iterator[Problem]:
    owner: dict[tuple[str, str], str] = {}
    for name, decl in workflow.params.items():
        types = set()
        for node, input_ in decl.bind:
            target = workflow.nodes.get(node)
            if target is None:
                yield Problem(f"bound to missing node {node!r}", param=name, node=node, input=input_)
                continue
            cls = registry.get(target.type)
            if cls is None:
                continue  # reported on the node
            spec = cls.input_spec(input_)
            if spec is None:
                yield Problem(f"bound to unknown input {input_!r} of {cls.type}", param=name, node=node, input=input_)
                continue
            if input_ in target.links:
                yield Problem("bound to an input that is a link; a param fills literal inputs only",
                              param=name, node=node, input=input_)
            if spec.type.is_media:
                yield Problem(f"{spec.type.value} inputs cannot be params; bind a param to a loader node's input",
                              param=name, node=node, input=input_)
            if (node, input_) in owner:
                yield Problem(f"input is bound by two params: {owner[(node, input_)]!r} and {name!r}",
                              param=name, node=node, input=input_)
            owner[(node, input_)] = name
            types.add(spec.type)
            if decl.has_default:
                for message in spec.literal_problems(decl.default):
                    yield Problem(f"default: {message}", param=name, node=node, input=input_)
        if len(types) > 1:
            yield Problem(f"bound to inputs of different types: {', '.join(sorted(t.value for t in types))}",
                          param=name)


def _check_outputs(workflow: Workflow, registry: Registry) -> Iterator[Problem]:
    for name, link in (workflow.outputs or {}).items():
        for problem in _check_link(workflow, registry, link, None, node=None, input_=None):
            yield Problem(f"output {name!r} {problem.message}")


def _param_infos(workflow: Workflow, registry: Registry) -> dict[str, ParamInfo]:
    infos = {}
    for name, decl in workflow.params.items():
        specs, fallbacks = [], []
        for node, input_ in decl.bind:
            target = workflow.nodes[node]
            spec = registry.get(target.type).input_spec(input_)
            specs.append(spec)
            if input_ in target.literals:
                fallbacks.append((target.literals[input_],))
            elif not spec.required:
                fallbacks.append((spec.default,))
            else:
                fallbacks.append(None)
        infos[name] = ParamInfo(name, decl.description, specs[0].type, specs, decl.bind,
                                decl.has_default, decl.default, fallbacks)
    return infos


def _sink_outputs(workflow: Workflow, registry: Registry, readers: dict[str, list[str]]) -> dict[str, Link]:
    """Without declared outputs, every output of every node that feeds no other node."""
    return {
        f"{nid}.{out}": Link(nid, out)
        for nid in workflow.nodes
        if not readers[nid]
        for out in registry.get(workflow.nodes[nid].type).outputs
    }
