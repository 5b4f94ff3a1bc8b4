"""The compute device and its budget: which device models run on, how many of its bytes they may fill.

Probed once, on first need (never at import): torch is imported here, inside the functions.
On a machine without a GPU the device is the CPU and the same accounting runs against a
configured budget (or the target card's 12 GiB), so the manager behaves the same everywhere.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from .sizes import GiB, format_bytes

log = logging.getLogger("flow.models")

#: the budget a CPU-only machine accounts against when none is configured: the target card's 12 GiB
CPU_DEVICE_DEFAULT_BUDGET = 12 * GiB


@dataclass(frozen=True, slots=True)
class DeviceBudget:
    """The device models are placed on ("cuda" or "cpu"), the bytes they may fill there, and where that number came from."""

    device: str
    budget: int
    source: str


def probe(wanted: str | None, budget: int, reserve: int) -> DeviceBudget:
    """Find the device (`wanted`, or a GPU if torch sees one, else the CPU) and the budget on it.

    A configured `budget` wins; otherwise a GPU's total memory minus `reserve` (room for
    activations), or on the CPU the target card's 12 GiB minus `reserve` (accounting only).
    """
    device = wanted or None
    torch = _torch() if device != "cpu" else None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu":
        _free, total = torch.cuda.mem_get_info(device)
        kind = "ROCm" if torch.version.hip else "CUDA"
        if budget:
            source = "configured"
        else:
            budget, source = total - reserve, f"detected: {format_bytes(total)} total - {format_bytes(reserve)} reserve"
        found = DeviceBudget(device, budget, f"{kind} GPU {torch.cuda.get_device_name(device)}, {source}")
    else:
        how = "configured" if budget else "default, set FLOW_GPU_BUDGET_BYTES"
        found = DeviceBudget("cpu", budget or CPU_DEVICE_DEFAULT_BUDGET - reserve,
                             f"no GPU: the device is the CPU; the budget is {how}, not a GPU's memory")
    log.info("model memory: device %s, budget %s (%s)", found.device, format_bytes(found.budget), found.source)
    return found


def probe_in_child(wanted: str | None, budget: int, reserve: int, timeout: float = 120.0) -> tuple[DeviceBudget, dict | None]:
    """:func:`probe` in a child Python process, and what it saw of torch (version, HIP/CUDA, GPU name).

    The gateway learns its device at start without importing torch itself (~200 MiB and a
    second of start-up): torch loads in the gateway only when a model does. Raises
    RuntimeError when the child fails or says nothing usable.
    """
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "engine.models.device", json.dumps([wanted, budget, reserve])],
                          capture_output=True, text=True, timeout=timeout)
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
        return DeviceBudget(found["device"], int(found["budget"]), found["source"]), found.get("torch")
    except (ValueError, IndexError, KeyError, TypeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the device probe exited {done.returncode}: {last[:300]}") from None


def torch_info() -> dict | None:
    """What the torch in this process is (None when it is not imported): version, HIP/CUDA, the GPU's name."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    gpu = torch.cuda.is_available()
    return {"version": torch.__version__, "hip": getattr(torch.version, "hip", None), "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if gpu else None}


def dtype_for(device: str) -> str:
    """The torch dtype name models load in on `device`: half precision on a GPU, float32 on the CPU.

    float16 rather than bfloat16: the target card (RDNA2) has no fast bf16, and the CPU has no fast fp16.
    """
    return "float32" if device == "cpu" else "float16"


def empty_cache(device: str | None) -> None:
    """Hand the GPU allocator's cached blocks back to the device (nothing to do on the CPU)."""
    if device not in (None, "cpu"):
        _torch().cuda.empty_cache()


def half_of_ram() -> int:
    """Half of this machine's RAM (the default budget for offloaded models), or 8 GiB when unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * GiB


def _torch():
    import torch

    return torch


def quiet_libraries(*names: str) -> None:
    """Silence the notices and load bars of these model libraries ("transformers", "diffusers").

    Their messages (a missing torchvision, "Loading weights" bars) are not the user's concern;
    flow reports loads itself. Loaders call it after importing the libraries they use.
    """
    import importlib

    for name in names:
        logging = importlib.import_module(f"{name}.utils.logging")
        logging.set_verbosity_error()
        logging.disable_progress_bar()


if __name__ == "__main__":  # the child of probe_in_child: python -m engine.models.device '[wanted, budget, reserve]'
    import json
    import sys

    wanted, budget, reserve = json.loads(sys.argv[1])
    found = probe(wanted, budget, reserve)
    print(json.dumps({"device": found.device, "budget": found.budget, "source": found.source, "torch": torch_info()}))
