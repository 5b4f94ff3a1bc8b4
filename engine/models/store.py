"""The model store: where models live on disk, finding them, listing them, and pulling them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..cancel import OnCancel
from ..errors import FlowError, InvalidModelRef, ModelNotFound, NotConfigured
from . import hf
from .ollama import OllamaClient, PullProgress
from .refs import ModelRef, parse_ref

log = logging.getLogger("flow.models")

Progress = Callable[[PullProgress], None]


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A model available on this machine: its reference, bytes, and where it lives."""

    ref: str
    source: str
    size: int
    location: str
    #: what it makes: text, image, video, audio, lora (None = not recognised); the web page's pickers filter by it
    kind: str | None = None
    #: a single-file checkpoint's family, from its keys: sd1, sd2, sdxl (see :func:`checkpoint_family`)
    family: str | None = None

    def to_json(self) -> dict:
        """JSON form for `flow models --json` and the gateway."""
        found = {"ref": self.ref, "source": self.source, "size": self.size, "location": self.location,
                 "kind": self.kind}
        if self.family is not None:
            found["family"] = self.family
        return found


class ModelStore:
    """Models on disk under one folder (hf cache in `hf/`, local models in `local/`), plus Ollama's."""

    def __init__(
        self,
        models_dir: str | Path,
        *,
        roots: Sequence[str | Path] = (),
        ollama: OllamaClient | None = None,
        hf_endpoint: str = hf.DEFAULT_ENDPOINT,
        hf_token: str | None = None,
        pull_on_demand: bool = False,
        timeouts: tuple[float, float] = (10.0, 300.0),
    ):
        self.models_dir = Path(models_dir)
        self.hf_cache = self.models_dir / "hf"
        #: folders where local model directories may live; the first is `<models_dir>/local`
        self.roots = (self.models_dir / "local", *map(Path, roots))
        self.ollama = ollama
        self.hf_endpoint = hf_endpoint
        self._hf_token = hf_token or None
        self.pull_on_demand = pull_on_demand
        #: (connect, read) seconds for Hugging Face requests the hub leaves untimed (FLOW_BACKEND_*_TIMEOUT)
        self.timeouts = timeouts

    def parse(self, text: object) -> ModelRef:
        """Validate a reference against this store's roots (see :func:`parse_ref`)."""
        return parse_ref(text, self.roots)

    def path(self, ref: ModelRef | str, progress: Progress | None = None) -> Path:
        """The local folder a torch loader reads `ref` from; pulls it first when pull-on-demand is on."""
        ref = ref if isinstance(ref, ModelRef) else self.parse(ref)
        if ref.source == "local":
            return ref.path
        if ref.source == "ollama":
            raise InvalidModelRef(f"{ref} is served by the Ollama server and has no folder a torch loader can read")
        found = hf.snapshot(self.hf_cache, ref)
        if found is not None:
            return found
        if not self.pull_on_demand:
            hf.require_snapshot(self.hf_cache, ref)  # raises ModelNotFound with the reason
        log.info("pulling %s on first use (pull-on-demand is on)", ref)
        return self.pull(ref, progress=progress)

    def ensure_ollama(self, ref: ModelRef | str, progress: Progress | None = None, *,
                      on_cancel: OnCancel | None = None) -> str:
        """Make sure Ollama has `ref` (pulling it when pull-on-demand is on); return its `NAME:TAG`."""
        ref = ref if isinstance(ref, ModelRef) else self.parse(ref)
        if ref.source != "ollama":
            raise InvalidModelRef(f"{ref} is not an Ollama model; write ollama:NAME[:TAG]")
        client = self._ollama_client()
        name = ref.ollama_name
        if not client.has(name):
            if not self.pull_on_demand:
                raise ModelNotFound(str(ref), ref.pull_command(), "Ollama does not have it")
            client.pull(name, progress, on_cancel=on_cancel)
        return name

    def pull(self, ref: ModelRef | str, *, variant: str | None = None, progress: Progress | None = None,
             on_cancel: OnCancel | None = None) -> Path | None:
        """Fetch `ref` (hf into the cache, ollama through the server); resumable. Returns the hf folder.

        With ``on_cancel`` (``ctx.on_cancel`` in a node), cancelling the job closes an Ollama pull's
        stream at once; a Hugging Face pull stops at its next progress report (``progress`` raises).
        """
        ref = ref if isinstance(ref, ModelRef) else self.parse(ref)
        if ref.source == "local":
            raise InvalidModelRef(f"{ref} is a local folder; there is nothing to pull")
        if ref.source == "ollama":
            self._ollama_client().pull(ref.ollama_name, progress, on_cancel=on_cancel)
            return None
        return hf.pull(self.hf_cache, ref, endpoint=self.hf_endpoint, token=self._hf_token,
                       variant=variant, progress=progress, timeouts=self.timeouts)

    def list(self) -> list[LocalModel]:
        """Every model on this machine: hf snapshots, local folders, and Ollama's (when reachable)."""
        found = [LocalModel(ref, "hf", size, str(path), folder_kind(path))
                 for ref, size, path in hf.local_models(self.hf_cache)]
        for root in self.roots:
            if root.is_dir():
                folders = {m.parent for pattern in ("*/config.json", "*/model_index.json") for m in root.glob(pattern)}
                # NAME.config/ beside NAME.safetensors is that checkpoint's configs, not a model of its own
                folders = {f for f in folders
                           if not (f.suffix == ".config" and f.with_suffix(".safetensors").is_file())}
                found += [LocalModel(str(f), "local", hf.dir_bytes(f), str(f), folder_kind(f)) for f in sorted(folders)]
                # single files at the top of a root or one folder down (checkpoints/, loras/), not a model's own
                files = {f for pattern in ("*.safetensors", "*/*.safetensors") for f in root.glob(pattern)
                         if f.is_file() and f.parent not in folders}
                for file in sorted(files):
                    family = checkpoint_family(file)
                    kind = "lora" if family == "lora" else "image" if family else None
                    found.append(LocalModel(str(file), "local", file.stat().st_size, str(file), kind,
                                            family if kind == "image" else None))
        if self.ollama is not None:
            try:
                found += [LocalModel(f"ollama:{m.name}", "ollama", m.size, f"Ollama at {self.ollama.url}", "text")
                          for m in self.ollama.local()]
            except FlowError as exc:
                log.warning("cannot list Ollama's models: %s", exc)
        return found

    def _ollama_client(self) -> OllamaClient:
        if self.ollama is None:
            raise NotConfigured("no Ollama server is configured; set FLOW_OLLAMA_URL (e.g. http://127.0.0.1:11434)")
        return self.ollama


def folder_kind(folder: Path) -> str | None:
    """What a model folder makes, from its model_index.json or config.json (None when not recognised)."""
    import json

    try:
        if (folder / "model_index.json").is_file():
            name = str(json.loads((folder / "model_index.json").read_text()).get("_class_name", ""))
            if any(word in name for word in ("Video", "Wan", "AnimateDiff")):
                return "video"
            if any(word in name for word in ("Audio", "Music")):
                return "audio"
            return "image"
        if (folder / "config.json").is_file():
            config = json.loads((folder / "config.json").read_text())
            names = " ".join(map(str, config.get("architectures") or [config.get("model_type", "")]))
            if "Musicgen" in names or "musicgen" in names:
                return "audio"
            if "CausalLM" in names or "ConditionalGeneration" in names:
                return "text"
    except (OSError, ValueError, AttributeError):
        pass
    return None


def safetensors_header(file: Path) -> dict:
    """The JSON header of a .safetensors file (tensor names, dtypes, shapes), read without loading weights."""
    import json
    import struct

    with open(file, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        if size > 100 << 20:
            raise ValueError(f"a header of {size} bytes")
        return json.loads(f.read(size))


def checkpoint_family(file: Path) -> str | None:
    """A single-file checkpoint's family from its tensor names (the original LDM layout): ``sd1``, ``sd2``,
    ``sdxl``, ``sdxl-refiner``, with ``-inpaint`` for a 9-channel UNet; ``lora`` for a LoRA; or None (not a
    checkpoint flow knows)."""
    try:
        header = safetensors_header(file)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    keys = [k for k in header if k != "__metadata__"]
    base = _base_family(keys)
    first = header.get("model.diffusion_model.input_blocks.0.0.weight")
    if base not in (None, "lora") and isinstance(first, dict) and (first.get("shape") or [0, 0])[1:2] == [9]:
        return base + "-inpaint"
    return base


def _base_family(keys: list[str]) -> str | None:
    if any("lora_" in k or ".lora." in k or "lora_A" in k or "lora_down" in k for k in keys[:200]):
        return "lora"
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        return None
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        return "sdxl-refiner"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"  # OpenCLIP text encoder
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd1"  # OpenAI CLIP text encoder
    return None
