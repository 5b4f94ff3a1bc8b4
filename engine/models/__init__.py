"""Model memory and model store: references, pulling, and the VRAM-aware manager.

Nothing here imports torch or huggingface_hub at import time; they are imported where used.
"""

from .manager import ModelManager
from .ollama import OllamaClient, OllamaModel, OllamaUnavailable, PullProgress
from .refs import ModelRef, parse_ref
from .report import Counters, LoadedModel, MemoryReport
from .store import LocalModel, ModelStore

__all__ = [
    "Counters",
    "LoadedModel",
    "LocalModel",
    "MemoryReport",
    "ModelManager",
    "ModelRef",
    "ModelStore",
    "OllamaClient",
    "OllamaModel",
    "OllamaUnavailable",
    "PullProgress",
    "parse_ref",
]
