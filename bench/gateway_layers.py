"""Where a cached request's CPU goes, layer by layer: what bench/gateway.py's ratio is made of.

1. HTTP layers: a bare aiohttp handler (a fixed JSON answer), then the same handler behind flow's
   error and guard middlewares and security headers, then behind the access log as well; each a
   real server process driven by bench/gateway.py's load generator: requests per second and
   server CPU per request.
2. The job machinery without HTTP: in one process, a real gateway app's job queue accepts the
   endpoint's job (cached after one warm call), waits for its end and its commit, and renders the
   answer, 8 at a time: CPU per job (SQLite included).

Run: `.venv/bin/python bench/gateway_layers.py [--seconds 3] [--jobs 8000]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path


def _bench_gateway():
    """bench/gateway.py, loaded by path: its name would hide the project's `gateway` package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gateway", Path(__file__).with_name("gateway.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_gw = _bench_gateway()
ROOT, free_port, load, wait_health_bare = _gw.ROOT, _gw.free_port, _gw.load, _gw.wait_health_bare
sys.path.insert(0, str(ROOT))

LAYERED_APP = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from aiohttp import web
    from server import new_event_loop

    async def handle(request):
        await request.read()
        return web.json_response({"outputs": {"text": "a haiku about rain"}})

    layers, middlewares, app = sys.argv[2], [], None
    if layers != "bare":
        from engine.settings import Settings
        from gateway.logs import configure
        from gateway.middleware import access_middleware, errors_middleware
        from gateway.routes import body_types
        from gateway.security import Policy, guard_middleware, security_headers

        middlewares = [errors_middleware, guard_middleware(Policy.from_settings(Settings.from_env(),
                                                                                body_types=body_types()))]
        if layers == "logged":
            configure("INFO")
            middlewares.insert(0, access_middleware)
    app = web.Application(middlewares=middlewares)
    if layers != "bare":
        app.on_response_prepare.append(security_headers)
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, loop=new_event_loop())
""")

LAYERS = (("bare", "bare aiohttp handler"), ("guarded", "+ errors, guard, headers"), ("logged", "+ access log"))


def http_layers(seconds: float) -> list[tuple[str, dict]]:
    rows = []
    for layers, title in LAYERS:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", LAYERED_APP, str(port), layers, str(ROOT)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_health_bare(port, proc)
            time.sleep(0.5)
            rows.append((title, load(f"http://127.0.0.1:{port}/text/gen", {"prompt": "a haiku about rain", "seed": 1},
                                     seconds, 8, proc.pid)))
        finally:
            proc.terminate()
            proc.wait(10)
    return rows


def job_machinery(endpoint: str, jobs: int) -> float:
    """CPU microseconds per cached job of ``endpoint``, in process (no HTTP)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"FLOW_OUTPUT_DIR": f"{tmp}/out", "FLOW_JOBS_DB": f"{tmp}/jobs.sqlite3",
                           "FLOW_MODELS_DIR": f"{tmp}/models", "FLOW_TEXT_MODEL": "tiny-llm", "HF_HUB_OFFLINE": "1",
                           "FLOW_MAX_QUEUED": str(jobs + 100)})
        sys.path.insert(0, str(ROOT / "tests" / "text"))
        from llm_tiny import build_tiny_llm

        from cli_run import build_engine
        from engine.settings import Settings
        from gateway.keys import CATALOGUE, JOBS, PRESENTER
        from server import create_app

        build_tiny_llm(Path(tmp) / "models" / "local" / "tiny-llm")
        settings = Settings.from_env()
        engine = build_engine(settings)
        app = create_app(engine, settings)
        queue, presenter = app[JOBS], app[PRESENTER]
        found = app[CATALOGUE].endpoints[endpoint]
        params = {"prompt": "a haiku about rain", "seed": 1} if endpoint == "/text/gen" else {"name": "rain"}

        async def one():
            record = await queue.accept(found.workflow, dict(params), name=found.name, wait_stored=False,
                                        waiting=True, repeats=True)  # as the endpoint handler calls it
            record = await queue.wait(record.id, 600)
            await queue.stored(record.id)
            return presenter.job_text(record)

        async def main() -> float:
            await queue.start()
            try:
                await one()  # fills the cache
                started = time.process_time()
                for _ in range(jobs // 8):
                    await asyncio.gather(*(one() for _ in range(8)))
                return (time.process_time() - started) / (jobs // 8 * 8) * 1e6
            finally:
                await queue.stop()
                queue.store.close()
                engine.close()

        return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--jobs", type=int, default=8000)
    args = parser.parse_args()
    rows = http_layers(args.seconds)
    print(f"HTTP layers: POST with a small JSON body, 8 concurrent clients for {args.seconds:g} s each\n")
    print(f"{'server':<28}{'req/s':>10}{'CPU us/req':>12}{'+ us':>8}")
    base = rows[0][1]["cpu_us"]
    for title, r in rows:
        print(f"{title:<28}{r['rps']:>10.0f}{r['cpu_us']:>12.0f}{r['cpu_us'] - base:>8.0f}")
    print(f"\njob machinery in process (no HTTP; accept, end, commit, answer text), {args.jobs} cached jobs\n")
    print(f"{'endpoint':<28}{'CPU us/job':>12}")
    for endpoint in ("/text/gen", "/hello"):
        print(f"{endpoint:<28}{job_machinery(endpoint, args.jobs):>12.0f}")


if __name__ == "__main__":
    main()
