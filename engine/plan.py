"""Planning one run of a compiled workflow: prune, draw seeds, key every node, consult the cache.

The plan is pure bookkeeping over the compiled steps (no node runs here), so a large graph is
planned in a thread while the event loop serves other requests.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .cache import Cache
from .cancel import CancelToken
from .compile import CompiledWorkflow, canonical, fixed_key, step_key
from .node import SEED_MAX
from .paths import OutputFiles

# A plan checks for cancellation this often (in nodes), so a cancelled 100k-node run stops planning.
CHECK_EVERY = 1024


@dataclass(slots=True)
class Plan:
    """One run of a compiled workflow: what must execute, what the cache already holds."""

    order: list[str]  # nodes to execute, topologically ordered
    hits: dict[str, dict[str, Any]]  # node -> cached outputs
    keys: dict[str, bytes]
    filled: dict[str, dict[str, Any]]  # node -> inputs filled this run (params, drawn seeds)
    seeds: dict[str, int]
    roots: set[str]
    outputs: dict[str, tuple[str, str]]  # result name -> (node, output)
    # The run's counters, counted here (off the event loop for a large graph) and used up by the run:
    waiting: dict[str, int] = field(default_factory=dict)  # node to run -> its sources still to run
    uses: dict[str, int] = field(default_factory=dict)  # node -> nodes to run that read its outputs
    ready: list[str] = field(default_factory=list)  # nodes to run that wait for nothing, in order


def make_plan(compiled: CompiledWorkflow, filled: dict[str, dict[str, Any]], outputs: Iterable[str] | None,
              cache: Cache, files: OutputFiles, cancel: CancelToken | None = None,
              config: Mapping[str, Any] | None = None) -> Plan:
    """Prune to what the requested outputs need, draw seeds, key every node, consult the cache.

    Thread-safe (a large graph is planned off the event loop); raises Cancelled once ``cancel`` is.
    """
    check = cancel.raise_if_cancelled if cancel is not None else _nothing
    steps = compiled.steps
    wanted = compiled.wanted(outputs)
    roots = {node for node, _ in wanted.values()}
    # 1. Every ancestor of the roots (explicit stack: no recursion limit).
    relevant, stack = set(), list(roots)
    while stack:
        nid = stack.pop()
        if nid not in relevant:
            relevant.add(nid)
            stack.extend(steps[nid].sources)
    order = sorted(relevant, key=compiled.position.__getitem__)
    # 2. Per-run inputs and keys, in topological order; a key that is the same every run is kept on its step.
    filled_in: dict[str, dict[str, Any]] = {}
    seeds: dict[str, int] = {}
    keys: dict[str, bytes] = {}
    run_salt: bytes | None = None  # the run's identity, for the nodes whose output carries it
    for i, nid in enumerate(order):
        if not i % CHECK_EVERY:
            check()
        step = steps[nid]
        inputs = filled.get(nid)
        if step.seed_input is not None:
            seed = seeds.get(nid)
            if seed is None:
                seed = seeds[nid] = _seed(step, inputs)
            inputs = {**(inputs or {}), step.seed_input: seed}
        if inputs:
            filled_in[nid] = inputs
        if not step.dynamic:  # its sources are not either: their keys are in `keys` already
            keys[nid] = step.key or fixed_key(step, [keys[src] for _, src, _ in step.links])
            continue
        salt = canonical(inputs) if inputs else b""
        if step.fingerprinted:
            salt += canonical(_fingerprint(step.cls, {**step.literals, **(inputs or {})}, files, config))
        if step.run_keyed:
            if run_salt is None:
                run_salt = _run_salt(compiled, filled, steps, order[i + 1:], seeds)
            salt += run_salt
        if step.volatile:
            salt += secrets.token_bytes(16)  # never equal to any other run's key
        keys[nid] = step_key(step, salt, [keys[src] for _, src, _ in step.links])
    # 3. From the roots back: a cache hit needs none of its ancestors.
    hits: dict[str, dict[str, Any]] = {}
    needed, seen, stack = set(), set(), list(roots)
    while stack:
        nid = stack.pop()
        if nid in seen:
            continue
        seen.add(nid)
        if not len(seen) % CHECK_EVERY:
            check()
        step = steps[nid]
        found = None if step.volatile else cache.get(keys[nid])
        if found is not None and step.hits_checked and not step.cls.still_valid(found, files):
            found = None  # e.g. the file a save node wrote was removed since: it writes a new one
        if found is not None:
            hits[nid] = found
        else:
            needed.add(nid)
            stack.extend(step.sources)
    # 4. The run's counters: what each node waits for, how many read each node's outputs.
    order = [nid for nid in order if nid in needed]
    waiting: dict[str, int] = {}
    uses: dict[str, int] = {}
    for nid in order:
        sources = steps[nid].sources
        waiting[nid] = sum(src in needed for src in sources)
        for src in sources:
            uses[src] = uses.get(src, 0) + 1
    check()
    return Plan(
        order=order, hits=hits, keys=keys, filled=filled_in,
        seeds={nid: s for nid, s in seeds.items() if nid in needed or nid in hits},
        roots=roots, outputs=wanted, waiting=waiting, uses=uses,
        ready=[nid for nid in order if waiting[nid] == 0],
    )



def _nothing() -> None:
    return None


def _seed(step, inputs: dict[str, Any] | None) -> int:
    """The seed of a seeded step this run: given (a param or a literal), else drawn."""
    seed = _given_seed(step, inputs)
    return secrets.randbelow(min(SEED_MAX, 2**32)) if seed is None else seed


def _given_seed(step, inputs: dict[str, Any] | None) -> int | None:
    return (inputs or {}).get(step.seed_input, step.literals.get(step.seed_input))


def repeatable(compiled: CompiledWorkflow, plan: Plan, filled: dict[str, dict[str, Any]]) -> bool:
    """True when a run with the same ``filled`` inputs would plan the same keys as ``plan``: no node it
    covers is volatile or reads the outside world (a fingerprint), and no seed of it was drawn."""
    steps = compiled.steps
    for nid in plan.keys:  # every node the run covers has a key
        step = steps[nid]
        if step.volatile or step.fingerprinted:
            return False
        if step.seed_input is not None and _given_seed(step, filled.get(nid)) is None:
            return False
    return True


def _run_salt(compiled: CompiledWorkflow, filled: dict[str, dict[str, Any]], steps, later: list[str],
              seeds: dict[str, int]) -> bytes:
    """What a run-keyed node's key adds (:attr:`engine.node.Node.describes_run`): the run's identity.

    That is what such a node writes down (``RunInfo.reproducible``): the workflow document, the
    value of every param (what ``filled`` holds, given the document) and every seed of the run.
    The seeds of the nodes after it (``later``, in order) are drawn here, first. A drawn seed
    makes the identity new each run; so does a param value that has no canonical JSON form.
    """
    for nid in later:
        step = steps[nid]
        if step.seed_input is not None and nid not in seeds:
            seeds[nid] = _seed(step, filled.get(nid))
    workflow = compiled.workflow
    if workflow is None:
        return secrets.token_bytes(16)
    try:
        return workflow.digest().encode() + canonical(filled) + canonical(seeds)
    except (TypeError, ValueError):
        return secrets.token_bytes(16)


def _fingerprint(cls, inputs: dict[str, Any], files: OutputFiles, config: Mapping[str, Any] | None) -> Any:
    """``cls.fingerprint``, with the engine's configuration when it takes one (a node written before it
    did takes ``(inputs, files)``)."""
    if _takes_config(cls):
        return cls.fingerprint(inputs, files, config)
    return cls.fingerprint(inputs, files)


@functools.lru_cache(maxsize=None)
def _takes_config(cls) -> bool:
    import inspect

    return len(inspect.signature(cls.fingerprint).parameters) >= 3
