"""Fixtures of the extraction tests: the local test site."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def site():
    from extract_site import Site

    served = Site()
    yield served
    served.close()


# -- tiny models behind the fake Ollama server (helpers of tests/text, reused) ---------------------

TEXT_TESTS = Path(__file__).resolve().parent.parent / "text"
if str(TEXT_TESTS) not in sys.path:
    sys.path.insert(0, str(TEXT_TESTS))



@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory):
    """The tiny chat model built offline (tests/text/llm_tiny.py), loaded once."""
    from llm_tiny import TINY, TinyGenerator, build_tiny_llm

    root = tmp_path_factory.mktemp("extract-models")
    build_tiny_llm(root / "local" / TINY)
    return TinyGenerator(root / "local" / TINY)


@pytest.fixture
def ollama(tiny_generator):
    """The fake Ollama server (tests/text/llm_fakes.py) serving `tiny:latest` for chat and vision."""
    from llm_fakes import OLLAMA_NAME, FakeOllama

    server = FakeOllama(tiny_generator).start()
    server.add(OLLAMA_NAME, size=2000, capabilities=("completion", "vision"))
    yield server
    server.stop()


@pytest.fixture
def llm_settings(tmp_path, ollama):
    """Settings of a server whose text nodes use the fake Ollama, and that may fetch the local test site."""
    from engine.settings import Settings

    root = Path(__file__).resolve().parents[2]
    return Settings(output_dir=tmp_path / "out", workflows_dir=root / "workflows", jobs_db=tmp_path / "jobs.sqlite3",
                    models_dir=tmp_path / "models", ollama_url=ollama.url, fetch_allow_private=True,
                    probe_device=False)


@pytest.fixture
def llm_engine(llm_settings):
    """An engine over every shipped node with a CPU model manager on the fake Ollama, and an output cache."""
    import nodes
    from engine import Engine, MemoryCache
    from engine.models import ModelManager, ModelStore, OllamaClient
    from nodes.llm import TextBackends

    client = OllamaClient(llm_settings.ollama_url)
    manager = ModelManager(ModelStore(llm_settings.models_dir, ollama=client), device="cpu", ollama=client,
                           gpu_budget=1 << 30, cpu_budget=1 << 30)
    engine = Engine(nodes.registry(), cache=MemoryCache(64 << 20), models=manager,
                    output_dir=llm_settings.output_dir, workers=2,
                    config={"text": TextBackends.from_settings(llm_settings)})
    yield engine
    engine.close()


@pytest.fixture
def llm_gateway(llm_engine, llm_settings):
    """``async with llm_gateway() as client``: the app over ``llm_engine`` (the repository's saved workflows)."""
    import contextlib

    from aiohttp.test_utils import TestClient, TestServer

    from server import create_app

    @contextlib.asynccontextmanager
    async def make():
        client = TestClient(TestServer(create_app(llm_engine, llm_settings)))
        await client.start_server()
        try:
            yield client
        finally:
            await client.close()

    return make


@pytest.fixture
def gateway(tmp_path):
    """``gateway(**settings)``: the app over the shipped nodes and workflows, no model manager."""
    import contextlib

    from aiohttp.test_utils import TestClient, TestServer

    import nodes
    from engine import Engine, MemoryCache
    from engine.settings import Settings
    from server import create_app

    root = Path(__file__).resolve().parents[2]

    @contextlib.asynccontextmanager
    async def make(**changes):
        conf = Settings(output_dir=tmp_path / "out", workflows_dir=root / "workflows",
                        jobs_db=tmp_path / "jobs.sqlite3", probe_device=False, **changes)
        engine = Engine(nodes.registry(), cache=MemoryCache(1 << 20), output_dir=conf.output_dir)
        client = TestClient(TestServer(create_app(engine, conf)))
        await client.start_server()
        try:
            yield client
        finally:
            await client.close()
            engine.close()

    return make
