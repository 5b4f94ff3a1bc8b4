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

    def to_json(self) -> dict:
        """JSON form for `flow models --json` and the gateway."""
        return {"ref": self.ref, "source": self.source, "size": self.size, "location": self.location}


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
        found = [LocalModel(ref, "hf", size, str(path)) for ref, size, path in hf.local_models(self.hf_cache)]
        for root in self.roots:
            if root.is_dir():
                folders = {m.parent for pattern in ("*/config.json", "*/model_index.json") for m in root.glob(pattern)}
                found += [LocalModel(str(f), "local", hf.dir_bytes(f), str(f)) for f in sorted(folders)]
        if self.ollama is not None:
            try:
                found += [LocalModel(f"ollama:{m.name}", "ollama", m.size, f"Ollama at {self.ollama.url}")
                          for m in self.ollama.local()]
            except FlowError as exc:
                log.warning("cannot list Ollama's models: %s", exc)
        return found

    def _ollama_client(self) -> OllamaClient:
        if self.ollama is None:
            raise NotConfigured("no Ollama server is configured; set FLOW_OLLAMA_URL (e.g. http://127.0.0.1:11434)")
        return self.ollama
