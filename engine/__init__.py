"""flow's engine: workflow format, validation, the DAG executor, caches, events and errors.

Importing it is cheap: the public names below load their modules on first use (PEP 562), so
a face may import `engine.settings` without paying for asyncio, networkx or jsonschema.
"""

from importlib import import_module

_EXPORTS = {
    "MemoryCache": ".cache", "NullCache": ".cache",
    "CancelToken": ".cancel",
    "NodeContext": ".context",
    "Cancelled": ".errors", "FlowError": ".errors", "InvalidInput": ".errors", "InvalidWorkflow": ".errors", "ModelNotFound": ".errors",
    "NodeError": ".errors", "OutOfMemory": ".errors", "Problem": ".errors",
    "Engine": ".executor", "RunResult": ".executor",
    "Input": ".node", "Node": ".node", "Output": ".node", "Seed": ".node",
    "Registry": ".registry",
    "AUDIO": ".types", "BOOL": ".types", "FLOAT": ".types", "IMAGE": ".types", "INT": ".types", "JSON": ".types",
    "MASK": ".types", "TEXT": ".types", "VIDEO": ".types", "ValueType": ".types",
    "Workflow": ".workflow",
}
__all__ = sorted([*_EXPORTS, "version"])


def version() -> str:
    """flow's version, read from the installed package's metadata (pyproject.toml is where it is written)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("flow")
    except PackageNotFoundError:  # a checkout run without `pip install -e .`
        return "0+unknown"


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value
