"""flow's engine: workflow format, validation, the DAG executor, caches, events and errors.

Importing it is cheap: networkx, jsonschema and every model library load only when used.
"""

from .cache import MemoryCache, NullCache
from .cancel import CancelToken
from .context import NodeContext
from .errors import Cancelled, FlowError, InvalidWorkflow, ModelNotFound, NodeFailed, OutOfMemory, Problem
from .executor import Engine, RunResult
from .node import Input, Node, Output, Seed
from .registry import Registry
from .types import AUDIO, BOOL, FLOAT, IMAGE, INT, JSON, MASK, TEXT, VIDEO, ValueType
from .workflow import Workflow

__all__ = [
    "AUDIO", "BOOL", "FLOAT", "IMAGE", "INT", "JSON", "MASK", "TEXT", "VIDEO",
    "Cancelled", "CancelToken", "Engine", "FlowError", "Input", "InvalidWorkflow", "MemoryCache",
    "ModelNotFound", "Node", "NodeContext", "NodeFailed", "NullCache", "Output", "OutOfMemory",
    "Problem", "Registry", "RunResult", "Seed", "ValueType", "Workflow",
]
