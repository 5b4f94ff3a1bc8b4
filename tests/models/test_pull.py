"""Pulling from a local Hugging Face Hub with the real `huggingface_hub` client, then loading offline."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save

from engine.errors import FlowError, ModelNotFound, PullFailed
from engine.models import ModelManager, ModelStore
from engine.models.hf import select_files


@pytest.fixture(autouse=True)
def local_hub_only(hub, monkeypatch):
    """Let the hub client talk to the local server only (tests/conftest.py sets HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # A call that forgot endpoint= goes to a closed local port instead of huggingface.co.
    closed = "http://127.0.0.1:9"
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", closed + "/{repo_id}/resolve/{revision}/{filename}")


def weights(n: int, seed: int = 0) -> bytes:
    return save({"weight": torch.arange(n, dtype=torch.float32) + seed})


def tiny_model_repo() -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"model_type": "blob", "n": 4096}).encode(),
        "tokenizer.json": b'{"version": "1.0"}',
        "model.safetensors": weights(4096),
        "model.fp16.safetensors": save({"weight": torch.zeros(4096, dtype=torch.float16)}),
        "pytorch_model.bin": b"PICKLE" * 100,  # never fetched: pickles can run code
        "modeling_blob.py": b"import os; os.system('echo pwned')",  # remote code: never fetched
        "README.md": b"# tiny",
    }


def tiny_pipeline_repo() -> dict[str, bytes]:
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "safety_checker": [None, None]}
    return {
        "model_index.json": json.dumps(index).encode(),
        "sd_turbo.safetensors": weights(8192),  # a single-file checkpoint the pipeline does not load
        "unet/config.json": b'{"sample_size": 8}',
        "unet/diffusion_pytorch_model.safetensors": weights(2048),
        "unet/diffusion_pytorch_model.fp16.safetensors": save({"weight": torch.ones(2048, dtype=torch.float16)}),
        "tokenizer/vocab.json": b"{}",
        "tokenizer/merges.txt": b"#version: 0.2\n",
        "safety_checker/model.safetensors": weights(16),
    }


def fetched(hub) -> list[str]:
    return sorted({p.split("/resolve/", 1)[1].split("/", 1)[1] for m, p, h in hub.requests
                   if m == "GET" and "/resolve/" in p})


def test_select_files_keeps_what_a_pipeline_loads():
    paths = list(tiny_pipeline_repo())
    assert select_files(paths, ["unet", "tokenizer"], None) == [
        "model_index.json", "tokenizer/merges.txt", "tokenizer/vocab.json",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in select_files(paths, ["unet"], "fp16")
    assert select_files(list(tiny_model_repo()), None, None) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_pull_hf_fetches_only_needed_files_and_loads_offline(tmp_path, hub):
    hub.add_repo("acme/tiny", tiny_model_repo())
    store = ModelStore(tmp_path, hf_endpoint=hub.url)
    with pytest.raises(ModelNotFound, match=r"not pulled yet\); pull it with: flow pull hf:acme/tiny$"):
        store.path("hf:acme/tiny")
    seen = []
    folder = store.pull("hf:acme/tiny", progress=seen.append)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert fetched(hub) == ["config.json", "model.safetensors", "tokenizer.json"]
    total = sum(len(tiny_model_repo()[f]) for f in fetched(hub))
    assert seen[-1].status == "success" and max(p.completed or 0 for p in seen) == total

    hub.requests.clear()
    manager = ModelManager(store, device="cpu", gpu_budget=1 << 30)
    with manager.lease("hf:acme/tiny", lambda path: load_file(path / "model.safetensors")) as tensors:
        assert tensors["weight"][-1].item() == 4095
    assert hub.requests == []  # loading needs no network
    assert [(m.ref, m.source) for m in store.list()] == [("hf:acme/tiny", "hf")]


def test_pull_hf_pipeline_with_fp16_variant(tmp_path, hub):
    hub.add_repo("acme/tiny-sd", tiny_pipeline_repo())
    folder = ModelStore(tmp_path, hf_endpoint=hub.url).pull("hf:acme/tiny-sd", variant="fp16")
    assert fetched(hub) == ["model_index.json", "tokenizer/merges.txt", "tokenizer/vocab.json",
                            "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors"]
    assert load_file(folder / "unet/diffusion_pytorch_model.fp16.safetensors")["weight"].dtype == torch.float16


def test_pull_hf_interrupted_download_resumes_with_range(tmp_path, hub, monkeypatch):
    from huggingface_hub import constants

    # The client writes in 10 MB chunks; smaller ones let the tiny file's first half reach the disk.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    files = tiny_model_repo()
    hub.add_repo("acme/tiny", files)
    hub.interrupt_once = {"model.safetensors"}
    folder = ModelStore(tmp_path, hf_endpoint=hub.url).pull("hf:acme/tiny")
    first, second = hub.gets("model.safetensors")
    assert "range" not in first
    start = int(second["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= len(files["model.safetensors"]) // 2  # asked only for what it did not have
    assert (folder / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_pull_hf_failed_pull_reruns_only_what_is_missing(tmp_path, hub):
    hub.add_repo("acme/tiny", tiny_model_repo())
    hub.fail_once = {"model.safetensors"}
    store = ModelStore(tmp_path, hf_endpoint=hub.url)
    with pytest.raises(PullFailed, match=r"run `flow pull hf:acme/tiny` again to resume"):
        store.pull("hf:acme/tiny")
    with pytest.raises(ModelNotFound, match="an earlier pull was interrupted"):
        store.path("hf:acme/tiny")
    done_before = set(fetched(hub)) - {"model.safetensors"}
    hub.requests.clear()
    store.pull("hf:acme/tiny")
    assert not done_before & set(fetched(hub)) and "model.safetensors" in fetched(hub)
    assert store.path("hf:acme/tiny").is_dir()


def test_pull_hf_token_is_sent_for_gated_repos(tmp_path, hub):
    hub.add_repo("acme/gated", tiny_model_repo())
    hub.token = "hf_secret"
    with pytest.raises(FlowError, match="gated.*set HF_TOKEN"):
        ModelStore(tmp_path, hf_endpoint=hub.url).pull("hf:acme/gated")
    ModelStore(tmp_path, hf_endpoint=hub.url, hf_token="hf_secret").pull("hf:acme/gated")
    assert hub.gets("model.safetensors")[-1]["authorization"] == "Bearer hf_secret"


def test_pull_hf_refuses_repos_without_safetensors(tmp_path, hub):
    hub.add_repo("acme/pickles", {"config.json": b"{}", "pytorch_model.bin": b"PICKLE"})
    with pytest.raises(FlowError, match="no .safetensors weights"):
        ModelStore(tmp_path, hf_endpoint=hub.url).pull("hf:acme/pickles")
    assert fetched(hub) == []


def test_pull_hf_on_demand_when_configured(tmp_path, hub):
    hub.add_repo("acme/tiny", tiny_model_repo())
    store = ModelStore(tmp_path, hf_endpoint=hub.url, pull_on_demand=True)
    manager = ModelManager(store, device="cpu", gpu_budget=1 << 30)
    with manager.lease("hf:acme/tiny", lambda path: load_file(path / "model.safetensors")) as tensors:
        assert tensors["weight"].numel() == 4096
    assert "model.safetensors" in fetched(hub)
