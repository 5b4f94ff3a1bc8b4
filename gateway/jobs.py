"""Jobs and their events: run an endpoint or any graph, list, read and cancel jobs, SSE and WebSocket."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

from engine.catalogue import Endpoint
from engine.errors import InvalidRequest
from engine.job_events import terminal_event
from engine.jobstore import STATES, JobRecord

from .keys import CATALOGUE, JOBS, PRESENTER, SETTINGS
from .parse import json_body, query_choice, query_int, query_number, wants_async
from .present import dumps, job_status
from .presets import apply as apply_preset


def job_url(request: web.Request, job_id: str) -> str:
    """The job's URL (ids are hex: nothing to quote; the router's url_for costs more than the job)."""
    return "/jobs/" + job_id


def _inline(request: web.Request) -> bool:
    return query_choice(request, "media", ("url", "base64"), "url") == "base64"


async def answer(request: web.Request, record: JobRecord, *, async_default: bool = False,
                 outputs_only: bool = False) -> web.Response:
    """202 with the job URL, or wait (bounded) and answer the result; a failed job answers its error.

    ``outputs_only``: a finished job answers its outputs object alone (the job's URL in Content-Location).
    """
    jobs, settings = request.app[JOBS], request.app[SETTINGS]
    accepted = {"id": record.id, "state": record.state, "url": job_url(request, record.id)}
    inline = _inline(request)
    if wants_async(request, async_default):
        await jobs.stored(record.id)  # durable before anyone is told the job exists
        return web.json_response(accepted, status=202, headers={"Location": accepted["url"]})
    timeout = query_number(request, "timeout", settings.request_timeout, 0, 24 * 3600)
    record = await jobs.wait(record.id, timeout)
    await jobs.stored(record.id)  # written before its end, which the waiting is for: at once
    if not record.terminal:
        return web.json_response({**accepted, "state": record.state}, status=202,
                                 headers={"Location": accepted["url"]})
    if record.state == "finished" and outputs_only:
        body = request.app[PRESENTER].job_json(record, inline=inline)
        return web.json_response(body.get("outputs") or {}, dumps=dumps, headers={"Content-Location": accepted["url"]})
    if record.state == "finished":
        return web.Response(text=request.app[PRESENTER].job_text(record, inline=inline), content_type="application/json")
    body = request.app[PRESENTER].job_json(record, inline=inline)
    return web.json_response({**body, "error": record.error or {}}, status=job_status(record.error), dumps=dumps)


def endpoint_handler(endpoint: Endpoint):
    """The handler of one saved endpoint: the body fills the workflow's params."""

    async def handle(request: web.Request) -> web.Response:
        params = await json_body(request, required=False)
        # {"preset": NAME}: the preset's workflow, the other params on top (gateway/presets.py)
        workflow, params = apply_preset(request.app[CATALOGUE], endpoint, params)
        # `answer` waits until the record is committed before it answers, 202 or result; a caller that
        # waits for the result may have a cheap job run in this task (JobQueue.accept's `waiting`)
        # `repeats`: the endpoint's own workflow (not a preset's, made per request) serves repeats
        record = await request.app[JOBS].accept(workflow, params, name=endpoint.name, wait_stored=False,
                                                waiting=not wants_async(request, False),
                                                repeats=workflow is endpoint.workflow)
        return await answer(request, record, outputs_only=endpoint.workflow.answer == "outputs")

    handle.__name__ = f"endpoint_{endpoint.name}"
    return handle


async def post_job(request: web.Request) -> web.Response:
    body = await json_body(request)
    if "workflow" not in body:
        raise InvalidRequest("the body needs a 'workflow' (a workflow document) and may give 'params', 'outputs'")
    params, outputs = body.get("params") or {}, body.get("outputs")
    if not isinstance(params, dict):
        raise InvalidRequest("'params' must be an object of param name -> value")
    if outputs is not None and not (isinstance(outputs, list) and all(isinstance(o, str) for o in outputs)):
        raise InvalidRequest("'outputs' must be a list of output names")
    # Parsed, validated, compiled and stored off the event loop (a 100k-node graph takes seconds).
    record = await request.app[JOBS].accept(body["workflow"], params, outputs=outputs,
                                            waiting=not wants_async(request, True))
    return await answer(request, record, async_default=True)


async def list_jobs(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 50, 1, 500)
    before = query_int(request, "before", None, 0, 2**62)
    state = query_choice(request, "state", STATES, None)
    queue = request.app[JOBS]

    def read():  # in a thread: with a PostgreSQL store each read is a round trip to its server
        return queue.page(state=state, limit=limit, before=before), queue.counts()

    records, counts = await asyncio.to_thread(read)
    jobs = [{**r.to_json(), "seq": r.seq, "url": job_url(request, r.id)} for r in records]
    page = {"jobs": jobs, "counts": counts}
    if len(records) == limit:
        page["next"] = str(request.rel_url.update_query(before=records[-1].seq))
    return web.json_response(page, dumps=dumps)


async def get_job(request: web.Request) -> web.Response:
    # The workflow only when asked (?include=workflow): a poll of a 50k-node job is not 5 MB each time.
    with_workflow = query_choice(request, "include", ("workflow",), None) == "workflow"
    record = await request.app[JOBS].fetch(request.match_info["id"], workflow=with_workflow)
    text = request.app[PRESENTER].job_text(record, inline=_inline(request), with_workflow=with_workflow)
    return web.Response(text=text, content_type="application/json")


async def delete_job(request: web.Request) -> web.Response:
    record = request.app[JOBS].cancel(request.match_info["id"])
    return web.json_response(request.app[PRESENTER].job_json(record))


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of one job; ends after its one terminal event."""
    jobs = request.app[JOBS]
    job_id = request.match_info["id"]
    subscription = jobs.subscribe(job_id)  # before reading the state: no event falls between
    try:
        record = await jobs.fetch(job_id, workflow=False)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await _sse(response, "job.state", request.app[PRESENTER].job_json(record))
        if record.terminal:
            event = terminal_event(record)  # the same event a live listener got
            await _sse(response, event.kind, event.to_json())
            return response
        while True:
            try:
                event = await subscription.next(timeout=15)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event is None:  # dropped for falling behind
                break
            await _sse(response, event.kind, event.to_json())
            if event.terminal:
                break
        return response
    finally:
        jobs.unsubscribe(subscription)


async def _sse(response: web.StreamResponse, kind: str, data: dict) -> None:
    await response.write(f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode())


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Every job's events as JSON messages; ``?job=ID`` keeps one job's."""
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    jobs = request.app[JOBS]
    subscription = jobs.subscribe(request.query.get("job"))
    reader = asyncio.create_task(_drain(ws))
    try:
        while not ws.closed and not reader.done():
            try:
                event = await subscription.next(timeout=1)
            except asyncio.TimeoutError:
                continue
            if event is None:
                if subscription.closed:
                    await ws.close(code=1001, message=b"the server is shutting down")
                else:
                    await ws.close(code=1013, message=b"too slow: events were dropped; reconnect")
                break
            # what else is queued goes with it, under one time limit (a large job emits faster than one per turn)
            await asyncio.wait_for(_send_all(ws, [event, *subscription.pending(255)]), 10)
    except (ConnectionResetError, asyncio.TimeoutError):
        pass
    finally:
        jobs.unsubscribe(subscription)
        reader.cancel()
        await ws.close()
    return ws


async def _send_all(ws: web.WebSocketResponse, events: list) -> None:
    for event in events:
        await ws.send_json(event.to_json(), dumps=dumps)


async def _drain(ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
