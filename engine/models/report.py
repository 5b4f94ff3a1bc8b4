"""What the model manager reports: counters, the models it holds, budgets and usage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counters:
    """What the manager did since it started."""

    hits: int = 0
    loads: int = 0
    moves_to_device: int = 0
    offloads: int = 0
    drops: int = 0
    oom_retries: int = 0
    low_memory_switches: int = 0
    ollama_unloads: int = 0


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One model the manager holds: size, place, last use (Unix time), leases in progress."""

    ref: str
    variant: str
    size: int
    place: str
    last_used: float
    pinned: int
    low_memory: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """The manager's state for `flow models loaded` and the gateway."""

    device: str | None
    budget: int
    budget_source: str
    used: int
    ollama_vram: int
    cpu_budget: int
    cpu_used: int
    models: tuple[LoadedModel, ...]
    counters: Counters

    def to_json(self) -> dict:
        """JSON form (sizes in bytes)."""
        return {
            "device": self.device, "budget": self.budget, "budget_source": self.budget_source,
            "used": self.used, "ollama_vram": self.ollama_vram, "cpu_budget": self.cpu_budget,
            "cpu_used": self.cpu_used, "counters": vars(self.counters).copy(),
            "models": [{"ref": m.ref, "variant": m.variant, "size": m.size, "place": m.place,
                        "last_used": m.last_used, "pinned": m.pinned, "low_memory": list(m.low_memory)}
                       for m in self.models],
        }
