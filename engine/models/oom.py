"""The out-of-memory ladder (free and retry once, then lower-memory modes and retry, then a clear
error), and what that error says.

The steps are the manager's (what "free" and "lower memory" mean for its models); this module
knows the order, and how to recognise torch's out-of-memory error without importing torch.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable, TypeVar

from .device import DeviceBudget
from .sizes import format_bytes

log = logging.getLogger("flow.models")

T = TypeVar("T")


def climb(work: Callable[[], T], *, label: str, free: Callable[[], None], retried: Callable[[], None],
          give_up: Callable[[str], BaseException], lower: Callable[[], bool] | None = None) -> T:
    """Return `work()`, climbing the ladder on torch's out-of-memory error.

    1. run `work`; 2. on OOM, `free()` and run it again; 3. on OOM again, `lower()` (False or
    no `lower`: no lower-memory mode left, stop) and run it again; then `free()` and raise
    `give_up(detail)` with the first line of the last error. `retried()` runs before every retry.
    """
    detail = ""
    for attempt in range(3):
        if attempt == 1:
            free()
        elif attempt == 2 and (lower is None or not lower()):
            break
        if attempt:
            retried()
        try:
            return work()
        except BaseException as exc:
            if not is_torch_oom(exc):
                raise
            detail = first_line(exc)
        log.warning("%s ran out of memory (attempt %d): %s", label, attempt + 1, detail)
    free()
    raise give_up(detail)


def is_torch_oom(exc: BaseException) -> bool:
    """True for torch's out-of-memory error."""
    # Only torch can raise its own error, so a torch that was never imported means "not this".
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.OutOfMemoryError)


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (torch's OOM message runs on for a paragraph)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def message(ref: str, size: int, found: DeviceBudget, modes: tuple[str, ...], detail: str, hint: str) -> str:
    """What :class:`~engine.errors.OutOfMemory` says after torch ran out: the model, the budget, the modes tried, what to do."""
    tried = f"; lower-memory modes on: {', '.join(modes)}" if modes else ""
    return (
        f"model {ref} ({format_bytes(size)}) ran out of memory on {found.device} (budget "
        f"{format_bytes(found.budget)}){tried}: {detail}; idle models were freed, so {hint}, or lower "
        "FLOW_GPU_BUDGET_BYTES to leave more room for activations"
    )


def no_room_message(ref: str, footprint: int, freeable: int, found: DeviceBudget,
                    busy: list[tuple[str, int]]) -> str:
    """What :class:`~engine.errors.OutOfMemory` says when a model cannot be placed: the leased models take the room."""
    in_use = ", ".join(f"{name} ({format_bytes(size)})" for name, size in busy) or "none"
    return (
        f"model {ref} needs {format_bytes(footprint)} but only {format_bytes(freeable)} of the "
        f"{format_bytes(found.budget)} budget on {found.device} can be freed (in use: {in_use}); wait for the "
        "other jobs, pick a smaller model, or raise FLOW_GPU_BUDGET_BYTES / lower FLOW_GPU_RESERVE_BYTES"
    )
