"""Fixtures for the text nodes: a tiny chat model on disk, a model store and manager over it, an
engine with the manager, and the fake Ollama and OpenAI-compatible servers (see llm_fakes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llm_fakes import OLLAMA_NAME, FakeOllama, FakeOpenAI  # noqa: E402
from llm_tiny import TINY, TINY_VISION, TinyGenerator, build_tiny_llm, build_tiny_vlm  # noqa: E402

from engine import IMAGE, INT, Engine, Input, Node, NullCache, Output, Registry  # noqa: E402



class Picture:
    """A minimal IMAGE value (the media protocol over a PIL image) for describe_image tests."""

    def __init__(self, pil):
        self.pil = pil

    @property
    def nbytes(self) -> int:
        return self.pil.width * self.pil.height * len(self.pil.getbands())

    def to_host(self):
        return self

    def write_file(self, files, prefix):
        path = files.new_path(prefix, ".png")
        self.pil.save(path)
        return path


class SolidImage(Node):
    """Make a solid-colour test image of the given size."""

    type = "testing.solid_image"
    blocking = False
    inputs = {"width": Input(INT, "pixels", default=24), "height": Input(INT, "pixels", default=16)}
    outputs = {"image": Output(IMAGE, "the image")}

    def run(self, ctx, width, height):
        from PIL import Image

        return {"image": Picture(Image.new("RGB", (width, height), (200, 30, 40)))}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread while these tests run: a ~30k-parameter model is all thread hand-off otherwise
    (measured 6x faster on a busy 2-core machine); the previous setting is restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A model store folder whose local root holds the tiny chat model (`tiny-llm`) and vision model (`tiny-vlm`)."""
    root = tmp_path_factory.mktemp("text-models")
    build_tiny_llm(root / "local" / TINY)
    build_tiny_vlm(root / "local" / TINY_VISION)
    return root


@pytest.fixture(scope="session")
def generator(models_dir) -> TinyGenerator:
    """The tiny model loaded directly, without flow (the fake servers and the reference answers)."""
    return TinyGenerator(models_dir / "local" / TINY)


@pytest.fixture
def fake_ollama(generator):
    """The fake Ollama server (it stands in for Ollama, which cannot be installed here), with `tiny:latest`."""
    server = FakeOllama(generator).start()
    server.add(OLLAMA_NAME, size=2000)
    yield server
    server.stop()


@pytest.fixture
def fake_openai(generator):
    """A local OpenAI-compatible server serving the model `tiny`."""
    server = FakeOpenAI(generator).start()
    yield server
    server.stop()


# manager id -> (manager, the TextBackends its test asked for); the manager is kept alive with it
_configs: dict[int, tuple] = {}


@pytest.fixture
def make_manager(models_dir):
    """`make_manager(ollama_url=None, pull_on_demand=False, config=None, **manager_kw)`: a CPU model manager."""
    from engine.models import ModelManager, ModelStore, OllamaClient

    def make(ollama_url: str | None = None, *, pull_on_demand: bool = False, config=None, **kw) -> ModelManager:
        ollama = OllamaClient(ollama_url) if ollama_url else None
        store = ModelStore(models_dir, ollama=ollama, pull_on_demand=pull_on_demand)
        budgets = {"gpu_budget": 1 << 30, "cpu_budget": 1 << 30, **kw}
        manager = ModelManager(store, device="cpu", ollama=ollama, **budgets)
        if config is not None:
            _configs[id(manager)] = (manager, config)  # make_engine gives it to the engine
        return manager

    return make


@pytest.fixture
def make_engine(tmp_path):
    """`make_engine(manager)`: an engine over every shipped node (plus a test image source), no output cache."""
    import nodes

    engines = []

    def make(manager) -> Engine:
        config = _configs.get(id(manager), (None, None))[1]
        engine = Engine(Registry([*nodes.NODES, SolidImage]), cache=NullCache(), models=manager,
                        output_dir=tmp_path / "out", workers=2, config={"text": config} if config else None)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def run_node(make_engine, make_manager):
    """`run_node(type, inputs, manager=None, listener=None)`: run one node, return (outputs, RunResult)."""
    from zoo import G

    def run(node_type: str, inputs: dict, manager=None, listener=None, extra: dict | None = None):
        engine = make_engine(manager if manager is not None else make_manager())
        graph = G()
        for nid, (etype, einputs) in (extra or {}).items():
            graph.node(nid, etype, **einputs)
        graph.node("n", node_type, **inputs)
        result = engine.run_sync(graph.build(), listener=listener)
        return {k.split(".", 1)[1]: v for k, v in result.outputs.items() if k.startswith("n.")}, result

    return run
