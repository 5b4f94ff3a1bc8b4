"""Large graphs in the gateway's process: built with the collector paused, JSON and freeing in pieces.

Two things in CPython stop every thread, the event loop included, for as long as they last:

* A full garbage collection walks every tracked object while it holds the GIL. A 100k-node
  graph is about 600k of them (document, parsed workflow, compiled steps), so each full pass
  takes 0.1-0.7 s, and building such a graph sets off several as the heap grows. So while a
  large graph is built, automatic collection pauses, and what was built is then frozen
  (``gc.freeze``: left out of later passes, still freed by reference counting as usual).
  :func:`settle_gc`, called once no large job is alive, hands frozen objects back to the
  collector, so a cycle frozen along the way is still collected.
* One long call into C: ``json.loads``/``json.dumps`` of a 10 MB graph hold the GIL from start
  to end (~150 ms). :func:`loads` and :func:`dumps` go through Python between pieces, where
  other threads get their turn. Dropping the last reference to a large graph is one such call
  too (freeing ~600k objects: 50-100 ms): :func:`empty` takes a container apart a piece at a time.

The collector is one per process, so the pause state here is too: a counter under a lock.
"""

from __future__ import annotations

import gc
import json
import threading
from contextlib import contextmanager
from typing import Any, Iterator

#: A graph of more nodes is "large": built and planned off the event loop, with collection paused.
LARGE_GRAPH = 2000
_PIECE = 1000  # items of a dict or list encoded per call into C


class _Pauses:
    """Nested, thread-safe pauses of automatic collection; the last one to end freezes what exists."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._resume = False  # whether collection was enabled when the first pause began
        self._froze = False

    @contextmanager
    def quiet(self) -> Iterator[None]:
        with self._lock:
            if self._active == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    gc.freeze()
                    self._froze = True
                    if self._resume:
                        gc.enable()

    def settle(self) -> None:
        with self._lock:
            if self._active == 0 and self._froze:
                gc.unfreeze()
                self._froze = False


_PAUSES = _Pauses()


@contextmanager
def quiet_gc(nodes: int | None = None) -> Iterator[None]:
    """Build (parse, compile, plan) a large graph inside this, off the event loop.

    With ``nodes`` (the graph's size), only a graph of more than :data:`LARGE_GRAPH` nodes
    pauses anything; without it, any pauses (e.g. parsing a body of unknown content).
    """
    if nodes is not None and nodes <= LARGE_GRAPH:
        yield
        return
    with _PAUSES.quiet():
        yield


def settle_gc() -> None:
    """Give frozen objects back to the collector: call it when no large graph is alive any more."""
    _PAUSES.settle()


def loads(text: str | bytes) -> Any:
    """``json.loads`` that lets other threads run while it parses a large document."""
    return json.loads(text, object_pairs_hook=_object)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(pairs)  # a call into Python per object: there the GIL can go to another thread


def dumps(value: Any) -> str:
    """``json.dumps`` that lets other threads run: a large dict or list is encoded a piece at a time."""
    if isinstance(value, dict) and (len(value) > _PIECE or any(map(_large, value.values()))):
        return "{" + ", ".join(_dict_pieces(value)) + "}"
    if isinstance(value, list) and (len(value) > _PIECE or any(map(_large, value))):
        return "[" + ", ".join(_list_pieces(value)) + "]"
    return json.dumps(value)


def is_large(value: Any) -> bool:
    """A dict or list :func:`dumps` encodes a piece at a time."""
    return isinstance(value, (dict, list)) and len(value) > _PIECE


_large = is_large


def _dict_pieces(value: dict) -> Iterator[str]:
    items = list(value.items())
    for start in range(0, len(items), _PIECE):
        piece = items[start:start + _PIECE]
        if any(_large(v) for _, v in piece):
            for key, item in piece:  # json.dumps turns a non-string key into its JSON text
                yield json.dumps(key if isinstance(key, str) else json.dumps(key)) + ": " + dumps(item)
        elif piece:
            yield json.dumps(dict(piece))[1:-1]


def _list_pieces(value: list) -> Iterator[str]:
    for start in range(0, len(value), _PIECE):
        piece = value[start:start + _PIECE]
        if any(map(_large, piece)):
            yield from map(dumps, piece)
        elif piece:
            yield json.dumps(piece)[1:-1]


def empty(container: dict | list) -> None:
    """Empty a large dict or list a piece at a time, off the event loop.

    Freeing a 100k-node graph's objects in one go (its last reference dropped) is one long call
    into C: 50-100 ms with the GIL held. Popped a few at a time, other threads run in between.
    Only for a container that nothing else uses any more.
    """
    if isinstance(container, dict):
        while container:
            for _ in range(min(_PIECE, len(container))):
                container.popitem()
    else:
        while container:
            del container[-_PIECE:]
