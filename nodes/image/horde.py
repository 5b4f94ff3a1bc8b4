"""AI Horde, a remote image provider: `horde:MODEL` references of image.generate and image.edit.

The AI Horde v2 API (a community GPU queue), followed as documented:

- ``POST /generate/async {prompt, params{sampler_name, cfg_scale, width, height, steps, seed, n},
  models, r2}`` -> 202 ``{id, kudos}``; the negative prompt is joined to the prompt with `` ### ``;
  an edit adds ``source_image`` (base64 WebP), ``source_processing`` (img2img, inpainting) and
  ``source_mask``;
- ``GET /generate/check/{id}`` (light; at most 10 a second) until ``done``, every
  ``FLOW_HORDE_POLL_INTERVAL`` seconds, stretched by the ``wait_time`` it reports (at most 10 s)
  and backed off on 429; each check becomes a progress event with the queue position and wait;
- ``GET /generate/status/{id}`` (heavy; at most 10 a minute) once, for
  ``generations[{img, seed, model, worker_name}]``: ``img`` is an R2 download URL (fetched through
  flow's one SSRF guard, :func:`engine.fetch.fetch`) or base64 WebP;
- ``DELETE /generate/status/{id}`` when the job is cancelled (within one poll interval: the wait
  between checks ends at once on cancel), when it times out (``FLOW_HORDE_TIMEOUT``) and when no
  worker can serve it (``is_possible: false``).

Every request carries ``apikey`` (``FLOW_HORDE_API_KEY``; the anonymous ``0000000000`` by
default) and the ``Client-Agent`` the API asks for. ``faulted``, ``is_possible: false``, 429 and
403 become errors that name the fix. The privacy rule (:mod:`engine.routing`) is applied by the
caller before anything here runs: under strict privacy not one request is made.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from engine import routing
from engine.errors import (BackendFailed, BackendUnavailable, Cancelled, FlowError, InvalidInput, RemoteRateLimited,
                           RemoteRefused)
from engine.fetch import allow_private_for, fetch
from engine.settings import Settings

PREFIX = "horde:"
#: the agent header AI Horde asks every client to send: name:version:contact
CLIENT_AGENT = "flow:1:https://github.com/flow"
#: flow's sampler names -> AI Horde's ("default": the Horde's own choice)
SAMPLERS = {"euler": "k_euler", "euler_ancestral": "k_euler_a", "dpmpp_2m": "k_dpmpp_2m", "ddim": "DDIM"}
#: the edit tasks AI Horde serves, as its source_processing names them
SOURCE_PROCESSING = {"img2img": "img2img", "inpaint": "inpainting"}
MAX_WAIT_BETWEEN_CHECKS = 10.0
STATUS_RETRY_S = 6.5  # the status route allows 10 a minute
MAX_IMAGE_BYTES = 64 << 20
_REQUEST_TIMEOUT = 30.0


def is_horde(model: str) -> bool:
    """True for a ``horde:MODEL`` reference."""
    return isinstance(model, str) and model.strip().startswith(PREFIX)


@dataclass(frozen=True)
class Generated:
    """One image AI Horde made: the picture, the seed it reports, the model and the worker that made it."""

    image: Any  # PIL.Image.Image, RGB
    seed: int
    model: str
    worker: str
    worker_id: str = ""


@dataclass
class Made:
    """Images made by whichever provider the routing rule chose, with what each image's metadata records."""

    images: list
    seeds: list[int]
    model: str
    extra: list[dict] = field(default_factory=list)


# -- the routing of the image nodes --------------------------------------------------------------

def route(ctx, model: str, local: Callable[[str], list], task: str, seeds: list[int], *, privacy: str = "",
          loras: bool = False, **args) -> Made:
    """Make images on ``model`` through the one routing rule: privacy first (the stricter of FLOW_PRIVACY and the
    node's ``privacy``), then the local model (``local(ref)``) or AI Horde, falling back (flexible privacy) to
    ``FLOW_IMAGE_FALLBACK_MODEL``; ``auto`` picks one. ``loras``: the node has LoRAs (Horde takes none from here)."""
    from .pipes import DEFAULT_MODEL

    settings = routing.settings_of(ctx.config)
    model = (model or "").strip()
    if model == routing.AUTO:
        model = routing.pick_auto(ctx, "image", DEFAULT_MODEL, lambda ref: _present(ctx, ref), privacy)

    def attempt(ref: str) -> Made:
        if is_horde(ref) and loras:
            raise InvalidInput("loras", f"{ref} runs on AI Horde, which takes no LoRA files from this machine; "
                                        "remove loras, or use a local model")
        if is_horde(ref):
            sources = args.get("sources")
            rest = {k: v for k, v in args.items() if k != "sources"}
            if sources is None:
                made = generate(ctx, settings, ref, task, seeds, **rest)
            else:  # one Horde request per source image (it takes one source_image)
                made = [one for i, picture in enumerate(sources)
                        for one in generate(ctx, settings, ref, task, [seeds[i]], source_image=picture, **rest)]
            return Made([g.image for g in made], [g.seed for g in made], ref,
                        [{"provider": "horde", "worker": g.worker, "horde_model": g.model} for g in made])
        return Made(list(local(ref)), list(seeds), ref, [{} for _ in seeds])

    routed = routing.run(ctx, model, "image", attempt, requested=privacy)
    made = routed.result
    if routed.fallback_from:
        for extra in made.extra:
            extra["fallback_from"] = routed.fallback_from
    return made


def edit_task(mode: str, has_mask: bool) -> str:
    """The task an edit asks a remote provider for: the explicit mode, or inpaint with a mask, else img2img."""
    if mode == "auto":
        return "inpaint" if has_mask else "img2img"
    if mode == "inpaint" and not has_mask:
        raise InvalidInput("mask", "missing: mode 'inpaint' needs a mask; give one, or use mode 'auto'")
    if mode != "inpaint" and has_mask:
        raise InvalidInput("mask", f"only used for inpainting, and mode is {mode!r}; remove it or use 'auto'")
    return mode


def _present(ctx, ref: str) -> bool:
    """True when the local model ``ref`` is on disk (a folder, or a Hugging Face snapshot)."""
    manager = getattr(ctx, "models", None)
    if manager is None:
        return False
    try:
        from engine.models import hf

        parsed = manager.store.parse(ref)
        if parsed.source == "local":
            return parsed.path.exists()  # a diffusers folder, or a single-file checkpoint
        return parsed.source == "hf" and hf.snapshot(manager.store.hf_cache, parsed) is not None
    except (FlowError, OSError):  # an unparsable ref is simply not present
        return False


# -- one generation on AI Horde ------------------------------------------------------------------

def generate(ctx, settings: Settings, model: str, task: str, seeds: list[int], *, prompt: str,
             negative_prompt: str = "", width: int, height: int, steps: int, guidance: float,
             scheduler: str = "default", source_image: Any = None, source_mask: Any = None,
             strength: float | None = None) -> list[Generated]:
    """Submit, wait (progress, cancel, timeout), fetch and download ``len(seeds)`` images of ``model``."""
    name = model.strip()[len(PREFIX):].strip()
    if not name:
        raise InvalidInput("model", f"{model!r} names no AI Horde model; write horde:MODEL, e.g. "
                                    "horde:stable_diffusion")
    if task not in ("text2img", *SOURCE_PROCESSING):
        raise InvalidInput("mode", f"AI Horde cannot do {task!r}; use mode img2img or inpaint with a horde: model, "
                                   "or a local InstructPix2Pix model for instructions")
    for side, value in (("width", width), ("height", height)):
        if value % 64:
            raise InvalidInput(side, f"{value}, but AI Horde takes multiples of 64; give e.g. "
                                     f"{max(64, value // 64 * 64)}")
    client = Horde(settings)
    payload = request_body(name, task, seeds, prompt=prompt, negative_prompt=negative_prompt, width=width,
                           height=height, steps=steps, guidance=guidance, scheduler=scheduler,
                           source_image=source_image, source_mask=source_mask, strength=strength)
    job = client.submit(payload)
    ctx.log.info("AI Horde job %s for %s (%s kudos)", job, model, client.last_kudos)
    woken = threading.Event()
    unregister = ctx.on_cancel(woken.set)
    try:
        generations = _wait(ctx, client, job, len(seeds), woken)
    except BaseException:
        client.cancel(job, ctx.log)
        raise
    finally:
        unregister()
    if len(generations) < len(seeds):
        raise BackendFailed(f"AI Horde job {job} returned {len(generations)} of {len(seeds)} images; try again")
    allow_private = allow_private_for(ctx.config)
    return [_generated(gen, seeds[i], name, allow_private) for i, gen in enumerate(generations[:len(seeds)])]


def request_body(name: str, task: str, seeds: list[int], *, prompt: str, negative_prompt: str, width: int,
                 height: int, steps: int, guidance: float, scheduler: str, source_image: Any = None,
                 source_mask: Any = None, strength: float | None = None) -> dict:
    """The ``POST /generate/async`` body (the seed of image i is seed + i: ``seed_variation`` 1)."""
    params: dict[str, Any] = {"cfg_scale": guidance, "width": width, "height": height, "steps": steps,
                              "seed": str(seeds[0]), "n": len(seeds)}
    if len(seeds) > 1:
        params["seed_variation"] = 1
    if SAMPLERS.get(scheduler):
        params["sampler_name"] = SAMPLERS[scheduler]
    if strength is not None and task != "text2img":
        params["denoising_strength"] = strength
    text = f"{prompt} ### {negative_prompt}" if negative_prompt.strip() else prompt
    body: dict[str, Any] = {"prompt": text, "params": params, "models": [name], "r2": True}
    if task != "text2img":
        body["source_image"] = webp_base64(source_image)
        body["source_processing"] = SOURCE_PROCESSING[task]
        if source_mask is not None:
            body["source_mask"] = webp_base64(source_mask)
    return body


def _wait(ctx, client: "Horde", job: str, n: int, woken: threading.Event) -> list[dict]:
    """Check ``job`` until it is done; progress per check; raise on cancel, timeout, fault or impossibility."""
    settings = client.settings
    interval = max(0.1, float(settings.horde_poll_interval))
    deadline = time.monotonic() + max(1.0, float(settings.horde_timeout))
    backoff = interval
    while True:
        ctx.check_cancelled()
        try:
            state = client.check(job)
            backoff = interval
        except RemoteRateLimited:
            backoff = min(backoff * 2, MAX_WAIT_BETWEEN_CHECKS)  # too many checks: back off, keep waiting
            state = None
        if state is not None:
            if state.get("faulted"):
                raise BackendFailed(f"AI Horde job {job} faulted (a worker failed to make it); try again, or "
                                    "choose another horde: model or smaller size/steps")
            if state.get("is_possible") is False:
                raise BackendUnavailable(
                    f"no AI Horde worker can serve job {job} (is_possible false) for these models and params; pick "
                    "a model workers serve (GET /status/models), a smaller size or fewer steps, or try later")
            if state.get("done"):
                break
            ctx.progress(state.get("finished", 0) or 0, n, _progress_text(state))
        left = deadline - time.monotonic()
        if left <= 0:
            raise BackendUnavailable(
                f"AI Horde job {job} did not finish in {settings.horde_timeout:g} s (queue position "
                f"{(state or {}).get('queue_position', '?')}); it was cancelled there; raise FLOW_HORDE_TIMEOUT, "
                "use a registered FLOW_HORDE_API_KEY (higher priority), or try later")
        wait = (state or {}).get("wait_time") or 0
        pause = min(max(backoff, min(float(wait) / 4, MAX_WAIT_BETWEEN_CHECKS)), left)
        if woken.wait(pause):
            raise Cancelled()
    while True:  # the heavy route: retried on 429 within its 10 a minute
        try:
            return client.status(job).get("generations") or []
        except RemoteRateLimited:
            if time.monotonic() + STATUS_RETRY_S > deadline:
                raise
            if woken.wait(STATUS_RETRY_S):
                raise Cancelled() from None


def _progress_text(state: dict) -> str:
    if state.get("processing"):
        return f"AI Horde: processing, about {state.get('wait_time', 0)} s left"
    return (f"AI Horde: queue position {state.get('queue_position', 0)}, "
            f"about {state.get('wait_time', 0)} s wait")


def _generated(gen: dict, asked_seed: int, name: str, allow_private: bool | None) -> Generated:
    from PIL import Image, UnidentifiedImageError

    img = gen.get("img") or ""
    if img.startswith(("http://", "https://")):
        raw = fetch(img, max_bytes=MAX_IMAGE_BYTES, timeout=120, allow_private=allow_private,
                    accept=("image/", "application/octet-stream", "binary/octet-stream")).body
    else:
        try:
            raw = base64.b64decode(img, validate=False)
        except ValueError as exc:
            raise BackendFailed(f"AI Horde sent an image that is neither a URL nor base64 ({exc}); try again") \
                from exc
    try:
        with Image.open(io.BytesIO(raw)) as opened:
            picture = opened.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise BackendFailed(f"AI Horde sent an image flow cannot read ({exc}); try again") from exc
    try:
        seed = int(gen.get("seed"))
    except (TypeError, ValueError):
        seed = asked_seed
    return Generated(picture, seed, str(gen.get("model") or name), str(gen.get("worker_name") or ""),
                     str(gen.get("worker_id") or ""))


def webp_base64(picture: Any) -> str:
    """A PIL image as base64 WebP (lossless: an edit's source must not lose detail on the way)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="WEBP", lossless=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# -- the HTTP client ------------------------------------------------------------------------------

class Horde:
    """The few AI Horde v2 routes flow uses; every error becomes one that names the fix."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.base = settings.horde_url.rstrip("/")
        self.last_kudos: float | None = None

    def submit(self, body: dict) -> str:
        """``POST /generate/async``: the job id."""
        answer = self._call("POST", "/generate/async", body)
        job = answer.get("id")
        if not isinstance(job, str) or not job:
            raise BackendFailed(f"AI Horde at {self.base} answered no job id ({str(answer)[:200]}); check "
                                "FLOW_HORDE_URL")
        self.last_kudos = answer.get("kudos")
        return job

    def check(self, job: str) -> dict:
        """``GET /generate/check/{id}``."""
        return self._call("GET", f"/generate/check/{job}")

    def status(self, job: str) -> dict:
        """``GET /generate/status/{id}`` (with the images)."""
        return self._call("GET", f"/generate/status/{job}")

    def cancel(self, job: str, log) -> None:
        """``DELETE /generate/status/{id}``; a failure is logged, never raised (the job ends anyway)."""
        try:
            self._call("DELETE", f"/generate/status/{job}")
        except Exception as exc:  # noqa: BLE001
            log.warning("cancelling AI Horde job %s failed: %s", job, exc)

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        headers = {"apikey": self.settings.horde_api_key or "0000000000", "Client-Agent": CLIENT_AGENT,
                   "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        timeout = min(_REQUEST_TIMEOUT, self.settings.backend_read_timeout)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  (a configured URL)
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc.code, _message(exc), path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendUnavailable(f"AI Horde at {self.base} did not answer ({reason}); check FLOW_HORDE_URL and "
                                     "the network, or try later") from None
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise BackendFailed(f"AI Horde at {self.base}{path} answered something that is not JSON; check "
                                "FLOW_HORDE_URL") from None

    def _error(self, status: int, message: str, path: str) -> Exception:
        said = f"AI Horde answered {status} to {path.rsplit('/', 1)[0] if status != 400 else path}: {message}"
        if status == 429:
            return RemoteRateLimited(f"{said}; wait a minute and try again, or set FLOW_HORDE_API_KEY to a registered "
                                     "key (https://aihorde.net/register) for higher rate limits")
        if status in (401, 403):
            return RemoteRefused(f"{said}; with the anonymous key, ask for less (fewer steps, smaller images) or set "
                                 "FLOW_HORDE_API_KEY to a registered key with enough kudos "
                                 "(https://aihorde.net/register)")
        if status == 400:
            return InvalidInput("model", f"{said}; change the request (model name, size, steps, sampler)")
        if status == 404:
            return BackendFailed(f"{said}; the request expired on the Horde (after ~10 minutes) or never existed; "
                                 "try again")
        if status >= 500:
            return BackendUnavailable(f"{said}; the Horde is having trouble, try later")
        return BackendFailed(f"{said}; check FLOW_HORDE_URL")


def _message(exc: urllib.error.HTTPError) -> str:
    """The message of an AI Horde error body ``{message, rc?, errors?}``, cut short."""
    try:
        body = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return exc.reason or "no message"
    text = str(body.get("message") or exc.reason or "no message")
    if body.get("rc"):
        text += f" ({body['rc']})"
    if isinstance(body.get("errors"), dict) and body["errors"]:
        text += " " + "; ".join(f"{k}: {v}" for k, v in list(body["errors"].items())[:5])
    return text[:500]
