"""Products over HTTP: create (JSON or multipart with images), list, read, edit, delete, and describe a
product by running the saved ``product_describe`` workflow on it (a job; the result is saved into the record)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from engine.errors import FlowError, InvalidRequest, NotConfigured, ProductNotFound
from engine.jsonsafe import loads
from engine.products import MAX_IMAGE_BYTES, MAX_IMAGES, ProductStore, describe_params, describe_result

from .keys import CATALOGUE, JOBS, PRESENTER, SETTINGS
from .jobs import job_url
from .parse import form_parts, json_body, query_int, query_number, read_limited
from .present import dumps

WORKFLOW = "product_describe"
#: multipart parts a create may have (fields and files together)
MAX_PARTS = 40
#: describe runs still saving their result when their request has answered (kept so they are not collected)
_SAVING: set[asyncio.Task] = set()


def _store(request: web.Request) -> ProductStore:
    settings = request.app[SETTINGS]
    return ProductStore(settings.jobs_db, settings.output_dir)


async def _call(request: web.Request, method: str, *args, **kwargs):
    """A store call off the event loop (SQLite and file writes block)."""
    def work():
        return getattr(_store(request), method)(*args, **kwargs)
    return await asyncio.to_thread(work)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps)


async def create_product(request: web.Request) -> web.Response:
    """POST /products: JSON fields, or multipart/form-data with fields and image files."""
    if request.content_type == "multipart/form-data":
        try:
            fields, uploads = await _form(request)
        except (ValueError, LookupError, HttpProcessingError) as exc:  # UnicodeDecodeError is a ValueError
            raise InvalidRequest(f"the body is not a readable multipart form ({type(exc).__name__}); send "
                                 "multipart/form-data with a name field and image files, or JSON") from exc
    else:
        fields, uploads = await json_body(request), []
    product = await _call(request, "create", fields, uploads)
    return _json(product.to_json(), 201)


async def _form(request: web.Request) -> tuple[dict, list[bytes]]:
    """Fields and image files of a multipart create; repeated fields and JSON texts both work for lists."""
    fields: dict[str, Any] = {}
    uploads: list[bytes] = []
    async for part in form_parts(request, MAX_PARTS, "a create"):
        name = part.name or ""
        if part.filename is not None or name in ("image", "images"):
            if len(uploads) >= MAX_IMAGES:
                raise InvalidRequest(f"a product has at most {MAX_IMAGES} images; send fewer files")
            uploads.append(await read_limited(part, MAX_IMAGE_BYTES, f"image {len(uploads) + 1} is more than the "
                                                 f"limit of {MAX_IMAGE_BYTES} bytes; send a smaller image"))
            continue
        text = await part.text()
        if name in ("source_urls", "images_urls", "image_urls"):
            items = _list_field(text)
            key = "source_urls" if name == "source_urls" else "images"
            fields.setdefault(key, []).extend({"url": u} if key == "images" else u for u in items)
        elif name == "facts":
            try:
                fields["facts"] = loads(text) if text.strip() else None
            except ValueError as exc:
                raise InvalidRequest(f"'facts' must be a JSON object ({exc})") from exc
        else:
            fields[name] = text
    return fields, uploads


def _list_field(text: str) -> list:
    text = text.strip()
    if text.startswith("["):
        try:
            value = loads(text)  # strict and bounded, as every JSON a client sends
        except ValueError as exc:
            raise InvalidRequest(f"a list field must be a JSON list or one value per line ({exc})") from exc
        if not isinstance(value, list):
            raise InvalidRequest("a list field must be a JSON list or one value per line")
        return value
    return [line.strip() for line in text.splitlines() if line.strip()]


async def list_products(request: web.Request) -> web.Response:
    """GET /products: newest first, ?limit= and ?before= (the previous page's next)."""
    limit = query_int(request, "limit", 50, 1, 500)
    before = query_int(request, "before", None, 0, 2**62)
    products, more = await _call(request, "list", limit, before)
    page: dict[str, Any] = {"products": [p.to_json() for p in products]}
    if more is not None:
        page["next"] = str(request.rel_url.update_query(before=more))
    return _json(page)


async def get_product(request: web.Request) -> web.Response:
    """GET /products/{id}."""
    return _json((await _call(request, "get", request.match_info["id"])).to_json())


async def patch_product(request: web.Request) -> web.Response:
    """PATCH /products/{id}: change name, images (URLs, or the kept uploads), source_urls, facts, notes, description."""
    body = await json_body(request)
    return _json((await _call(request, "update", request.match_info["id"], body)).to_json())


async def delete_product(request: web.Request) -> web.Response:
    """DELETE /products/{id}: the record and its uploaded images."""
    product = await _call(request, "delete", request.match_info["id"])
    return _json({"deleted": product.id})


async def describe_product(request: web.Request) -> web.Response:
    """POST /products/{id}/describe: run product_describe on the record (first image, first source URL, facts,
    notes) and save the description into it; 200 with the product and the job, or 202 while it still runs."""
    product = await _call(request, "get", request.match_info["id"])
    options = await json_body(request, required=False)
    params = describe_params(product, options)
    workflow = request.app[CATALOGUE].workflows.get(WORKFLOW)
    if workflow is None:
        raise NotConfigured(f"the saved workflow {WORKFLOW} is not in the workflows folder; restore "
                            f"workflows/{WORKFLOW}.json")
    # every part of the request is checked before the job starts (a bad ?timeout starts nothing)
    timeout = query_number(request, "timeout", request.app[SETTINGS].request_timeout, 0, 24 * 3600)
    jobs = request.app[JOBS]
    record = await jobs.accept(workflow, params, name=WORKFLOW)
    await jobs.stored(record.id)
    url = job_url(request, record.id)
    run = {"job": record.id, "url": url, "state": "running", "tone": params.get("tone", "neutral"),
           "language": params.get("language", "en"), "started": time.time()}
    await _call(request, "update", product.id, {"describe": run}, internal=True)
    task = asyncio.ensure_future(_save_when_done(request.app, product.id, record.id, run))
    _SAVING.add(task)
    task.add_done_callback(_SAVING.discard)
    try:
        saved, job = await asyncio.wait_for(asyncio.shield(task), timeout)
    except asyncio.TimeoutError:
        body = {"product": (await _call(request, "get", product.id)).to_json(),
                "job": {"id": record.id, "state": "running", "url": url}}
        return web.json_response(body, status=202, dumps=dumps, headers={"Location": url})
    if saved is None:
        raise ProductNotFound(product.id)
    body = {"product": saved.to_json(), "job": job}
    if job.get("state") != "finished":
        error = job.get("error") or {}
        from .present import job_status

        return _json({**body, "error": error}, job_status(error))
    return _json(body)


async def _save_when_done(app: web.Application, product_id: str, job_id: str, run: dict):
    """Wait for the describe job, then write its description (or its error) into the product."""
    record = await app[JOBS].wait(job_id, 7 * 24 * 3600)
    job = app[PRESENTER].job_json(record)
    changes = describe_result(run, record.state, job.get("outputs"), (record.error or {}).get("message"))
    try:
        saved = await asyncio.to_thread(
            lambda: ProductStore(app[SETTINGS].jobs_db, app[SETTINGS].output_dir).update(product_id, changes,
                                                                                        internal=True))
    except FlowError:  # the product was deleted while it was described: nothing to save into
        saved = None
    return saved, job
