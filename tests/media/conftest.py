"""Fixtures for the music and video tests: tiny models under a local model root, an engine that leases them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_media import build_musicgen, build_wan  # noqa: E402

MiB = 1 << 20


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A model store folder whose local root holds the tiny models (built once per session)."""
    root = tmp_path_factory.mktemp("media-models")
    build_musicgen(root / "local" / "musicgen-tiny")
    build_wan(root / "local" / "wan-tiny")
    (root / "local" / "not-a-model").mkdir()
    (root / "local" / "not-a-model" / "config.json").write_text('{"model_type": "bert"}')
    return root


@pytest.fixture
def manager(models_dir):
    """A CPU model manager over the tiny models' store."""
    from engine.models import ModelManager, ModelStore

    return ModelManager(ModelStore(models_dir), device="cpu", gpu_budget=512 * MiB, cpu_budget=512 * MiB)


@pytest.fixture
def media_engine(registry, manager, tmp_path):
    """An engine over every registered node with the model manager, writing under tmp_path/out."""
    from engine import Engine, MemoryCache

    eng = Engine(registry, cache=MemoryCache(256 << 20), models=manager, output_dir=tmp_path / "out", workers=2)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def clip_models(models_dir) -> Path:
    """The tiny LLM (tests/text) and tiny Stable Diffusion (tests/tiny.py) beside the music and video models."""
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent / "text"))
    try:
        from llm_tiny import build_tiny_llm
        from tiny import tiny_stable_diffusion
    finally:
        sys.path.remove(str(here.parent / "text"))
    build_tiny_llm(models_dir / "local" / "tiny-llm")
    tiny_stable_diffusion(models_dir / "local" / "tiny-sd")
    return models_dir
