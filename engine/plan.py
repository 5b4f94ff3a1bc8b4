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
    for i, nid in enumerate(order):
        if not i % CHECK_EVERY:
            check()
        step = steps[nid]
        inputs = filled.get(nid)
        if step.seed_input is not None:
            seed = (inputs or {}).get(step.seed_input, step.literals.get(step.seed_input))
            if seed is None:
                seed = secrets.randbelow(min(SEED_MAX, 2**32))
            seeds[nid] = seed
            inputs = {**(inputs or {}), step.seed_input: seed}
        if inputs:
            filled_in[nid] = inputs
        if not step.dynamic:  # its sources are not either: their keys are in `keys` already
            keys[nid] = step.key or fixed_key(step, [keys[src] for _, src, _ in step.links])
            continue
        salt = canonical(inputs) if inputs else b""
        if step.fingerprinted:
            salt += canonical(_fingerprint(step.cls, {**step.literals, **(inputs or {})}, files, config))
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
