"""Output caches behind one small interface: a bounded LRU in memory, and a null cache for "off"."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Any, Protocol


class Cache(Protocol):
    """Maps a node's Merkle key to the outputs it produced."""

    def get(self, key: bytes) -> dict[str, Any] | None:
        """The outputs stored under ``key``, or None."""

    def put(self, key: bytes, outputs: dict[str, Any]) -> None:
        """Store ``outputs`` under ``key`` (may decline, e.g. when too large)."""

    def clear(self) -> None:
        """Forget everything."""


class NullCache:
    """Caches nothing."""

    def get(self, key: bytes) -> dict[str, Any] | None:
        """Always a miss."""
        return None

    def put(self, key: bytes, outputs: dict[str, Any]) -> None:
        """Drops the outputs."""

    def clear(self) -> None:
        """Nothing to forget."""

    def stats(self) -> dict:
        """Counters (all zero)."""
        return {"entries": 0, "bytes": 0, "max_bytes": 0, "hits": 0, "misses": 0, "evictions": 0}


class MemoryCache:
    """LRU cache bounded in bytes. Values are kept on the host: GPU tensors are copied off first."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, tuple[dict[str, Any], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: bytes) -> dict[str, Any] | None:
        """The outputs under ``key`` (marked most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: bytes, outputs: dict[str, Any]) -> None:
        """Store ``outputs``, evicting least recently used entries to stay within ``max_bytes``."""
        outputs = {name: to_host(value) for name, value in outputs.items()}
        size = sum(size_of(v) for v in outputs.values()) + 64
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (outputs, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
                self.evictions += 1

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> dict:
        """Entries, bytes held, the bound, and hit/miss/eviction counters."""
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "max_bytes": self.max_bytes,
                    "hits": self.hits, "misses": self.misses, "evictions": self.evictions}


def to_host(value: Any) -> Any:
    """A copy of ``value`` that pins no GPU memory (tensors moved to the CPU); else ``value``.

    Media values may define ``to_host()``; torch tensors are recognised by their device.
    """
    if hasattr(value, "to_host"):
        return value.to_host()
    device = getattr(value, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu" and hasattr(value, "cpu"):
        return value.cpu()
    if isinstance(value, list):
        return [to_host(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_host(v) for v in value)
    return value


def size_of(value: Any) -> int:
    """Approximate bytes ``value`` keeps alive, without recursion.

    Strings and bytes by their size; tensors by their whole storage and numpy arrays by their base
    array (a small view of a large one keeps all of it); media values by ``nbytes``; containers
    and plain objects (``__dict__``, ``__slots__``) by their parts. An object reached twice counts once.
    """
    total, stack, seen = 0, [value], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        storage = getattr(item, "untyped_storage", None)  # a torch tensor: what its storage holds
        if storage is not None and hasattr(item, "element_size"):
            try:
                total += int(storage().nbytes())
            except (RuntimeError, TypeError):  # e.g. a tensor without storage (meta, sparse)
                total += item.element_size() * item.numel()
            continue
        base = getattr(item, "base", None)  # a numpy view keeps its base array alive
        if base is not None and hasattr(base, "nbytes") and hasattr(item, "strides"):
            stack.append(base)
            continue
        nbytes = getattr(item, "nbytes", None)
        if isinstance(nbytes, int) and not isinstance(item, (dict, list, tuple)):
            total += nbytes
        elif isinstance(item, dict):
            total += sys.getsizeof(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += sys.getsizeof(item)
            stack.extend(item)
        else:
            total += sys.getsizeof(item)
            fields = getattr(item, "__dict__", None)
            if isinstance(fields, dict):
                stack.extend(fields.values())
            for name in getattr(type(item), "__slots__", ()):
                part = getattr(item, name, None)
                if part is not None:
                    stack.append(part)
    return total
