"""OpenAI-compatible Images API: `/v1/images/generations` and `/v1/images/edits` (multipart), served by the saved
image workflows (`workflows/image_gen.json`, `workflows/image_edit.json`) as jobs in the one queue.

`prompt`, `n`, `size` (`WxH`), `response_format` (`b64_json`, the default, or `url`: the gateway's `/files/...`
URL, which needs the token like any route), `output_format` (png, webp, jpeg), `model` (a diffusers model id),
and `seed` (an extension: image i uses seed + i). Anything else answers 400 in OpenAI's shape naming it.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .keys import CATALOGUE, JOBS, PRESENTER
from .openai_compat import OpenAIError, _invalid, _job_error, unknown_fields
from .parse import json_body, parser_problem

GEN_FIELDS = frozenset({"prompt", "n", "size", "response_format", "output_format", "model", "seed"})
EDIT_FIELDS = frozenset({"prompt", "n", "size", "response_format", "output_format", "model", "seed", "image",
                         "image[]", "mask"})
MAX_N = 8
_SIZE = re.compile(r"^(\d{2,4})x(\d{2,4})$")
_WAIT_S = 24 * 3600


def _common(body: dict) -> tuple[dict, int, str]:
    """(workflow params, n, response_format) from the fields both routes share."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise OpenAIError("'prompt' must be a non-empty string", param="prompt")
    params: dict[str, Any] = {"prompt": prompt}
    n = _integer(body.get("n", 1), "n")
    if not 1 <= n <= MAX_N:
        raise OpenAIError(f"n must be from 1 to {MAX_N}", param="n")
    form = body.get("response_format") or "b64_json"
    if form not in ("b64_json", "url"):
        raise OpenAIError("response_format must be b64_json or url", param="response_format")
    if body.get("output_format") is not None:
        fmt = body["output_format"]
        if fmt not in ("png", "webp", "jpeg"):
            raise OpenAIError("output_format must be png, webp or jpeg", param="output_format")
        params["format"] = fmt
    if body.get("model"):
        if not isinstance(body["model"], str):
            raise OpenAIError("'model' must be a string (a diffusers model id)", param="model")
        params["model"] = body["model"]
    if body.get("seed") is not None:
        params["seed"] = _integer(body["seed"], "seed")
    return params, n, form


def _integer(value: Any, name: str) -> int:
    if isinstance(value, str) and value.strip().isdigit() and len(value) < 12:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise OpenAIError(f"{name} must be an integer", param=name)


def _size(value: Any) -> tuple[int, int] | None:
    if value in (None, "auto"):
        return None
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        raise OpenAIError("size must be WIDTHxHEIGHT in pixels (e.g. 512x512) or auto", param="size")
    return int(match[1]), int(match[2])


async def _run(request: web.Request, name: str, params: dict) -> Any:
    """Run a saved workflow as a job; its finished record with media inlined, or an error response."""
    workflow = request.app[CATALOGUE].workflows.get(name)
    if workflow is None:
        raise OpenAIError(f"the saved workflow {name} is not in the workflows folder; restore workflows/{name}.json",
                          status=503, code="not_configured")
    jobs = request.app[JOBS]
    from engine import InvalidWorkflow

    try:
        record = await jobs.accept(workflow, params, name=f"v1.images.{name}")
    except InvalidWorkflow as exc:
        return _invalid(exc)
    done = await jobs.wait(record.id, timeout=_WAIT_S)
    if done.state != "finished":
        return _job_error(done)
    return request.app[PRESENTER].job_json(done, inline=True)


def _data(request: web.Request, job: dict, form: str) -> list[dict]:
    files = job["outputs"]["files"]
    files = files if isinstance(files, list) else [files]
    if form == "url":
        origin = f"{request.scheme}://{request.host}"
        return [{"url": origin + f["url"], "revised_prompt": None} for f in files]
    return [{"b64_json": f["b64"], "revised_prompt": None} for f in files]


async def generations(request: web.Request) -> web.Response:
    """POST /v1/images/generations: image_gen with prompt, n (batch), size, seed."""
    body = await json_body(request)
    try:
        unknown_fields(body, GEN_FIELDS)
        params, n, form = _common(body)
        size = _size(body.get("size"))
        if size:
            params["width"], params["height"] = size
        params["batch_size"] = n
        job = await _run(request, "image_gen", params)
    except OpenAIError as exc:
        return exc.response()
    if isinstance(job, web.Response):
        return job
    return web.json_response({"created": int(time.time()), "data": _data(request, job, form)})


async def _form(request: web.Request) -> dict:
    """The multipart form: text fields as strings, files as bytes (one per name)."""
    ctype = request.content_type
    if ctype == "application/json":
        return await json_body(request)
    if ctype != "multipart/form-data":
        raise OpenAIError("send the edit as multipart/form-data (image, mask and the fields)", status=415)
    try:
        posted = await request.post()  # within the body limit (FLOW_MAX_BODY_BYTES): 413 beyond it
    except web.HTTPException:
        raise
    except (HttpProcessingError, ValueError, AssertionError, LookupError, UnicodeDecodeError) as exc:
        # HttpProcessingError: e.g. a part's header line that is not a header (found by the fuzzer)
        raise OpenAIError(f"the multipart body cannot be read ({parser_problem(exc)}); send it as multipart/form-data with a "
                          "boundary, as HTTP clients do") from None
    form: dict[str, Any] = {}
    for name in posted:
        values = posted.getall(name)
        if len(values) > 1:
            raise OpenAIError(f"{name!r} was sent {len(values)} times; send one (flow edits one image per request)",
                              param=name)
        value = values[0]
        form[name] = value.file.read() if isinstance(value, web.FileField) else value
    return form


async def edits(request: web.Request) -> web.Response:
    """POST /v1/images/edits: image_edit with the image and an optional mask (white or transparent = repaint)."""
    try:
        form = await _form(request)
        unknown_fields(form, EDIT_FIELDS)
        params, n, form_kind = _common(form)
        image = form.get("image", form.get("image[]"))
        if "image" in form and "image[]" in form:
            raise OpenAIError("send one image (flow edits one image per request)", param="image")
        if not image:
            raise OpenAIError("'image' is required: the PNG or JPEG file to edit", param="image")
        params["image"] = _b64(image)
        if form.get("mask"):
            params["mask"] = _b64(form["mask"])
        if _size(form.get("size")):
            raise OpenAIError("size is not supported for edits: the result has the input image's size; resize the "
                              "image first", param="size")
        seed = params.get("seed")
        data = []
        for i in range(n):  # image_edit makes one image: n jobs, image i with seed + i
            if seed is not None:
                params["seed"] = seed + i
            job = await _run(request, "image_edit", params)
            if isinstance(job, web.Response):
                return job
            data += _data(request, job, form_kind)
    except OpenAIError as exc:
        return exc.response()
    return web.json_response({"created": int(time.time()), "data": data})


def _b64(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)  # a JSON body's base64 or data URL: image.load reads both
