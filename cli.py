"""The `flow` command: run workflows and endpoints (here or on a gateway), serve, models, doctor.

Only click is imported at module level: `flow --help` stays fast and never loads the engine's
dependencies, let alone torch.
"""

from __future__ import annotations

import json
import sys

import click

from cli_endpoints import FlowCLI

VERSION = "0.1.0"

EXIT_FAILED = 1  # a node failed while running
EXIT_INVALID = 2  # the workflow or a param is invalid (also click's usage errors)
EXIT_CANCELLED = 130  # interrupted (Ctrl-C)


@click.group(cls=FlowCLI, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, prog_name="flow")
def main():
    """flow: text, image, music and video generation as workflow graphs on one GPU."""


def _settings(**overrides):
    from engine.settings import Settings

    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _engine(settings):
    """The engine every command shares, with its model manager (lazy: torch loads on first lease)."""
    import nodes
    from engine import Engine
    from nodes.llm import TextBackends

    models = _model_manager(settings)
    config = {"text": TextBackends.from_settings(settings)}
    return Engine.from_settings(settings, nodes.registry(), models=models, config=config)


def _load(path: str, settings):
    """A workflow from a file, or by name from the workflows folder (``hello`` -> workflows/hello.json)."""
    from pathlib import Path

    from engine import Workflow

    candidate = Path(path)
    if candidate.suffix.lower() in (".png", ".webp", ".jpg", ".jpeg") and candidate.is_file():
        from engine.embedded import workflow_from_image

        return workflow_from_image(candidate)  # re-run the workflow a saved image carries
    if not candidate.exists() and not path.endswith(".json"):
        named = settings.workflows_dir / f"{path}.json"
        if named.exists():
            candidate = named
    return Workflow.load(candidate)


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    raw = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--param")
        raw[name.strip()] = value
    return raw


def _report_invalid(exc) -> None:
    """Every problem on stderr, one per line, then exit 2."""
    for problem in exc.problems:
        click.echo(f"invalid: {problem}", err=True)
    sys.exit(EXIT_INVALID)


class _Progress:
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


def _present(value, files, name: str):
    """A JSON-ready form of an output: media values are written to files and given as paths."""
    if isinstance(value, (str, int, float, bool, type(None), list, dict)):
        return value
    write = getattr(value, "write_file", None)
    if write is not None:
        return str(write(files, f"outputs/{name}"))
    return repr(value)


def _run_local(settings, load, raw_params: dict[str, str] | None, values: dict | None, outputs, progress,
               debug: bool) -> dict:
    """Run in this process; returns the `--json` shape. Exits 2 / 1 / 130 on invalid / failed / cancelled."""
    import asyncio
    import signal

    from engine import Cancelled, CancelToken, FlowError, InvalidWorkflow

    engine = _engine(settings)

    async def go():
        token = CancelToken()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, token.cancel, "interrupted (Ctrl-C)")
        wf = load()
        params = values if values is not None else engine.compile(wf).params_from_text(raw_params or {})
        return await engine.run(wf, params, outputs=outputs or None, listener=progress, cancel=token)

    try:
        result = asyncio.run(go())
    except InvalidWorkflow as exc:
        _report_invalid(exc)
    except Cancelled as exc:
        click.echo(f"cancelled: {exc}", err=True)
        sys.exit(EXIT_CANCELLED)
    except FlowError as exc:
        _fail(exc, debug)
    finally:
        engine.close()
    return {"job_id": result.job_id,
            "outputs": {name: _present(v, engine.files, name) for name, v in result.outputs.items()},
            "executed": result.executed, "cached": result.cached, "seeds": result.seeds,
            "timings": result.timings, "elapsed": result.elapsed}


def _fail(exc, debug: bool):
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_FAILED)


def _run_remote(server: str, token: str, path: str, body: dict, out_dir, progress, debug: bool) -> dict:
    """Run on a gateway; media outputs are downloaded into ``out_dir``. Same shape as :func:`_run_local`."""
    from pathlib import Path

    from engine import FlowError, InvalidWorkflow
    from gateway.client import Client

    client = Client(server, token)
    try:
        job = client.run(path, body, on_event=progress.show)
    except InvalidWorkflow as exc:
        _report_invalid(exc)
    except FlowError as exc:
        _fail(exc, debug)
    if job["state"] == "cancelled":
        click.echo(f"cancelled: {job.get('error', {}).get('message', '')}", err=True)
        sys.exit(EXIT_CANCELLED)
    if job["state"] != "finished":
        _fail(FlowError(job.get("error", {}).get("message", f"the job ended {job['state']}")), debug)
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


def _show(result: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, default=repr))
        return
    for name, value in result["outputs"].items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        click.echo(f"{name}: {text}")
    if result["seeds"]:
        click.echo("seeds: " + ", ".join(f"{node}={seed}" for node, seed in result["seeds"].items()), err=True)


def _server_options(command):
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


@main.command()
@click.argument("workflow")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="fill a workflow param")
@click.option("--output", "-o", "outputs", multiple=True, metavar="NAME", help="compute only these outputs")
@_server_options
def run(workflow, params, outputs, server, token, out_dir, as_json, debug):
    """Run WORKFLOW (a .json file, or the name of a saved workflow)."""
    settings = _settings(output_dir=out_dir)
    raw = _parse_params(params)
    progress = _Progress(enabled=not as_json and sys.stderr.isatty())
    if server:
        from engine import InvalidWorkflow

        try:
            wf = _load(workflow, settings)
            values = _engine_free_params(wf, raw)
        except InvalidWorkflow as exc:
            _report_invalid(exc)
        body = {"workflow": wf.doc, "params": values, **({"outputs": list(outputs)} if outputs else {})}
        result = _run_remote(server, token, "/jobs", body, out_dir, progress, debug)
    else:
        result = _run_local(settings, lambda: _load(workflow, settings), raw, None, outputs, progress, debug)
    _show(result, as_json)


def _engine_free_params(workflow, raw: dict[str, str]) -> dict:
    """Typed param values for a workflow, using only the registry (no engine, no models)."""
    import nodes
    from engine.compile import compile_workflow

    return compile_workflow(workflow, nodes.registry()).params_from_text(raw)


@main.command()
@click.option("--host", default=None, help="address to bind (default 127.0.0.1, FLOW_HOST)")
@click.option("--port", type=int, default=None, help="port (default 8000, FLOW_PORT)")
@click.option("--insecure-no-token", is_flag=True, default=None,
              help="allow a non-loopback --host without FLOW_API_TOKEN (anyone who reaches it may use it)")
def serve(host, port, insecure_no_token):
    """Start the gateway: every endpoint, jobs, events, models and the web page."""
    import logging

    settings = _settings(host=host, port=port, insecure_no_token=insecure_no_token)
    from gateway.security import exposure_problem

    problem = exposure_problem(settings)
    if problem:
        raise click.UsageError(problem)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from server import serve as run_server

    run_server(settings, _engine(settings))


@main.command()
@click.argument("workflow")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="check these param values too")
def validate(workflow, params):
    """Check WORKFLOW without running it; print every problem (exit 2) or a summary (exit 0)."""
    from engine import InvalidWorkflow

    settings = _settings()
    engine = _engine(settings)
    try:
        wf = _load(workflow, settings)
        compiled = engine.compile(wf)
        compiled.bind(compiled.params_from_text(_parse_params(params)))
    except InvalidWorkflow as exc:
        _report_invalid(exc)
    finally:
        engine.close()
    click.echo(f"ok: {wf.name}: {len(wf.nodes)} nodes, params: {', '.join(compiled.params) or 'none'}, "
               f"outputs: {', '.join(compiled.outputs) or 'none'}")


@main.command("nodes")
@click.option("--json", "as_json", is_flag=True, help="the full catalogue as JSON")
def nodes_command(as_json):
    """List every node type with its inputs and outputs."""
    import nodes

    catalogue = nodes.registry().describe()
    if as_json:
        click.echo(json.dumps(catalogue, indent=2, ensure_ascii=False))
        return
    for type_id, entry in catalogue.items():
        click.echo(f"{type_id} (v{entry['version']}): {entry['description']}")
        for name, spec in entry["inputs"].items():
            default = "" if spec["required"] else f" = {json.dumps(spec['default'])}"
            click.echo(f"    in  {name}: {spec['type']}{default}  {spec['description']}")
        if "variadic" in entry:
            click.echo(f"    in  <any name>: {entry['variadic']['type']}  {entry['variadic']['description']}")
        for name, spec in entry["outputs"].items():
            click.echo(f"    out {name}: {spec['type']}  {spec['description']}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
@click.option("--profile", type=click.Choice(["gpu", "cpu"]), default=None,
              help="the compose profile to check for (default: COMPOSE_PROFILES, else gpu)")
@click.option("--env-file", type=click.Path(dir_okay=False), default=".env", show_default=True,
              help="the .env that compose.yaml reads")
def doctor(as_json, profile, env_file):
    """Check this machine for a deployment: Docker, ROCm, the GPU, groups, devices, Ollama, disk.

    Each check prints pass, WARN or FAIL with its fix; exits 1 when something required fails.
    """
    import os
    from pathlib import Path

    from engine.doctor import diagnose, render

    gpu = None if profile is None else profile == "gpu"
    report = diagnose(os.environ, env_file=Path(env_file), gpu=gpu)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else render(report))
    if not report.ok:
        sys.exit(EXIT_FAILED)


def _model_manager(settings=None):
    """The model manager (lazy: nothing loads, torch included, until a model is leased)."""
    import os

    from engine.models import ModelManager

    # The face reads HF_TOKEN once; the engine never reads the environment.
    return ModelManager.from_settings(settings or _settings(), hf_token=os.environ.get("HF_TOKEN"))


def _pull_bar():
    """A one-line progress display on stderr for PullProgress reports."""
    last = {"line": ""}

    def show(p) -> None:
        if p.total:
            done = p.completed or 0
            line = f"{p.status[:40]:<40} {done / 2**20:9.1f} / {p.total / 2**20:.1f} MiB {100 * done / p.total:5.1f}%"
        else:
            line = p.status[:80]
        if line != last["line"]:
            click.echo(f"\r{line:<80}", nl=False, err=True)
            last["line"] = line

    return show


@main.command()
@click.argument("ref")
@click.option("--variant", default=None, help="weights variant to fetch, e.g. fp16 (Hugging Face)")
def pull(ref, variant):
    """Fetch a model (hf:ORG/NAME[@REV] or ollama:NAME[:TAG]); an interrupted pull resumes when run again."""
    from engine.errors import FlowError

    store = _model_manager().store
    try:
        folder = store.pull(ref, variant=variant, progress=_pull_bar())
    except FlowError as exc:
        click.echo("", err=True)
        raise click.ClickException(str(exc)) from exc
    click.echo("", err=True)
    click.echo(f"pulled {ref}" + (f" into {folder}" if folder else ""))


@main.group("models", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON list")
@click.pass_context
def models_command(ctx, as_json):
    """List the models on this machine (Hugging Face, local folders, Ollama) with sizes and places."""
    if ctx.invoked_subcommand is not None:
        return
    found = _model_manager().store.list()
    if as_json:
        click.echo(json.dumps([m.to_json() for m in found], indent=2))
        return
    if not found:
        click.echo("no models yet; fetch one with: flow pull hf:ORG/NAME or flow pull ollama:NAME")
    for m in found:
        click.echo(f"{m.ref:<50} {m.size / 2**30:8.2f} GiB  {m.location}")


@models_command.command("loaded")
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
def models_loaded(as_json):
    """Show the model manager's device, budget, loaded models and counters (this process only)."""
    manager = _model_manager()
    manager.device  # probe the device and budget so the report names them
    report = manager.report()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    click.echo(f"device: {report.device or 'not probed (no model leased in this process)'}")
    click.echo(f"budget: {report.budget / 2**30:.2f} GiB ({report.budget_source}); used {report.used / 2**30:.2f} GiB")
    for m in report.models:
        click.echo(f"  {m.ref:<48} {m.size / 2**30:7.2f} GiB  {m.place:<6} pinned={m.pinned}")
    click.echo("counters: " + ", ".join(f"{k}={v}" for k, v in vars(report.counters).items()))


if __name__ == "__main__":
    main()
