"""What `flow run` and the endpoint commands share: settings, the engine, progress, running, showing.

Running goes in process (`run_local`) or on a gateway (`run_remote`); both return the same
`--json` shape. Only click is imported at module level (`flow --help` stays fast): the engine,
the nodes and the gateway client load inside the functions that use them.
"""

from __future__ import annotations

import json
import sys

import click

EXIT_FAILED = 1  # a node failed while running
EXIT_INVALID = 2  # the workflow or a param is invalid (also click's usage errors)
EXIT_CANCELLED = 130  # interrupted (Ctrl-C)


def load_settings(**overrides):
    """Settings from the environment with these overrides; a bad value is a usage error (exit 2)."""
    from engine.settings import Settings

    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def build_engine(settings):
    """The engine every command shares, with its model manager (lazy: torch loads on first lease)."""
    import nodes
    from engine import Engine
    from nodes.llm import TextBackends

    models = model_manager(settings)
    config = {"text": TextBackends.from_settings(settings)}
    return Engine.from_settings(settings, nodes.registry(), models=models, config=config)


def model_manager(settings=None):
    """The model manager (lazy: nothing loads, torch included, until a model is leased)."""
    import os

    from engine.models import ModelManager

    # The face reads HF_TOKEN once; the engine never reads the environment.
    return ModelManager.from_settings(settings or load_settings(), hf_token=os.environ.get("HF_TOKEN"))


def report_invalid(exc) -> None:
    """Every problem on stderr, one per line, then exit 2."""
    for problem in exc.problems:
        click.echo(f"invalid: {problem}", err=True)
    sys.exit(EXIT_INVALID)


class Progress:
    """Draws one line per node on stderr from the engine's events (local) or the gateway's (remote)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.live = False

    def __call__(self, event) -> None:
        self.show(event.kind, event.to_json())

    def show(self, kind: str, e: dict) -> None:
        """Draw one event given as its JSON form."""
        if not self.enabled:
            return
        if kind == "node.progress":
            total = f"/{e['total']:g}" if e.get("total") else ""
            note = f" {e['message']}" if e.get("message") else ""
            click.echo(f"\r  … {e['node']} ({e['node_type']}) {e['done']:g}{total}{note}\033[K", err=True, nl=False)
            self.live = True
            return
        line = {
            "node.finished": lambda: f"  ✓ {e['node']} ({e['node_type']}) {e['elapsed'] * 1000:.1f} ms",
            "node.cached": lambda: f"  = {e['node']} ({e['node_type']}) cached",
            "node.failed": lambda: f"  ✗ {e['node']} ({e['node_type']}) failed: {e['message']}",
            "job.cancelled": lambda: f"  cancelled: {e.get('reason', '')}",
        }.get(kind)
        if line is not None:
            prefix = "\r\033[K" if self.live else ""
            self.live = False
            click.echo(prefix + line(), err=True)


def present(value, files, name: str):
    """A JSON-ready form of an output: media values are written to files and given as paths."""
    if isinstance(value, (str, int, float, bool, type(None), list, dict)):
        return value
    write = getattr(value, "write_file", None)
    if write is not None:
        return str(write(files, f"outputs/{name}"))
    return repr(value)


def run_local(settings, load, raw_params: dict[str, str] | None, values: dict | None, outputs, progress,
              debug: bool) -> dict:
    """Run in this process; returns the `--json` shape. Exits 2 / 1 / 130 on invalid / failed / cancelled."""
    import asyncio
    import signal

    from engine import Cancelled, CancelToken, FlowError, InvalidWorkflow

    engine = build_engine(settings)

    async def go():
        token = CancelToken()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, token.cancel, "interrupted (Ctrl-C)")
        wf = load()
        params = values if values is not None else engine.compile(wf).params_from_text(raw_params or {})
        return await engine.run(wf, params, outputs=outputs or None, listener=progress, cancel=token)

    try:
        result = asyncio.run(go())
    except InvalidWorkflow as exc:
        report_invalid(exc)
    except Cancelled as exc:
        click.echo(f"cancelled: {exc}", err=True)
        sys.exit(EXIT_CANCELLED)
    except FlowError as exc:
        fail(exc, debug)
    finally:
        engine.close()
    return {"job_id": result.job_id,
            "outputs": {name: present(v, engine.files, name) for name, v in result.outputs.items()},
            "executed": result.executed, "cached": result.cached, "seeds": result.seeds,
            "timings": result.timings, "elapsed": result.elapsed}


def fail(exc, debug: bool):
    """Print a failure (with its traceback under --debug) and exit 1."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_FAILED)


def run_remote(server: str, token: str, path: str, body: dict, out_dir, progress, debug: bool) -> dict:
    """Run on a gateway; media outputs are downloaded into ``out_dir``. Same shape as :func:`run_local`."""
    from pathlib import Path

    from engine import FlowError, InvalidWorkflow
    from gateway.client import Client

    client = Client(server, token)
    try:
        job = client.run(path, body, on_event=progress.show)
    except InvalidWorkflow as exc:
        report_invalid(exc)
    except FlowError as exc:
        fail(exc, debug)
    if job["state"] == "cancelled":
        click.echo(f"cancelled: {job.get('error', {}).get('message', '')}", err=True)
        sys.exit(EXIT_CANCELLED)
    if job["state"] != "finished":
        fail(FlowError(job.get("error", {}).get("message", f"the job ended {job['state']}")), debug)
    outputs = dict(job.get("outputs", {}))
    for name, value in outputs.items():
        if isinstance(value, dict) and set(value) >= {"url", "path"}:  # a media file on the gateway
            target = Path(out_dir or "outputs") / "downloads" / value["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download(value["url"], target)
            outputs[name] = str(target)
    return {"job_id": job["id"], "outputs": outputs, "executed": job.get("executed", []),
            "cached": job.get("cached", []), "seeds": job.get("seeds", {}), "timings": job.get("timings", {}),
            "elapsed": job.get("elapsed")}


def show(result: dict, as_json: bool) -> None:
    """Print a run's result: one JSON object, or one line per output (seeds on stderr)."""
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, default=repr))
        return
    for name, value in result["outputs"].items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        click.echo(f"{name}: {text}")
    if result["seeds"]:
        click.echo("seeds: " + ", ".join(f"{node}={seed}" for node, seed in result["seeds"].items()), err=True)


def server_options(command):
    """--server, --token, --json, --out, --debug: shared by `run` and every endpoint command."""
    for option in reversed([
        click.option("--server", metavar="URL", envvar="FLOW_SERVER", help="run on this gateway instead of here"),
        click.option("--token", envvar="FLOW_API_TOKEN", default="", help="the gateway's API token"),
        click.option("--out", "out_dir", type=click.Path(file_okay=False), help="folder for saved files"),
        click.option("--json", "as_json", is_flag=True, help="print one JSON object on stdout, nothing else"),
        click.option("--debug", is_flag=True, help="show tracebacks"),
    ]):
        command = option(command)
    return command
