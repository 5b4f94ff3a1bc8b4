"""The model manager under a small budget with tiny torch modules (CPU device, accounting only)."""

from __future__ import annotations

import threading

import pytest
import torch

from engine.errors import InvalidModelRef, ModelNotFound, OutOfMemory
from engine.models import Counters
from engine.models.sizes import model_bytes

MiB = 1 << 20


def places(manager) -> dict[str, str]:
    return {m.ref.rsplit("/", 1)[1]: m.place for m in manager.loaded()}


def use(manager, name, loader):
    with manager.lease(name, loader) as model:
        return model


def test_manager_lease_loads_once_then_hits(make_manager, loader_of):
    manager, calls = make_manager(10), []
    first = use(manager, "a", loader_of(4, calls))
    second = use(manager, "a", loader_of(4, calls))
    assert first is second and calls == ["a"]
    assert manager.counters == Counters(hits=1, loads=1, moves_to_device=1)
    [held] = manager.loaded()
    assert (held.size, held.place, held.pinned) == (4 * MiB, "device", 0)


def test_manager_offloads_least_recently_used(make_manager, loader_of):
    manager = make_manager(10)
    for name in "ab":
        use(manager, name, loader_of(4))
    use(manager, "c", loader_of(4))  # a is the oldest idle model
    assert places(manager) == {"a": "cpu", "b": "device", "c": "device"}
    use(manager, "a", loader_of(4))  # back from RAM (a hit); now b is the oldest
    assert places(manager) == {"a": "device", "b": "cpu", "c": "device"}
    assert manager.counters == Counters(hits=1, loads=3, moves_to_device=4, offloads=2)


def test_manager_drops_oldest_offloaded_when_ram_is_full(make_manager, loader_of):
    manager, calls = make_manager(8, cpu_mib=4), []
    for name in "abcd":
        use(manager, name, loader_of(4, calls))
    # c offloaded a, d offloaded b; RAM holds one model, so a (the older) was dropped.
    assert places(manager) == {"b": "cpu", "c": "device", "d": "device"}
    use(manager, "a", loader_of(4, calls))  # dropped means loaded from disk again
    assert calls == ["a", "b", "c", "d", "a"]
    assert manager.counters == Counters(hits=0, loads=5, moves_to_device=5, offloads=3, drops=2)


def test_manager_never_evicts_a_leased_model(make_manager, loader_of):
    manager = make_manager(8)
    with manager.lease("a", loader_of(4)), manager.lease("b", loader_of(4)):
        with pytest.raises(OutOfMemory, match=r"model .*/c needs 4.00 MiB.*in use: .*/a"):
            use(manager, "c", loader_of(4))
        assert places(manager) == {"a": "device", "b": "device", "c": "cpu"}
    use(manager, "c", loader_of(4))  # once released, room is made as usual
    assert places(manager)["c"] == "device" and manager.counters.offloads == 1


def test_manager_concurrent_leases_share_one_load(make_manager):
    manager, loads, gate = make_manager(10), [], threading.Event()

    def slow_loader(path):
        loads.append(path.name)
        gate.wait(5)
        return torch.nn.Linear(4, 4)

    seen, errors = [], []

    def worker():
        try:
            with manager.lease("a", slow_loader) as model:
                seen.append(model)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert not errors and loads == ["a"] and len(seen) == 8 and all(m is seen[0] for m in seen)
    assert manager.counters.loads == 1 and manager.counters.hits == 7
    assert manager.loaded()[0].pinned == 0


def test_manager_failed_load_is_not_cached(make_manager, loader_of):
    manager = make_manager(10)

    def broken(path):
        raise ValueError("bad weights")

    with pytest.raises(ValueError, match="bad weights"):
        use(manager, "a", broken)
    assert manager.loaded() == []
    use(manager, "a", loader_of(1))
    assert manager.counters.loads == 1


def test_manager_report_on_cpu_says_there_is_no_gpu(make_manager, loader_of):
    manager = make_manager(10)
    use(manager, "a", loader_of(2))
    report = manager.report()
    assert report.device == "cpu" and report.budget == 10 * MiB and report.used == 2 * MiB
    assert "no GPU" in report.budget_source and "configured" in report.budget_source
    body = report.to_json()
    assert body["models"][0]["place"] == "device" and body["counters"]["loads"] == 1


def test_manager_unload_one_and_all_keeps_leased(make_manager, loader_of):
    manager = make_manager(10)
    for name in "ab":
        use(manager, name, loader_of(1))
    assert manager.unload("a")["unloaded"][0].endswith("/a")
    with manager.lease("c", loader_of(1)):
        result = manager.unload()
    assert [r.rsplit("/", 1)[1] for r in result["unloaded"]] == ["b"]
    assert [r.rsplit("/", 1)[1] for r in result["busy"]] == ["c"]
    assert places(manager) == {"c": "device"}


def test_manager_free_makes_room_for_another_process(make_manager, loader_of):
    manager = make_manager(10)
    for name in "ab":
        use(manager, name, loader_of(4))
    assert manager.free(6 * MiB) == 6 * MiB
    assert places(manager) == {"a": "cpu", "b": "device"}


def test_manager_missing_hf_model_names_the_pull_command(make_manager, loader_of):
    manager = make_manager(10)
    with pytest.raises(ModelNotFound, match=r"pull it with: flow pull hf:acme/tiny@v1"):
        use(manager, "hf:acme/tiny@v1", loader_of(1))
    with pytest.raises(InvalidModelRef):
        use(manager, "../etc", loader_of(1))
    assert manager.loaded() == []


def test_sizes_count_parameters_buffers_and_pipeline_components():
    tied = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight
    assert model_bytes(tied) == 10 * 4 * 4

    class Pipeline:  # what diffusers pipelines expose: a dict of components, some not torch
        def __init__(self):
            unet = torch.nn.Linear(8, 8)  # 72 floats
            norm = torch.nn.BatchNorm1d(4)  # 8 params + 8 running stats + 1 int64 counter
            self.components = {"unet": unet, "vae": norm, "text_encoder": unet, "tokenizer": object(),
                               "scheduler": None}

    assert model_bytes(Pipeline()) == 72 * 4 + 16 * 4 + 8
    assert model_bytes((torch.nn.Linear(2, 2, dtype=torch.float16), "tokenizer")) == 6 * 2
