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


ENV_FILE = ".env"  # read from the working directory by every command, as `docker compose` does


def load_environ(env_file=ENV_FILE) -> dict[str, str]:
    """The environment every command sees: the ``KEY=value`` lines of ``env_file`` (when there is
    one) under the shell's environment, which wins."""
    import os
    from pathlib import Path

    from deploy.host import read_dotenv

    path = Path(env_file)
    return {**(read_dotenv(path) if path.is_file() else {}), **os.environ}


def load_settings(env_file=ENV_FILE, **overrides):
    """The one settings loader of every command: the shell environment over ``env_file``, then these
    overrides; a bad value is a usage error (exit 2)."""
    from engine.settings import Settings

    try:
        return Settings.from_env(load_environ(env_file), **overrides)
    except ValueError as exc:
        raise click.UsageError(f"{exc} (set in the shell or in {env_file})") from exc


def build_engine(settings):
    """The engine every command shares, with its model manager (lazy: torch loads on first lease)."""
    import nodes
    from engine import Engine
    from nodes.llm import TextBackends

    models = model_manager(settings)
    config = {"text": TextBackends.from_settings(settings), "inputs": settings.input_dir}
    return Engine.from_settings(settings, nodes.registry(), models=models, config=config)


def model_manager(settings=None):
    """The model manager (lazy: nothing loads, torch included, until a model is leased)."""
    from engine.models import ModelManager

    # The face reads HF_TOKEN once (the shell's, else .env's); the engine never reads the environment.
    return ModelManager.from_settings(settings or load_settings(), hf_token=load_environ().get("HF_TOKEN"))


def param_hint(name: str) -> str:
    """How `flow run` and `flow validate` give a param."""
    return f"--param {name}=VALUE"


def report_invalid(exc, hint=param_hint) -> None:
    """Every problem on stderr, one per line, then exit 2.

    A missing param's hint names its JSON field (what the gateway answers); here it becomes
    ``hint(name)``, the command line's form of giving it.
    """
    from engine.compile import missing_hint

    for problem in exc.problems:
        text = str(problem)
        if problem.param is not None and text.endswith(missing_hint(problem.param)):
            text = text[:-len(missing_hint(problem.param))] + f"give it, e.g. {hint(problem.param)}"
        click.echo(f"invalid: {text}", err=True)
    sys.exit(EXIT_INVALID)


class Progress:
    """Draws one line per node on stderr from the engine's events (local) or the gateway's (remote)."""

    def __init__(self, enabled: bool, clock=None):
        import time

        self.enabled = enabled
        self.live = False
        self.clock = clock or time.monotonic
        self.first: dict[str, tuple[float, float]] = {}  # node -> (time, done) of its first progress report

    def __call__(self, event) -> None:
        self.show(event.kind, event.to_json())

    def show(self, kind: str, e: dict) -> None:
        """Draw one event given as its JSON form."""
        if not self.enabled:
            return
        if kind == "node.progress":
            click.echo(f"\r{self.progress_line(e)}\033[K", err=True, nl=False)
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


    def progress_line(self, e: dict) -> str:
        """``  … gen (image.generate) 12/30 40% 2.5/s 7s left``: share, rate and time left when there is a total."""
        now, done, total = self.clock(), e["done"], e.get("total")
        start, done_then = self.first.setdefault(e["node"], (now, done))
        line = f"  … {e['node']} ({e['node_type']}) {done:g}"
        if total:
            line += f"/{total:g} {100 * done / total:.0f}%"
            if now > start and done > done_then:
                rate = (done - done_then) / (now - start)
                line += f" {rate:.3g}/s {_duration((total - done) / rate)} left"
        return line + (f" {e['message']}" if e.get("message") else "")


def _duration(seconds: float) -> str:
    """``7s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def present(value, files, name: str, job_id: str | None = None):
    """A JSON-ready form of an output: media values as the path (a batch: list of paths) of their file.

    That is the file a save node of the run wrote, else one written now under ``outputs/``.
    """
    if isinstance(value, (str, int, float, bool, type(None), list, dict)):
        return value
    from engine.saving import saved_files

    saved = saved_files(value, job_id) if job_id else None
    if saved:
        return saved
    write = getattr(value, "write_file", None)
    if write is not None:
        return str(write(files, f"outputs/{name}"))
    return repr(value)


def run_local(settings, load, raw_params: dict[str, str] | None, values: dict | None, outputs, progress,
              debug: bool, hint=param_hint) -> dict:
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
        report_invalid(exc, hint)
    except Cancelled as exc:
        click.echo(f"cancelled: {exc}", err=True)
        sys.exit(EXIT_CANCELLED)
    except FlowError as exc:
        fail(exc, debug)
    finally:
        engine.close()
    return {"job_id": result.job_id,
            "outputs": {name: present(v, engine.files, name, result.job_id) for name, v in result.outputs.items()},
            "executed": result.executed, "cached": result.cached, "seeds": result.seeds,
            "timings": result.timings, "elapsed": result.elapsed}


def fail(exc, debug: bool):
    """Print a failure (with its traceback under --debug) and exit 1."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_FAILED)


def run_remote(server: str, token: str, path: str, body: dict, out_dir, progress, debug: bool,
               hint=param_hint) -> dict:
    """Run on a gateway; media outputs are downloaded into ``out_dir``. Same shape as :func:`run_local`."""
    from pathlib import Path

    from engine.paths import safe_join

    from engine import FlowError, InvalidWorkflow
    from gateway.client import Client

    client = Client(server, token)
    try:
        job = client.run(path, body, on_event=progress.show)
    except InvalidWorkflow as exc:
        report_invalid(exc, hint)
    except FlowError as exc:
        fail(exc, debug)
    if job["state"] == "cancelled":
        click.echo(f"cancelled: {job.get('error', {}).get('message', '')}", err=True)
        sys.exit(EXIT_CANCELLED)
    if job["state"] != "finished":
        fail(FlowError(job.get("error", {}).get("message", f"the job ended {job['state']}")), debug)
    outputs = dict(job.get("outputs", {}))
    downloads = Path(out_dir or "outputs") / "downloads"

    def fetch(value):
        # the gateway names the path: it stays under downloads/ whatever it says (no ../, no absolute)
        target = safe_join(downloads, str(value["path"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download(value["url"], target)
        return str(target)

    for name in job.get("media") or ():  # a media file on the gateway (a batch: a list of them)
        value = outputs.get(name)
        if isinstance(value, dict) and set(value) >= {"url", "path"}:
            outputs[name] = fetch(value)
        elif isinstance(value, list) and all(isinstance(v, dict) and set(v) >= {"url", "path"} for v in value):
            outputs[name] = [fetch(v) for v in value]
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


def _from_env_file(name: str) -> str | None:
    """A variable of the working directory's .env (click looks at the shell's first)."""
    return load_environ().get(name) or None


def server_options(command):
    """--server, --token, --json, --out, --debug: shared by `run` and every endpoint command."""
    for option in reversed([
        click.option("--server", metavar="URL", envvar="FLOW_SERVER", default=lambda: _from_env_file("FLOW_SERVER"),
                     help="run on this gateway instead of here"),
        click.option("--token", envvar="FLOW_API_TOKEN", default=lambda: _from_env_file("FLOW_API_TOKEN") or "",
                     help="the gateway's API token"),
        click.option("--out", "out_dir", type=click.Path(file_okay=False), help="folder for saved files"),
        click.option("--json", "as_json", is_flag=True, help="print one JSON object on stdout, nothing else"),
        click.option("--debug", is_flag=True, help="show tracebacks"),
    ]):
        command = option(command)
    return command
