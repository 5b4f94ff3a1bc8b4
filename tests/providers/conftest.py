"""Fixtures of the provider tests: a local AI Horde stand-in, engines and gateways configured to use it."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from horde_standin import HordeStandin

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def horde():
    """A started AI Horde stand-in on 127.0.0.1 (stopped after the test)."""
    standin = HordeStandin().start()
    yield standin
    standin.stop()


@pytest.fixture
def horde_settings(horde, tmp_path):
    """``horde_settings(**changes)``: settings that send horde: refs to the stand-in, privacy flexible."""
    from engine.settings import Settings

    folder = tmp_path / "workflows"
    if not folder.exists():
        (folder / "presets").mkdir(parents=True)
        for name in ("image_gen.json", "text_gen.json"):
            shutil.copy(ROOT / "workflows" / name, folder)
        for preset in (ROOT / "workflows" / "presets").glob("*.json"):
            shutil.copy(preset, folder / "presets")

    def make(**changes) -> Settings:
        base = dict(output_dir=tmp_path / "out", workflows_dir=folder, jobs_db=tmp_path / "jobs.sqlite3",
                    models_dir=tmp_path / "models", privacy="flexible", horde_url=horde.url,
                    horde_poll_interval=0.05, fetch_allow_private=True, probe_device=False)
        return Settings(**{**base, **changes})

    return make


@pytest.fixture
def horde_engine(registry, tmp_path):
    """``horde_engine(settings)``: an engine with the settings as its node configuration and an empty model store."""
    from engine import Engine, MemoryCache
    from engine.models import ModelManager, ModelStore
    from nodes.llm import TextBackends

    made = []

    def make(settings, cache: bool = True):
        from engine import NullCache

        manager = ModelManager(ModelStore(settings.models_dir), device="cpu", gpu_budget=1 << 30, cpu_budget=1 << 30)
        eng = Engine(registry, cache=MemoryCache(64 << 20) if cache else NullCache(), models=manager,
                     output_dir=settings.output_dir, workers=2, config={"text": TextBackends.from_settings(settings)})
        made.append(eng)
        return eng

    yield make
    for eng in made:
        eng.close()


@pytest.fixture
def horde_gateway(horde_engine):
    """``horde_gateway(settings)`` -> an async context manager yielding an aiohttp TestClient of the gateway."""
    from aiohttp.test_utils import TestClient, TestServer

    from server import create_app

    @contextlib.asynccontextmanager
    async def make(settings):
        client = TestClient(TestServer(create_app(horde_engine(settings), settings)))
        await client.start_server()
        try:
            yield client
        finally:
            await client.close()

    return make
