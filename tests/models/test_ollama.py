"""Sharing the card with Ollama, against a local server speaking its documented API."""

from __future__ import annotations

import socket
import threading

import pytest

from engine.errors import ModelNotFound, PullFailed
from engine.models import ModelStore, OllamaClient, OllamaModel, OllamaUnavailable

MiB = 1 << 20


def test_ollama_reports_what_it_holds_and_unloads(ollama_server):
    ollama_server.tags = {"llama3.2:latest": 2000, "qwen2.5:7b": 4700}
    ollama_server.loaded = {"llama3.2:latest": 2 * MiB, "qwen2.5:7b": 0}
    client = OllamaClient(ollama_server.url)
    assert client.vram_bytes() == 2 * MiB
    assert client.unload_all() == ["llama3.2:latest"]
    assert ollama_server.unloads == ["llama3.2:latest"] and "llama3.2:latest" not in ollama_server.loaded
    with pytest.raises(ModelNotFound, match="model 'nope:latest' not found"):
        client.unload("nope:latest")


def test_ollama_vram_counts_against_the_budget_and_is_unloaded_for_room(make_manager, loader_of, ollama_server):
    ollama_server.tags = {"llama3.2:latest": 6 * MiB}
    ollama_server.loaded = {"llama3.2:latest": 6 * MiB}
    manager = make_manager(10, ollama=OllamaClient(ollama_server.url))
    with manager.lease("a", loader_of(4)):  # 6 + 4 fits in 10
        assert manager.report().ollama_vram == 6 * MiB and ollama_server.unloads == []
        with manager.lease("b", loader_of(4)):  # a is leased: only Ollama can make room
            assert ollama_server.unloads == ["llama3.2:latest"]
    assert manager.counters.ollama_unloads == 1 and manager.report().ollama_vram == 0


def test_ollama_idle_torch_models_go_first(make_manager, loader_of, ollama_server):
    ollama_server.tags = {"llama3.2:latest": 4 * MiB}
    ollama_server.loaded = {"llama3.2:latest": 4 * MiB}
    manager = make_manager(10, ollama=OllamaClient(ollama_server.url))
    for name in "ab":  # 4 (Ollama) + 4 + 4 > 10: a is offloaded, Ollama keeps its model
        with manager.lease(name, loader_of(4)):
            pass
    assert ollama_server.unloads == [] and manager.counters.offloads == 1


def test_ollama_unreachable_is_not_counted(make_manager, loader_of):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = OllamaClient(url, timeout=1)
    with pytest.raises(OllamaUnavailable, match="did not answer"):
        client.loaded()
    manager = make_manager(10, ollama=client)
    with manager.lease("a", loader_of(4)):
        pass
    assert manager.report().ollama_vram == 0


def test_ollama_pull_streams_progress(tmp_path, ollama_server):
    store = ModelStore(tmp_path, ollama=OllamaClient(ollama_server.url))
    seen = []
    assert store.pull("ollama:qwen2.5:7b", progress=seen.append) is None
    assert seen[0].status == "pulling manifest" and seen[-1].status == "success"
    assert [(p.completed, p.total) for p in seen if p.completed] == [(1000, 3000), (2000, 3000), (3000, 3000)]
    assert "qwen2.5:7b" in ollama_server.tags
    assert [m.ref for m in store.list()] == ["ollama:qwen2.5:7b"]


def test_ollama_pull_error_line_mid_stream_fails(tmp_path, ollama_server):
    ollama_server.fail_pull = {"llama3.2:latest"}
    store = ModelStore(tmp_path, ollama=OllamaClient(ollama_server.url))
    seen = []
    with pytest.raises(PullFailed, match=r"connection reset; run `flow pull ollama:llama3.2:latest` again"):
        store.pull("ollama:llama3.2", progress=seen.append)
    assert seen[-1].completed == 2000 and ollama_server.tags == {}


def test_ollama_missing_model_pulls_on_demand_only_when_allowed(tmp_path, ollama_server):
    client = OllamaClient(ollama_server.url)
    with pytest.raises(ModelNotFound, match=r"pull it with: flow pull ollama:llama3.2:latest"):
        ModelStore(tmp_path, ollama=client).ensure_ollama("ollama:llama3.2")
    assert ModelStore(tmp_path, ollama=client, pull_on_demand=True).ensure_ollama("ollama:llama3.2") == "llama3.2:latest"
    assert "llama3.2:latest" in ollama_server.tags


class WatchedOllama:
    """An Ollama client stand-in that checks, on every call, that another thread can use the manager meanwhile."""

    def __init__(self, held: dict[str, int]):
        self.held = held
        self.manager = None
        self.calls: list[str] = []
        self.stalled: list[str] = []  # calls during which the manager stayed locked

    def _watch(self, call: str) -> None:
        self.calls.append(call)
        done = threading.Event()
        threading.Thread(target=lambda: (self.manager.loaded(), done.set()), daemon=True).start()
        if not done.wait(2):
            self.stalled.append(call)

    def loaded(self) -> list[OllamaModel]:
        self._watch("ps")
        return [OllamaModel(name, vram, vram) for name, vram in self.held.items()]

    def unload(self, name: str) -> None:
        self._watch("unload")
        del self.held[name]


def test_ollama_is_asked_and_unloaded_outside_the_manager_lock(make_manager, loader_of):
    client = WatchedOllama({"llama3.2:latest": 6 * MiB})
    manager = client.manager = make_manager(10, ollama=client)
    with manager.lease("a", loader_of(4)):
        with manager.lease("b", loader_of(4)):  # a is leased: room comes from Ollama
            assert manager.report().used == 8 * MiB
    assert client.calls == ["ps", "ps", "unload", "ps"] and client.stalled == []
    assert manager.counters.ollama_unloads == 1
