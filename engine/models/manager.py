"""The model manager: one owner for every loaded torch model, within a GPU budget and a RAM budget.

Places: "device" (the compute device: the GPU, or the CPU on a machine without one, where the
same accounting runs against the configured budget) and "cpu" (offloaded to RAM); a dropped
model is simply forgotten. A leased (pinned) model is never moved or dropped.

One lock guards the bookkeeping and the moves; nothing under it waits on the network. Ollama is
asked what it holds before the lock is taken, and the Ollama models chosen to make room are
unloaded after it is released, while the model being placed holds their room ("placing"). The
device probe (it imports torch) runs once under a lock of its own. Loading from disk happens
outside the lock: one load per model (concurrent leases of a loading model wait for it), one
load at a time in the process (see `_LOADING`).
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import subprocess
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from ..errors import FlowError, OutOfMemory
from . import oom
from .device import DeviceBudget, empty_cache, half_of_ram, probe, probe_in_child
from .ollama import OllamaClient, PullProgress
from .refs import ModelRef
from .report import Counters, LoadedModel, MemoryReport
from .sizes import (CPU_OFFLOAD_METHOD, GiB, format_bytes, largest_part_bytes, lower_memory, model_bytes, move,
                    supports_cpu_offload)
from .store import ModelStore, Progress

log = logging.getLogger("flow.models")

T = TypeVar("T")

# diffusers and accelerate patch torch.nn.Module for the whole process while they load (empty
# weights on the meta device, tied weights); two loads at once in different threads corrupt each
# other ("Cannot copy out of meta tensor", re-initialised tied weights). Every loader runs here,
# under this one process-wide lock: loads are serialised, runs are not.
_LOADING = threading.Lock()


@dataclass(eq=False)
class _Entry:
    ref: str
    variant: str
    ready: Future = field(default_factory=Future)
    model: Any = None
    size: int = 0
    largest_part: int = 0
    place: str = "loading"  # then "cpu", "placing" (room held while Ollama unloads), "device", "dropped"
    pins: int = 0
    tick: int = 0
    last_used: float = 0.0
    modes: tuple[str, ...] = ()

    @property
    def footprint(self) -> int:
        """Bytes it holds on the device when placed there: with model CPU offload, one part at a time."""
        return self.largest_part if self.hooked else self.size

    @property
    def hooked(self) -> bool:
        # With diffusers' model CPU offload, accelerate's hooks place the components; we never move it.
        return CPU_OFFLOAD_METHOD in self.modes


class ModelManager:
    """Loads models on first lease, keeps them on the device within budget, offloads and drops the idle."""

    def __init__(
        self,
        store: ModelStore,
        *,
        device: str | None = None,
        gpu_budget: int = 0,
        gpu_reserve: int = 2 * GiB,
        cpu_budget: int = 0,
        ollama: OllamaClient | None = None,
    ):
        self.store = store
        self.ollama = ollama
        self._wanted = (device or None, gpu_budget, gpu_reserve)  # device None: probe torch on first use
        self.cpu_budget = cpu_budget or half_of_ram()
        self._found: DeviceBudget | None = None
        self._probe_lock = threading.Lock()
        #: True while a child process probes the device for the gateway (see probe_elsewhere)
        self.probing = False
        self.torch: dict | None = None  # what the probe saw of torch (version, HIP/CUDA, GPU)
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.RLock()
        self._placed = threading.Condition(self._lock)  # an entry left "placing"
        self._ticks = itertools.count(1)
        self.counters = Counters()

    @classmethod
    def from_settings(cls, settings, *, hf_token: str | None = None) -> "ModelManager":
        """Build the manager and its store from :class:`engine.settings.Settings` (the face passes HF_TOKEN)."""
        timeouts = (settings.backend_connect_timeout, settings.backend_read_timeout)
        ollama = (OllamaClient(settings.ollama_url, connect_timeout=timeouts[0], read_timeout=timeouts[1])
                  if settings.ollama_url else None)
        roots = [Path(p) for p in settings.model_roots.split(os.pathsep) if p]
        store = ModelStore(settings.models_dir, roots=roots, ollama=ollama, hf_endpoint=settings.hf_endpoint,
                           hf_token=hf_token or settings.hf_token or None, pull_on_demand=settings.pull_on_demand,
                           timeouts=timeouts)
        return cls(store, device=settings.model_device or None, gpu_budget=settings.gpu_budget_bytes,
                   gpu_reserve=settings.gpu_reserve_bytes, cpu_budget=settings.cpu_budget_bytes, ollama=ollama)

    # -- leasing -----------------------------------------------------------------------------

    @contextmanager
    def lease(self, ref: str | ModelRef, loader: Callable[[Path], T], *, variant: str = "",
              progress: Progress | None = None) -> Iterator[T]:
        """Use a model: load it on first use (`loader(folder)`, on the CPU), place it on the device, pin it.

        Two loaders that build different objects from one reference must pass different
        `variant`s (the cache key is reference + variant). A torch out-of-memory error inside
        the block frees memory and becomes :class:`OutOfMemory`; use :meth:`run` for retries.
        """
        with self._lease(ref, loader, variant, progress) as entry:
            try:
                yield entry.model
            except BaseException as exc:
                if not oom.is_torch_oom(exc):
                    raise
                detail = oom.first_line(exc)
            else:
                return
            # The except block has ended: the error (and the activations its frames hold) can go.
            self._free_idle()
            raise self._oom(entry, detail, "use ModelManager.run to retry automatically")

    def run(self, ref: str | ModelRef, loader: Callable[[Path], Any], work: Callable[[Any], T], *,
            variant: str = "", progress: Progress | None = None) -> T:
        """Lease a model and return `work(model)`, climbing the out-of-memory ladder (see :mod:`.oom`).

        On torch's out-of-memory error: free the allocator cache and evict every idle model,
        retry once; then switch on the lower-memory modes the model supports and retry; then
        raise :class:`OutOfMemory`. The manager stays usable either way.
        """
        with self._lease(ref, loader, variant, progress) as entry:
            return oom.climb(lambda: work(entry.model), label=entry.ref, free=self._free_idle,
                             lower=lambda: bool(self._lower_memory(entry)), retried=self._count_retry,
                             give_up=lambda detail: self._oom(entry, detail, "try a smaller size or a smaller model"))

    @contextmanager
    def _lease(self, ref, loader, variant: str, progress) -> Iterator[_Entry]:
        ref = ref if isinstance(ref, ModelRef) else self.store.parse(ref)
        key = (str(ref), variant)
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if owner:
                entry = self._entries[key] = _Entry(str(ref), variant)
            entry.pins += 1
        try:
            if owner:
                self._load(entry, ref, loader, progress)
            else:
                entry.ready.result()  # wait for the shared load; re-raises its failure
            self._place(entry, hit=not owner)
            yield entry
        finally:
            with self._lock:
                entry.pins -= 1
                entry.tick, entry.last_used = next(self._ticks), time.time()

    def _load(self, entry: _Entry, ref: ModelRef, loader, progress) -> None:
        try:
            path = self.store.path(ref, progress)
            if progress is not None:
                progress(PullProgress(str(ref), "loading model"))  # seconds to minutes: say so
            with _LOADING:
                model = loader(path)
            size, largest = model_bytes(model), largest_part_bytes(model)
        except BaseException as exc:
            with self._lock:
                if self._entries.get((entry.ref, entry.variant)) is entry:
                    del self._entries[(entry.ref, entry.variant)]
            entry.ready.set_exception(exc)
            raise
        with self._lock:
            entry.model, entry.size, entry.largest_part, entry.place = model, size, largest, "cpu"
            self.counters.loads += 1
        log.info("loaded %s from disk (%s)", entry.ref, format_bytes(size))
        entry.ready.set_result(None)

    # -- placement ---------------------------------------------------------------------------

    def _place(self, entry: _Entry, hit: bool) -> None:
        """Put a leased model on the device: 1. ask Ollama what it holds (no lock), 2. decide and
        offload idle models (lock), 3. unload the Ollama models chosen (no lock), 4. move (lock)."""
        found = self._probe()
        ollama = self._ollama_models() if entry.place != "device" else {}  # unlocked read: a hint only
        with self._lock:
            if hit:
                self.counters.hits += 1
            while entry.place == "placing":  # another lease of this model is placing it
                self._placed.wait()
            if entry.place == "device":
                return
            if (entry.size > found.budget and found.device != "cpu" and not entry.modes
                    and supports_cpu_offload(entry.model)):
                # Too big to sit on the device whole: run it with model CPU offload, which keeps
                # one component there at a time, instead of refusing it.
                log.warning("%s (%s) is larger than the %s budget: using model CPU offload",
                            entry.ref, format_bytes(entry.size), format_bytes(found.budget))
                self._lower_memory(entry)
            unload = self._make_room(entry, found, ollama)
            if not unload:
                self._to_device(entry, found)
                return
            entry.place = "placing"  # counted on the device: the room is ours while Ollama unloads
        try:
            for name in unload:
                log.info("asking Ollama to unload %s (%s) to make room for %s", name, format_bytes(ollama[name]),
                         entry.ref)
                self.ollama.unload(name)
                with self._lock:
                    self.counters.ollama_unloads += 1
            with self._lock:
                self._to_device(entry, found)
        finally:
            with self._lock:
                if entry.place == "placing":  # an unload failed: give the room back
                    entry.place = "cpu"
                self._placed.notify_all()

    def _make_room(self, entry: _Entry, found: DeviceBudget, ollama: dict[str, int]) -> list[str]:
        """Offload idle models (least recently used first) until `entry` fits beside what Ollama holds;
        return the Ollama models to unload for the rest (largest first), or raise :class:`OutOfMemory`."""
        need = self._device_used() + sum(ollama.values()) + entry.footprint - found.budget
        for other in sorted(self._idle("device"), key=lambda e: e.tick):
            if need <= 0:
                break
            need -= other.footprint
            self._offload(other)
        unload = []
        for name, vram in sorted(ollama.items(), key=lambda kv: -kv[1]):
            if need <= 0:
                break
            unload.append(name)
            need -= vram
        if need > 0:
            busy = [(e.ref, e.size) for e in self._entries.values() if e.place in ("device", "placing") and e.pins]
            raise OutOfMemory(oom.no_room_message(entry.ref, entry.footprint, entry.footprint - need, found, busy))
        return unload

    def _to_device(self, entry: _Entry, found: DeviceBudget) -> None:
        entry.place = "cpu"  # until the move succeeds (an out-of-memory error leaves it in RAM)
        empty_cache(found.device)
        self._move(entry, found.device)
        entry.place = "device"
        self.counters.moves_to_device += 1
        self._trim_cpu()

    def _move(self, entry: _Entry, device: str) -> None:
        if entry.hooked:
            return

        def give_up(detail: str) -> OutOfMemory:
            move(entry.model, "cpu")  # never leave it half on the GPU
            return self._oom(entry, detail, "pick a smaller model or free the GPU")

        # A real allocator failure despite the accounting (fragmentation, another process): free, retry once.
        oom.climb(lambda: move(entry.model, device), label=entry.ref, free=lambda: self._free_idle(keep=entry),
                  retried=self._count_retry, give_up=give_up)

    def _offload(self, entry: _Entry) -> None:
        self._move(entry, "cpu")
        entry.place = "cpu"
        self.counters.offloads += 1
        log.info("offloaded %s to CPU RAM (%s)", entry.ref, format_bytes(entry.size))

    def _trim_cpu(self) -> None:
        """Drop the least recently used idle offloaded models while RAM is over its budget."""
        for entry in sorted(self._idle("cpu"), key=lambda e: e.tick):
            if self._cpu_used() <= self.cpu_budget:
                break
            self._drop(entry)

    def _drop(self, entry: _Entry) -> None:
        del self._entries[(entry.ref, entry.variant)]
        entry.model, entry.place = None, "dropped"
        self.counters.drops += 1
        log.info("dropped %s (%s)", entry.ref, format_bytes(entry.size))

    def _free_idle(self, keep: _Entry | None = None) -> None:
        """After an out-of-memory error: offload every idle model and empty the allocator cache."""
        with self._lock:
            for entry in self._idle("device"):
                if entry is not keep:
                    self._offload(entry)
            self._trim_cpu()
        gc.collect()
        empty_cache(self._found and self._found.device)

    def _lower_memory(self, entry: _Entry) -> list[str]:
        with self._lock:
            if entry.modes:
                return []
            modes = lower_memory(entry.model, self._probe().device)
            entry.modes = tuple(modes)
            if modes:
                self.counters.low_memory_switches += 1
                log.warning("switched %s to lower-memory modes: %s", entry.ref, ", ".join(modes))
            return modes

    # -- control and reports ---------------------------------------------------------------

    def free(self, nbytes: int) -> int:
        """Offload idle models until `nbytes` of the device budget are free (e.g. for an Ollama model); return bytes free."""
        budget = self._probe().budget
        with self._lock:
            for entry in sorted(self._idle("device"), key=lambda e: e.tick):
                if budget - self._device_used() >= nbytes:
                    break
                self._offload(entry)
            self._trim_cpu()
            return budget - self._device_used()

    def unload(self, ref: str | None = None) -> dict[str, list[str]]:
        """Drop one model (every variant of `ref`) or all; leased ones stay and are listed as busy."""
        key = None if ref is None else str(self.store.parse(ref))
        done: dict[str, list[str]] = {"unloaded": [], "busy": []}
        with self._lock:
            for entry in list(self._entries.values()):
                if key is not None and entry.ref != key:
                    continue
                if entry.pins or entry.place == "loading":
                    done["busy"].append(entry.ref)
                else:
                    if entry.place == "device":
                        self._move(entry, "cpu")
                    self._drop(entry)
                    done["unloaded"].append(entry.ref)
        gc.collect()
        empty_cache(self._found and self._found.device)
        return done

    def loaded(self) -> list[LoadedModel]:
        """The models held now, most recently used first."""
        with self._lock:
            entries = sorted(self._entries.values(), key=lambda e: -e.tick)
            return [LoadedModel(e.ref, e.variant, e.size, e.place, e.last_used, e.pins, e.modes) for e in entries]

    def report(self) -> MemoryReport:
        """Budgets, usage, models and counters; the device is named as it is (never a pretend GPU).

        `/health` calls it: it never probes the device, and asks Ollama before taking the lock.
        """
        found = self._found
        ollama_vram = sum(self._ollama_models().values()) if found else 0
        with self._lock:
            return MemoryReport(
                found and found.device, found.budget if found else 0,
                found.source if found else "probing the device" if self.probing else "not probed yet (no model leased)",
                self._device_used(), ollama_vram,
                self.cpu_budget, self._cpu_used(), tuple(self.loaded()), Counters(**vars(self.counters)),
            )

    @property
    def device(self) -> str:
        """The compute device loaders should target ("cuda" or "cpu"), probed on first call."""
        return self._probe().device

    @property
    def budget(self) -> int:
        """Bytes of the device the manager may fill."""
        return self._probe().budget

    # -- internals ---------------------------------------------------------------------------

    def probe_elsewhere(self) -> None:
        """Probe the device in a child process (blocking: call it in a thread); torch stays out of this one.

        A model leased meanwhile probes here as before; a failed child is logged, and the device
        is then probed on first model use.
        """
        if self._found is not None:
            return
        self.probing = True
        try:
            # the CPU, named: nothing to import, nothing to start
            found, self.torch = (probe(*self._wanted), None) if self._wanted[0] == "cpu" else probe_in_child(*self._wanted)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            log.warning("could not probe the device at start (%s); it is probed when a model first loads", exc)
            return
        finally:
            self.probing = False
        with self._probe_lock:
            if self._found is None:
                self._found = found
                log.info("model memory: device %s, budget %s (%s)", found.device, format_bytes(found.budget),
                         found.source)

    def _probe(self) -> DeviceBudget:
        """The device and its budget, probed once; under a lock of its own, so reports never wait on it."""
        if self._found is None:
            with self._probe_lock:
                if self._found is None:
                    self._found = probe(*self._wanted)
        return self._found

    def _idle(self, place: str) -> list[_Entry]:
        return [e for e in self._entries.values() if e.place == place and e.pins == 0]

    def _device_used(self) -> int:
        return sum(e.footprint for e in self._entries.values() if e.place in ("device", "placing"))

    def _cpu_used(self) -> int:
        return sum(e.size for e in self._entries.values() if e.place == "cpu")

    def _count_retry(self) -> None:
        with self._lock:
            self.counters.oom_retries += 1

    def _ollama_models(self) -> dict[str, int]:
        """What Ollama holds on the GPU now (empty when unconfigured or unreachable, logged); an HTTP call."""
        if self.ollama is None:
            return {}
        try:
            return {m.name: m.size_vram for m in self.ollama.loaded() if m.size_vram}
        except FlowError as exc:
            log.debug("not counting Ollama: %s", exc)
            return {}

    def _oom(self, entry: _Entry, detail: str, hint: str) -> OutOfMemory:
        return OutOfMemory(oom.message(entry.ref, entry.size, self._probe(), entry.modes, detail, hint))
