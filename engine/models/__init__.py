"""Model memory and model store: references, pulling, and the VRAM-aware manager.

Nothing here imports torch or huggingface_hub at import time; they are imported where used.
"""

from .device import DeviceBudget, dtype_for, quiet_libraries
from .manager import ModelManager
from .ollama import OllamaClient, OllamaModel, OllamaUnavailable, PullProgress
from .refs import ModelRef, parse_ref
from .report import Counters, LoadedModel, MemoryReport
from .sizes import GiB, MiB, format_bytes
from .store import LocalModel, ModelStore

__all__ = [
    "Counters",
    "DeviceBudget",
    "GiB",
    "LoadedModel",
    "LocalModel",
    "MemoryReport",
    "MiB",
    "ModelManager",
    "ModelRef",
    "ModelStore",
    "OllamaClient",
    "OllamaModel",
    "OllamaUnavailable",
    "PullProgress",
    "dtype_for",
    "quiet_libraries",
    "format_bytes",
    "parse_ref",
]
