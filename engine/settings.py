"""Settings: one immutable value the faces read once (from the environment) and pass down.

The engine itself never reads the environment; `Settings.from_env` is called by the faces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

_PROJECT = Path(__file__).resolve().parent.parent


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "flow"


@dataclass(frozen=True)
class Settings:
    """Everything flow can be configured with; each field maps to a ``FLOW_*`` variable."""

    #: where saved files (texts, images, audio, video) go
    output_dir: Path = field(default_factory=lambda: Path("outputs"))
    #: where input images live: uploads (POST /inputs) and files the CLI is given (`input:NAME` refs)
    input_dir: Path = field(default_factory=lambda: Path("inputs"))
    #: saved workflows (each gateway endpoint is one)
    workflows_dir: Path = field(default_factory=lambda: _PROJECT / "workflows")
    #: upper bound of the in-memory output cache, in bytes (0 turns the cache off)
    cache_bytes: int = 1 << 30
    #: threads that run blocking node work (independent branches overlap up to this many)
    workers: int = 4
    #: model store: Hugging Face cache in `hf/`, local model folders in `local/`
    models_dir: Path = field(default_factory=lambda: _data_home() / "models")
    #: more folders where local model directories may live, separated by ':' (refs must stay inside)
    model_roots: str = ""
    #: compute device for torch models: "" probes (GPU if torch sees one, else CPU), or "cpu"/"cuda"
    model_device: str = ""
    #: bytes of the device the model manager may fill; 0 = detected (GPU memory minus the reserve),
    #: or 12 GiB minus the reserve on a CPU-only machine, where the budget is accounting only
    gpu_budget_bytes: int = 0
    #: bytes of GPU memory kept free for activations when the budget is detected
    gpu_reserve_bytes: int = 2 << 30
    #: bytes of CPU RAM for models offloaded from the GPU; 0 = half of the machine's RAM
    cpu_budget_bytes: int = 0
    #: the Ollama server sharing the GPU, e.g. http://127.0.0.1:11434 ("" = none)
    ollama_url: str = ""
    #: pull a missing model on first use instead of failing with the pull command
    pull_on_demand: bool = False
    #: Hugging Face endpoint for pulls (a mirror, or a local server in tests)
    hf_endpoint: str = "https://huggingface.co"
    #: Hugging Face token for gated or private repos; faces fill it from HF_TOKEN (never printed)
    hf_token: str = field(default="", repr=False)
    #: where model requests (text and images) may go: "strict" never leaves this machine (local models
    #: only); "flexible" allows a remote model (openai: on another server, horde:) when a request names
    #: one, and the fallback models (one rule for every modality: engine/routing.py)
    privacy: str = "strict"
    #: let outbound fetches (web.extract, image.load from a URL) reach loopback, private and link-local
    #: addresses (intranets, tests); cloud metadata addresses stay refused
    fetch_allow_private: bool = False
    #: keep_alive sent with each Ollama request (e.g. 5m, 0, -1); "" = the server's default
    ollama_keep_alive: str = ""
    #: an OpenAI-compatible server for `openai:MODEL` refs (cloud, vLLM, LM Studio, llama.cpp), e.g.
    #: https://generativelanguage.googleapis.com/v1beta/openai ("" = none)
    openai_base_url: str = ""
    #: key for that server (never printed)
    openai_api_key: str = field(default="", repr=False)
    #: default model of the text nodes; "" = ollama:llama3.2 with an Ollama server, else
    #: hf:Qwen/Qwen2.5-0.5B-Instruct in-process
    text_model: str = ""
    #: with privacy "flexible": the model a text node falls back to when its local one is unavailable
    text_fallback_model: str = ""
    #: with privacy "flexible": the model an image node falls back to when its local one is missing, out of
    #: memory or its backend is down, and what `model: "auto"` picks then (e.g. horde:stable_diffusion)
    image_fallback_model: str = ""
    #: the AI Horde v2 API that `horde:MODEL` refs use (a community GPU queue: prompts leave this machine)
    horde_url: str = "https://aihorde.net/api/v2"
    #: AI Horde API key (never printed); the anonymous key 0000000000 is the lowest priority in its queue
    horde_api_key: str = field(default="0000000000", repr=False)
    #: seconds between AI Horde status checks (its check route allows 10/s; the wait it reports can stretch it)
    horde_poll_interval: float = 2.0
    #: seconds a `horde:` request may wait and run before it is cancelled on the Horde (its requests go stale
    #: after ~10 minutes)
    horde_timeout: float = 600.0
    #: seconds to wait for a backend (Ollama, an OpenAI-compatible server, the Hugging Face hub) to accept
    #: a connection
    backend_connect_timeout: float = 10.0
    #: seconds a backend may stay silent mid-request before the request fails: per read, not in total
    #: (a long generation that keeps streaming never hits it); covers the model load before a first token
    backend_read_timeout: float = 300.0

    # -- gateway (flow serve) --
    #: address to bind; 127.0.0.1 unless told otherwise (0.0.0.0 in the container)
    host: str = "127.0.0.1"
    #: gateway port
    port: int = 8000
    #: bearer token required on everything but /health and the web page; empty: no auth
    api_token: str = field(default="", repr=False)
    #: start on a non-loopback address without a token (anyone who can reach it may use it)
    insecure_no_token: bool = False
    #: the address clients reach the gateway on when it differs from `host` (a container's
    #: published port, e.g. 127.0.0.1): the token rule looks at it instead of `host`
    published_host: str = ""
    #: host names (besides loopback names and the bound address) the gateway answers to,
    #: comma-separated; "*.example.com" matches sub-domains, "*" any name (turns off the
    #: DNS-rebinding check)
    allowed_hosts: str = ""
    #: SQLite file holding the job queue and history (kept outside the served output folder)
    jobs_db: Path = field(default_factory=lambda: _data_home() / "jobs.sqlite3")
    #: jobs running at once (one GPU: 1)
    job_workers: int = 1
    #: the broker of worker mode, e.g. redis://127.0.0.1:6379/0: the gateway sends jobs to `flow worker`
    #: processes (one per GPU, on this box or others) instead of running them; "" runs them in-process
    broker_url: str = field(default="", repr=False)
    #: worker mode: send a job that names a model to the worker that reports it loaded (model affinity)
    broker_affinity: bool = True
    #: jobs allowed to wait; more are answered 429 with Retry-After
    max_queued: int = 100
    #: seconds a job may run before it is cancelled (0: no limit)
    job_time_limit: float = 3600.0
    #: times a job cut short by a crash is run again before it is marked interrupted
    requeue_limit: int = 1
    #: seconds an endpoint call waits for its result before answering 202 with the job URL
    request_timeout: float = 300.0
    #: largest request body in bytes (images travel as base64)
    max_body_bytes: int = 64 << 20
    #: web origins (besides the gateway's own page) allowed to call it, comma-separated, e.g.
    #: http://localhost:3000 ("*" for any); requests from any other origin are refused (403)
    cors_origins: str = ""
    #: find the GPU and its memory budget when the gateway starts (imports torch in the background)
    probe_device: bool = True
    #: level of `flow serve`'s log (DEBUG, INFO, WARNING, ERROR); INFO shows one access line per request
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Read ``FLOW_<FIELD>`` variables (e.g. ``FLOW_CACHE_BYTES``); explicit overrides win."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f"FLOW_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, raw, cls.__dataclass_fields__[f.name].type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes) -> "Settings":
        """A copy with some fields changed."""
        return replace(self, **changes)


def _coerce(name: str, raw: str, annotation: str):
    """Turn an environment string into the field's type, with an error that names the variable."""
    kind = str(annotation)
    try:
        if "Path" in kind:
            # a database URL (FLOW_JOBS_DB=postgresql://...) stays a string: a Path would fold its "//"
            return raw if "://" in raw else Path(raw).expanduser()
        if "int" in kind:
            return int(raw.replace("_", ""))
        if "float" in kind:
            return float(raw)
        if "bool" in kind:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
    except ValueError:
        raise ValueError(f"FLOW_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
