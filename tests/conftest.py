"""Shared fixtures: an engine over the real nodes plus the stub zoo, writing under tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# No test may reach a model hub; an accidental hub id would otherwise retry for ~50 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def registry():
    import nodes
    from engine import Registry
    from zoo import ZOO

    return Registry([*nodes.NODES, *ZOO])


@pytest.fixture
def engine(registry, tmp_path):
    from engine import Engine, MemoryCache

    eng = Engine(registry, cache=MemoryCache(64 << 20), output_dir=tmp_path / "out", workers=4)
    yield eng
    eng.close()


@pytest.fixture
def events():
    """A listener (call it with an event) that records every event it gets."""
    from zoo import Recorder

    return Recorder()
