"""Fixtures for the image nodes: tiny Stable Diffusion models in a models root, an engine with a manager."""

from __future__ import annotations

from pathlib import Path

import pytest
from image_helpers import INPAINT, PIX2PIX, TINY


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A models folder whose local root holds the three tiny pipelines (built once per session)."""
    from tiny import tiny_stable_diffusion

    root = tmp_path_factory.mktemp("image-models")
    for name, channels in ((TINY, 4), (INPAINT, 9), (PIX2PIX, 8)):
        tiny_stable_diffusion(root / "local" / name, unet_channels=channels)
    return root


@pytest.fixture
def manager(models_dir):
    """A CPU model manager over the tiny models (fresh per test: its counters start at zero)."""
    from engine.models import ModelManager, ModelStore

    return ModelManager(ModelStore(models_dir), device="cpu", gpu_budget=1 << 30, cpu_budget=1 << 30)


@pytest.fixture
def make_engine(registry, manager, tmp_path):
    """`make_engine(cache=True)`: an engine over the real nodes with `manager`, writing to tmp_path/out."""
    from engine import Engine, MemoryCache, NullCache

    made = []

    def make(cache: bool = True, models=None):
        eng = Engine(registry, cache=MemoryCache(256 << 20) if cache else NullCache(),
                     models=models or manager, output_dir=tmp_path / "out", workers=2)
        made.append(eng)
        return eng

    yield make
    for eng in made:
        eng.close()


@pytest.fixture
def image_engine(make_engine):
    """An engine with an output cache and the CPU manager."""
    return make_engine()

