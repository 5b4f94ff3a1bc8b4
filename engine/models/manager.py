"""The model manager: one owner for every loaded torch model, within a GPU budget and a RAM budget.

Places: "device" (the compute device: the GPU, or the CPU on a machine without one, where the
same accounting runs against the configured budget) and "cpu" (offloaded to RAM); a dropped
model is simply forgotten. A leased (pinned) model is never moved or dropped. One lock guards
the bookkeeping and the moves; loading from disk happens outside it, one load per model, and
concurrent leases of a model that is loading wait for that load.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from ..errors import FlowError, OutOfMemory
from .ollama import OllamaClient
from .report import Counters, LoadedModel, MemoryReport
from .refs import ModelRef
from .sizes import CPU_OFFLOAD_METHOD, largest_part_bytes, lower_memory, model_bytes, move, supports_cpu_offload
from .store import ModelStore, Progress

log = logging.getLogger("flow.models")

T = TypeVar("T")
GiB = 1 << 30
#: the budget a CPU-only machine accounts against when none is configured: the target card's 12 GiB
CPU_DEVICE_DEFAULT_BUDGET = 12 * GiB


@dataclass(eq=False)
class _Entry:
    ref: str
    variant: str
    ready: Future = field(default_factory=Future)
    model: Any = None
    size: int = 0
    largest_part: int = 0
    place: str = "loading"
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
        self._device_wanted = device or None  # None: probe torch on first use
        self._budget_wanted = gpu_budget
        self._reserve = gpu_reserve
        self.cpu_budget = cpu_budget or _half_of_ram()
        self._device: str | None = None
        self._budget = 0
        self._budget_source = "not probed yet (no model leased)"
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.RLock()
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
                if not _is_torch_oom(exc):
                    raise
                detail = _first_line(exc)
            else:
                return
            # The except block has ended: the error (and the activations its frames hold) can go.
            self._free_idle()
            raise OutOfMemory(self._oom_message(entry, detail, "use ModelManager.run to retry automatically"))

    def run(self, ref: str | ModelRef, loader: Callable[[Path], Any], work: Callable[[Any], T], *,
            variant: str = "", progress: Progress | None = None) -> T:
        """Lease a model and return `work(model)`, climbing the out-of-memory ladder.

        On torch's out-of-memory error: free the allocator cache and evict every idle model,
        retry once; then switch on the lower-memory modes the model supports and retry; then
        raise :class:`OutOfMemory`. The manager stays usable either way.
        """
        torch = _torch()
        with self._lease(ref, loader, variant, progress) as entry:
            detail = ""
            for attempt in range(3):
                if attempt == 1:
                    self._free_idle()
                elif attempt == 2 and not self._lower_memory(entry):
                    break
                if attempt:
                    with self._lock:
                        self.counters.oom_retries += 1
                try:
                    return work(entry.model)
                except torch.OutOfMemoryError as exc:
                    detail = _first_line(exc)
                    log.warning("%s ran out of memory (attempt %d): %s", entry.ref, attempt + 1, detail)
            self._free_idle()
            raise OutOfMemory(self._oom_message(entry, detail, "try a smaller size or a smaller model"))

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
            # diffusers and accelerate patch torch.nn.Module for the whole process while they load;
            # two loads at once in different threads corrupt each other ("Cannot copy out of meta
            # tensor", re-initialised tied weights). Loads are serialised; runs are not.
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
        log.info("loaded %s from disk (%s)", entry.ref, _gib(size))
        entry.ready.set_result(None)

    # -- placement ---------------------------------------------------------------------------

    def _place(self, entry: _Entry, hit: bool) -> None:
        with self._lock:
            self._probe()
            if hit:
                self.counters.hits += 1
            if entry.place == "device":
                return
            if (entry.size > self._budget and self._device != "cpu" and not entry.modes
                    and supports_cpu_offload(entry.model)):
                # Too big to sit on the device whole: run it with model CPU offload, which keeps
                # one component there at a time, instead of refusing it.
                log.warning("%s (%s) is larger than the %s budget: using model CPU offload",
                            entry.ref, _gib(entry.size), _gib(self._budget))
                self._lower_memory(entry)
            self._make_room(entry)
            self._move(entry, self._device)
            entry.place = "device"
            self.counters.moves_to_device += 1
            self._trim_cpu()

    def _make_room(self, entry: _Entry) -> None:
        """Offload idle models (least recently used first), then ask Ollama, until `entry` fits."""
        ollama = self._ollama_models()
        need = self._device_used() + sum(ollama.values()) + entry.footprint - self._budget
        for other in sorted(self._idle("device"), key=lambda e: e.tick):
            if need <= 0:
                break
            need -= other.footprint
            self._offload(other)
        for name, vram in sorted(ollama.items(), key=lambda kv: -kv[1]):
            if need <= 0:
                break
            log.info("asking Ollama to unload %s (%s) to make room for %s", name, _gib(vram), entry.ref)
            self.ollama.unload(name)
            self.counters.ollama_unloads += 1
            need -= vram
        if need > 0:
            busy = ", ".join(f"{e.ref} ({_gib(e.size)})" for e in self._entries.values()
                             if e.place == "device" and e.pins) or "none"
            raise OutOfMemory(
                f"model {entry.ref} needs {_gib(entry.footprint)} but only {_gib(entry.footprint - need)} of the "
                f"{_gib(self._budget)} budget on {self._device} can be freed (in use: {busy}); wait for the "
                "other jobs, pick a smaller model, or raise FLOW_GPU_BUDGET_BYTES / lower FLOW_GPU_RESERVE_BYTES"
            )
        if self._device != "cpu":
            _torch().cuda.empty_cache()

    def _move(self, entry: _Entry, device: str) -> None:
        if entry.hooked:
            return
        torch = _torch()
        try:
            move(entry.model, device)
            return
        except torch.OutOfMemoryError as exc:
            detail = _first_line(exc)
        # A real allocator failure despite the accounting (fragmentation, another process): free, retry once.
        self.counters.oom_retries += 1
        self._free_idle(keep=entry)
        try:
            move(entry.model, device)
            return
        except torch.OutOfMemoryError as exc:
            detail = _first_line(exc)
        move(entry.model, "cpu")  # never leave it half on the GPU
        raise OutOfMemory(self._oom_message(entry, detail, "pick a smaller model or free the GPU"))

    def _offload(self, entry: _Entry) -> None:
        self._move(entry, "cpu")
        entry.place = "cpu"
        self.counters.offloads += 1
        log.info("offloaded %s to CPU RAM (%s)", entry.ref, _gib(entry.size))

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
        log.info("dropped %s (%s)", entry.ref, _gib(entry.size))

    def _free_idle(self, keep: _Entry | None = None) -> None:
        """After an out-of-memory error: offload every idle model and empty the allocator cache."""
        with self._lock:
            for entry in self._idle("device"):
                if entry is not keep:
                    self._offload(entry)
            self._trim_cpu()
        gc.collect()
        if self._device not in (None, "cpu"):
            _torch().cuda.empty_cache()

    def _lower_memory(self, entry: _Entry) -> list[str]:
        with self._lock:
            if entry.modes:
                return []
            modes = lower_memory(entry.model, self._device or "cpu")
            entry.modes = tuple(modes)
            if modes:
                self.counters.low_memory_switches += 1
                log.warning("switched %s to lower-memory modes: %s", entry.ref, ", ".join(modes))
            return modes

    # -- control and reports ---------------------------------------------------------------

    def free(self, nbytes: int) -> int:
        """Offload idle models until `nbytes` of the device budget are free (e.g. for an Ollama model); return bytes free."""
        with self._lock:
            self._probe()
            for entry in sorted(self._idle("device"), key=lambda e: e.tick):
                if self._budget - self._device_used() >= nbytes:
                    break
                self._offload(entry)
            self._trim_cpu()
            return self._budget - self._device_used()

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
        if self._device not in (None, "cpu"):
            _torch().cuda.empty_cache()
        return done

    def loaded(self) -> list[LoadedModel]:
        """The models held now, most recently used first."""
        with self._lock:
            entries = sorted(self._entries.values(), key=lambda e: -e.tick)
            return [LoadedModel(e.ref, e.variant, e.size, e.place, e.last_used, e.pins, e.modes) for e in entries]

    def report(self) -> MemoryReport:
        """Budgets, usage, models and counters; the device is named as it is (never a pretend GPU)."""
        with self._lock:
            return MemoryReport(
                self._device, self._budget, self._budget_source, self._device_used(),
                sum(self._ollama_models().values()) if self._device else 0, self.cpu_budget, self._cpu_used(),
                tuple(self.loaded()), Counters(**vars(self.counters)),
            )

    @property
    def device(self) -> str:
        """The compute device loaders should target ("cuda" or "cpu"), probed on first call."""
        with self._lock:
            self._probe()
            return self._device

    @property
    def budget(self) -> int:
        """Bytes of the device the manager may fill."""
        with self._lock:
            self._probe()
            return self._budget

    # -- internals ---------------------------------------------------------------------------

    def _probe(self) -> None:
        if self._device is not None:
            return
        device = self._device_wanted
        torch = _torch() if device != "cpu" else None
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device != "cpu":
            free, total = torch.cuda.mem_get_info(device)
            name = torch.cuda.get_device_name(device)
            kind = "ROCm" if torch.version.hip else "CUDA"
            if self._budget_wanted:
                self._budget, source = self._budget_wanted, "configured"
            else:
                self._budget = total - self._reserve
                source = f"detected: {_gib(total)} total - {_gib(self._reserve)} reserve"
            self._budget_source = f"{kind} GPU {name}, {source}"
        else:
            self._budget = self._budget_wanted or CPU_DEVICE_DEFAULT_BUDGET - self._reserve
            how = "configured" if self._budget_wanted else "default, set FLOW_GPU_BUDGET_BYTES"
            self._budget_source = f"no GPU: the device is the CPU; the budget is {how}, not a GPU's memory"
        self._device = device
        log.info("model memory: device %s, budget %s (%s)", device, _gib(self._budget), self._budget_source)

    def _idle(self, place: str) -> list[_Entry]:
        return [e for e in self._entries.values() if e.place == place and e.pins == 0]

    def _device_used(self) -> int:
        return sum(e.footprint for e in self._entries.values() if e.place == "device")

    def _cpu_used(self) -> int:
        return sum(e.size for e in self._entries.values() if e.place == "cpu")

    def _ollama_models(self) -> dict[str, int]:
        """What Ollama holds on the GPU now (empty when unconfigured or unreachable, logged)."""
        if self.ollama is None:
            return {}
        try:
            return {m.name: m.size_vram for m in self.ollama.loaded() if m.size_vram}
        except FlowError as exc:
            log.debug("not counting Ollama: %s", exc)
            return {}

    def _oom_message(self, entry: _Entry, detail: str, hint: str) -> str:
        modes = f"; lower-memory modes on: {', '.join(entry.modes)}" if entry.modes else ""
        return (
            f"model {entry.ref} ({_gib(entry.size)}) ran out of memory on {self._device} "
            f"(budget {_gib(self._budget)}){modes}: {detail}; idle models were freed, so {hint}, "
            "or lower FLOW_GPU_BUDGET_BYTES to leave more room for activations"
        )


_LOADING = threading.Lock()  # one model load at a time in this process (see _load)


def _torch():
    import torch

    return torch


def _is_torch_oom(exc: BaseException) -> bool:
    # Only torch can raise its own error, so a torch that was never imported means "not this".
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.OutOfMemoryError)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _gib(nbytes: int) -> str:
    return f"{nbytes / GiB:.2f} GiB" if nbytes >= GiB // 10 else f"{nbytes / (1 << 20):.2f} MiB"


def _half_of_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * GiB
