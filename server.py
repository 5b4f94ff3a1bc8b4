"""The gateway's application factory and `flow serve`: the handlers live in gateway/, by what they serve.

`create_app(engine, settings)` builds the aiohttp application from the one route table
(gateway/routes.py) plus one ``POST`` per saved endpoint workflow; `serve` runs it. Middlewares,
outermost first: the access log (one line per request on ``flow.access``), CORS headers (when
origins are configured), the error middleware (named errors to JSON with their status, never a
traceback), and the guard (Host, Origin, body type, token).
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiohttp import web

from engine import Engine
from engine.catalogue import Catalogue
from engine.jobs import JobQueue
from engine.jobstore import JobStore
from engine.pgstore import open_store
from engine.settings import Settings
from gateway.files import WEB_DIR
from gateway.jobs import endpoint_handler
from gateway.keys import CATALOGUE, ENGINE, JOBS, METRICS, PRESENTER, SETTINGS, STARTED
from gateway.metrics import Metrics
from gateway.middleware import access_middleware, errors_middleware
from gateway.present import Presenter
from gateway.routes import active_routes, body_types, reserved_prefixes
from gateway.security import Policy, cors_middleware, guard_middleware, security_headers


def create_app(engine: Engine, settings: Settings, *, catalogue: Catalogue | None = None,
               store: JobStore | None = None) -> web.Application:
    """The gateway application over ``engine``; the job queue starts and stops with it."""
    policy = Policy.from_settings(settings, body_types=body_types())
    middlewares = [errors_middleware, guard_middleware(policy)]
    if policy.origins:
        middlewares.insert(0, cors_middleware(policy.origins))
    middlewares.insert(0, access_middleware)  # outermost: logs the status the client gets
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes,
                          handler_args={"max_field_size": 16 << 10})
    app.on_response_prepare.append(security_headers)
    catalogue = catalogue or Catalogue(engine, settings.workflows_dir, reserved=reserved_prefixes())
    presenter = Presenter(settings.output_dir)
    dispatch = None
    if settings.broker_url:  # worker mode: jobs run on `flow worker` processes (engine/broker.py)
        from engine.broker import Dispatcher

        dispatch = Dispatcher(settings.broker_url, job_time_limit=settings.job_time_limit,
                              requeue_limit=settings.requeue_limit, affinity=settings.broker_affinity)
    jobs = JobQueue(engine, store or open_store(settings.jobs_db), present=presenter.result_json,
                    workers=settings.max_queued if dispatch else settings.job_workers, max_queued=settings.max_queued,
                    requeue_limit=settings.requeue_limit, time_limit=settings.job_time_limit or None,
                    dispatch=dispatch)
    metrics = Metrics()
    engine.subscribe(metrics.observe)
    app[ENGINE], app[SETTINGS], app[CATALOGUE], app[JOBS] = engine, settings, catalogue, jobs
    app[PRESENTER], app[METRICS], app[STARTED] = presenter, metrics, time.time()

    for route in active_routes(engine):
        if route.path.startswith("/web/") and not WEB_DIR.is_dir():
            continue
        if route.method == "GET":  # HEAD too, as aiohttp's add_get does (curl -I, link checkers)
            app.router.add_get(route.path, route.handler, name=route.name)
        else:
            app.router.add_route(route.method, route.path, route.handler, name=route.name)
    for path, endpoint in sorted(catalogue.endpoints.items()):
        app.router.add_post(path, endpoint_handler(endpoint))

    async def lifecycle(app: web.Application):
        if dispatch is not None:
            dispatch.start()
        await jobs.start()
        probe = None
        if engine.models is not None and settings.probe_device:
            # Find the GPU and its budget in a child process: /health answers at once ("probing"
            # until it knows), and torch (~200 MiB) loads here only with the first model.
            engine.models.probing = True
            probe = asyncio.get_running_loop().run_in_executor(None, engine.models.probe_elsewhere)
        yield
        if probe is not None:
            await asyncio.wait([probe], timeout=30)
        await jobs.stop()
        jobs.store.close()
        if dispatch is not None:
            dispatch.close()

    app.cleanup_ctx.append(lifecycle)

    async def close_streams(app: web.Application) -> None:
        app[JOBS].close_subscriptions()  # open WebSockets and SSE streams end now, not at a timeout

    app.on_shutdown.append(close_streams)
    return app


def serve(settings: Settings, engine: Engine) -> None:
    """Run the gateway until interrupted (what ``flow serve`` calls)."""
    # A thread waiting for the GIL waits out this interval while another computes (5 ms by default):
    # /health and every to_thread hop pay it several times over while a large job runs inline.
    sys.setswitchinterval(0.001)
    app = create_app(engine, settings)
    url = f"http://{settings.host}:{settings.port}"
    print(f"flow gateway on {url}  (docs: {url}/docs, web page: {url}/)", flush=True)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None,
                handle_signals=True, loop=new_event_loop())


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The gateway's event loop: uvloop's where installed (its transports and callbacks cost about a
    tenth of a request less CPU than asyncio's), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
