"""The output cache (bounded, LRU, host-only) and the safe-path helper."""

from __future__ import annotations

import os

import pytest

from engine import MemoryCache, NullCache
from engine.cache import size_of
from engine.paths import OutputFiles, UnsafePath, safe_join


def test_cache_evicts_least_recently_used_within_byte_bound():
    cache = MemoryCache(max_bytes=3 * (size_of("x" * 1000) + 64) + 10)
    for key in (b"a", b"b", b"c"):
        cache.put(key, {"v": key.decode() * 1000})
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"d", {"v": "d" * 1000})
    assert cache.get(b"b") is None and cache.get(b"a") is not None and cache.get(b"d") is not None
    stats = cache.stats()
    assert stats["entries"] == 3 and stats["evictions"] == 1 and stats["bytes"] <= stats["max_bytes"]


def test_cache_declines_values_larger_than_its_bound():
    cache = MemoryCache(max_bytes=100)
    cache.put(b"k", {"v": "x" * 1000})
    assert cache.get(b"k") is None and cache.stats()["entries"] == 0


class FakeDevice:
    def __init__(self, type_):
        self.type = type_


class FakeGpuTensor:
    """Duck-types a torch tensor living on a GPU."""

    nbytes = 16

    def __init__(self, device="cuda"):
        self.device = FakeDevice(device)

    def cpu(self):
        return FakeGpuTensor("cpu")


def test_cache_never_pins_gpu_memory():
    cache = MemoryCache(1 << 20)
    cache.put(b"k", {"t": FakeGpuTensor(), "ts": [FakeGpuTensor()]})
    stored = cache.get(b"k")
    assert stored["t"].device.type == "cpu" and stored["ts"][0].device.type == "cpu"


def test_null_cache_keeps_nothing():
    cache = NullCache()
    cache.put(b"k", {"v": 1})
    assert cache.get(b"k") is None


def test_engine_with_cache_off_reruns_everything(registry, tmp_path):
    from engine import Engine
    from zoo import chain

    engine = Engine(registry, cache=NullCache(), output_dir=tmp_path)
    wf = chain(5).build()
    engine.run_sync(wf)
    assert len(engine.run_sync(wf).executed) == 5
    engine.close()


@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/etc/passwd", "a\x00b", "link/x"])
def test_safe_join_refuses_paths_leaving_the_root(tmp_path, relative):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path, root / "link")  # a symlink planted inside the root, pointing out
    with pytest.raises(UnsafePath):
        safe_join(root, relative)


def test_safe_join_accepts_paths_inside(tmp_path):
    assert safe_join(tmp_path, "a/b.txt") == (tmp_path / "a" / "b.txt").resolve()


def test_output_files_never_overwrite_and_refuse_bad_prefixes(tmp_path):
    files = OutputFiles(tmp_path)
    first, second = files.new_path("t/x", ".txt"), files.new_path("t/x", ".txt")
    assert first != second and first.name == "x_00001.txt" and second.name == "x_00002.txt"
    for prefix in ("../x", "/abs", "a/../../b", ""):
        with pytest.raises(UnsafePath):
            files.new_path(prefix, ".txt")
    with pytest.raises(UnsafePath):
        files.new_path("ok", ".txt/../x")


def test_cache_counts_what_a_value_keeps_alive():
    """Views count their base array, plain objects their fields, a value reached twice once."""
    import numpy as np

    class Holder:
        def __init__(self):
            self.blob = b"x" * 100_000

    class Slotted:
        __slots__ = ("text",)

        def __init__(self):
            self.text = "y" * 50_000

    base = np.zeros((500, 1000), dtype=np.float32)  # 2 MB
    assert size_of(base[:1]) >= base.nbytes  # one row of it keeps all of it alive
    assert size_of(Holder()) >= 100_000 and size_of(Slotted()) >= 50_000
    big = "z" * 1_000_000
    assert 1_000_000 <= size_of([big, big]) < 1_100_000
    assert size_of({"nested": [{"deep": big}]}) >= 1_000_000


def test_output_files_make_a_removed_folder_again(tmp_path):
    import shutil

    files = OutputFiles(tmp_path / "out")
    first = files.new_path("texts/story", ".txt")
    shutil.rmtree(tmp_path / "out" / "texts")  # removed while the server runs
    again = files.new_path("texts/story", ".txt")
    assert again.parent == first.parent and again.exists() and again.name == "story_00002.txt"
