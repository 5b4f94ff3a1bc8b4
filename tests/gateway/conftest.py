"""Gateway fixtures: an in-process app over the real nodes plus the stub zoo, and a real `flow serve`."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from gateway_support import FAILING, ROOT, SLOW, Served


@pytest.fixture
def workflows_dir(tmp_path) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    shutil.copy(ROOT / "workflows" / "hello.json", folder)
    (folder / "slow.json").write_text(json.dumps(SLOW))
    (folder / "failing.json").write_text(json.dumps(FAILING))
    return folder


@pytest.fixture
def settings(tmp_path, workflows_dir):
    from engine.settings import Settings

    return Settings(output_dir=tmp_path / "out", workflows_dir=workflows_dir, jobs_db=tmp_path / "jobs.sqlite3")


@pytest.fixture
def gateway(registry, settings):
    """``gateway(**settings changes)`` -> an async context manager yielding an aiohttp TestClient."""
    from aiohttp.test_utils import TestClient, TestServer

    from engine import Engine, MemoryCache
    from server import create_app

    @contextlib.asynccontextmanager
    async def make(**changes):
        conf = settings.with_(**changes)
        engine = Engine(registry, cache=MemoryCache(64 << 20), output_dir=conf.output_dir)
        client = TestClient(TestServer(create_app(engine, conf)))
        await client.start_server()
        try:
            yield client
        finally:
            await client.close()
            engine.close()

    return make


@pytest.fixture
def served(tmp_path):
    """``served(**env)`` -> a started real server; all are stopped at the end."""
    started = []

    def make(**env) -> Served:
        server = Served(tmp_path, {k: str(v) for k, v in env.items()})
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
