"""What the manager needs to know about a loaded model: its bytes, how to move it, how to shrink it.

A "model" is whatever a loader returned: a torch module, a diffusers pipeline (anything with
a `components` dict), or a tuple/list/dict of those (e.g. a model with its tokenizer).
Parts that are not torch modules (tokenizers, schedulers) weigh nothing and do not move.
Sizes are bytes everywhere; `GiB` and `format_bytes` are the one place they become text.
"""

from __future__ import annotations

from typing import Any, Iterator

MiB = 1 << 20
GiB = 1 << 30

# diffusers' lower-memory switches, cheapest first; each is used only if the pipeline has it.
LOW_MEMORY_METHODS = ("enable_vae_slicing", "enable_vae_tiling", "enable_attention_slicing")
CPU_OFFLOAD_METHOD = "enable_model_cpu_offload"


def format_bytes(nbytes: int, digits: int = 2) -> str:
    """A size a person reads: GiB, or MiB below a tenth of a GiB (e.g. "11.50 GiB", "96.00 MiB")."""
    if nbytes >= GiB // 10:
        return f"{nbytes / GiB:.{digits}f} GiB"
    return f"{nbytes / MiB:.{digits}f} MiB"


def _modules(model: Any, seen: set[int] | None = None) -> Iterator[Any]:
    """Every torch module inside a model, each once."""
    import torch

    seen = set() if seen is None else seen
    if id(model) in seen:
        return
    seen.add(id(model))
    if isinstance(model, torch.nn.Module):
        yield model
    elif isinstance(getattr(model, "components", None), dict):
        for part in model.components.values():
            yield from _modules(part, seen)
    elif isinstance(model, dict):
        for part in model.values():
            yield from _modules(part, seen)
    elif isinstance(model, (list, tuple)):
        for part in model:
            yield from _modules(part, seen)


def model_bytes(model: Any) -> int:
    """Bytes held by all parameters and buffers (tied or shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for module in _modules(model):
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def largest_part_bytes(model: Any) -> int:
    """Bytes of the biggest single module (for a pipeline, its biggest component): what model CPU
    offload keeps on the device at once."""
    return max((model_bytes(module) for module in _modules(model)), default=0)


def supports_cpu_offload(model: Any) -> bool:
    """True when the model can run with diffusers' model CPU offload."""
    return callable(getattr(model, CPU_OFFLOAD_METHOD, None))


def move(model: Any, device: str) -> None:
    """Move a model (every module in it) to `device`, in place."""
    if hasattr(model, "to") and isinstance(getattr(model, "components", None), dict):
        model.to(device)  # a pipeline moves its own components and keeps its bookkeeping right
        return
    for module in _modules(model):
        module.to(device)


def lower_memory(model: Any, device: str) -> list[str]:
    """Switch on every lower-memory mode the model supports; return the names of those switched on.

    Model CPU offload (diffusers) is only meaningful with a GPU and hands placement over to
    accelerate's hooks, so it comes last and only when `device` is not the CPU.
    """
    done = []
    vae = getattr(model, "vae", None)
    for name in LOW_MEMORY_METHODS:
        method = getattr(model, name, None)
        if not callable(method) and name.startswith("enable_vae_"):
            # diffusers 0.42 moved VAE slicing and tiling from the pipeline onto its VAE
            method = getattr(vae, name.replace("enable_vae_", "enable_"), None)
        if callable(method):
            method()
            done.append(name)
    offload = getattr(model, CPU_OFFLOAD_METHOD, None)
    if device != "cpu" and callable(offload):
        offload()
        done.append(CPU_OFFLOAD_METHOD)
    return done
