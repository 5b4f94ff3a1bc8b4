"""The `flow` command: run workflows and endpoints (here or on a gateway), serve, models, doctor.

Only click is imported at module level: `flow --help` stays fast and never loads the engine's
dependencies, let alone torch.
"""

from __future__ import annotations

import json
import sys

import click

from cli_endpoints import FlowCLI, input_files
from cli_run import (
    EXIT_FAILED, Progress, build_engine, load_settings, model_manager, report_invalid, run_local, run_remote,
    server_options, show,
)

VERSION = "0.1.0"


@click.group(cls=FlowCLI, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, prog_name="flow")
def main():
    """flow: text, image, music and video generation as workflow graphs on one GPU."""


def _load(path: str, settings):
    """A workflow from a file, or by name from the workflows folder (``hello`` -> workflows/hello.json)."""
    from pathlib import Path

    from engine import Workflow

    candidate = Path(path)
    if candidate.is_file() and (candidate.suffix.lower() != ".json" or len(candidate.suffixes) > 1):
        # A file flow saved (image, audio, video, text, or a <file>.json sidecar): re-run what it carries.
        import nodes
        from engine.embedded import workflow_from_file

        def saved(name: str) -> dict | None:  # older files name the saved workflow that made them
            found = settings.workflows_dir / f"{name}.json"
            return Workflow.load(found).doc if name.isidentifier() and found.is_file() else None

        return workflow_from_file(candidate, nodes.registry(), saved)
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


@main.command()
@click.argument("workflow")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="fill a workflow param")
@click.option("--output", "-o", "outputs", multiple=True, metavar="NAME", help="compute only these outputs")
@server_options
def run(workflow, params, outputs, server, token, out_dir, as_json, debug):
    """Run WORKFLOW (a .json file, the name of a saved workflow, or a file flow saved: PNG, WAV, MP4...)."""
    from engine import InvalidWorkflow

    settings = load_settings(output_dir=out_dir)
    raw = _parse_params(params)
    try:  # an image param naming a file here (relative to this folder) goes to the input folder / the server
        raw = input_files(lambda: _load(workflow, settings), raw, settings, server, token)
    except InvalidWorkflow as exc:
        report_invalid(exc)
    progress = Progress(enabled=not as_json and sys.stderr.isatty())
    if server:
        try:
            wf = _load(workflow, settings)
            values = _engine_free_params(wf, raw)
        except InvalidWorkflow as exc:
            report_invalid(exc)
        body = {"workflow": wf.doc, "params": values, **({"outputs": list(outputs)} if outputs else {})}
        result = run_remote(server, token, "/jobs", body, out_dir, progress, debug)
    else:
        result = run_local(settings, lambda: _load(workflow, settings), raw, None, outputs, progress, debug)
    show(result, as_json)


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
    settings = load_settings(host=host, port=port, insecure_no_token=insecure_no_token)
    from gateway.security import exposure_problem

    problem = exposure_problem(settings)
    if problem:
        raise click.UsageError(problem)
    level = settings.log_level.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise click.UsageError(f"FLOW_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {settings.log_level!r}")
    if settings.broker_url:
        try:
            import celery  # noqa: F401
            import redis  # noqa: F401
        except ImportError:
            raise click.UsageError("FLOW_BROKER_URL is set but worker mode needs celery and redis: "
                                   "pip install -e '.[workers]'") from None
    from gateway.logs import configure

    configure(level)
    from server import serve as run_server

    run_server(settings, build_engine(settings))


@main.command()
@click.option("--queues", "-Q", default="gpu,cpu", show_default=True,
              help="capability queues to take jobs from, comma-separated (a box without a GPU: cpu)")
@click.option("--name", "-n", default=None, help="this worker's name (default: host name and process id)")
def worker(queues, name):
    """Run jobs a gateway sends through FLOW_BROKER_URL (one job at a time; start one per GPU).

    The worker writes outputs to FLOW_OUTPUT_DIR, which must be the gateway's (a shared folder).
    """
    settings = load_settings()
    if not settings.broker_url:
        raise click.UsageError("FLOW_BROKER_URL is not set: the worker takes jobs from that broker, "
                               "e.g. FLOW_BROKER_URL=redis://127.0.0.1:6379/0 flow worker")
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        raise click.UsageError("worker mode needs celery and redis: pip install -e '.[workers]'") from None
    from engine.worker import Worker
    from gateway.logs import configure
    from gateway.present import Presenter

    configure(settings.log_level.strip().upper() or "INFO")
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    Worker(settings, build_engine(settings), Presenter(settings.output_dir).result_json, name=name,
           queues=chosen).run()


@main.command()
@click.argument("workflow")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="check these param values too")
def validate(workflow, params):
    """Check WORKFLOW without running it; print every problem (exit 2) or a summary (exit 0).

    Without --param it checks the definition: the params a run must give are listed as "needs",
    not as problems. With --param it checks that run, missing required params included.
    """
    from engine import InvalidWorkflow

    settings = load_settings()
    engine = build_engine(settings)
    try:
        wf = _load(workflow, settings)
        compiled = engine.compile(wf)
        if params:
            compiled.bind(compiled.params_from_text(_parse_params(params)))
    except InvalidWorkflow as exc:
        report_invalid(exc)
    finally:
        engine.close()
    needs = [] if params else [name for name, info in compiled.params.items() if info.required]
    click.echo(f"ok: {wf.name}: {len(wf.nodes)} nodes, params: {', '.join(compiled.params) or 'none'}, "
               f"outputs: {', '.join(compiled.outputs) or 'none'}"
               + (f"; a run needs: {', '.join(needs)}" if needs else ""))


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

    from deploy.doctor import diagnose, render

    gpu = None if profile is None else profile == "gpu"
    try:  # the settings `flow serve` would run with, so the two agree (Ollama, budgets, models)
        settings = load_settings(env_file=env_file)
    except click.UsageError:
        settings = None  # the env_file check reports the value that does not parse
    report = diagnose(os.environ, env_file=Path(env_file), settings=settings, gpu=gpu)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else render(report))
    if not report.ok:
        sys.exit(EXIT_FAILED)



@main.command()
@click.option("--no-models", is_flag=True, help="skip the image, text and music generations")
@click.option("--only", "only", multiple=True, type=click.Choice(["image", "text", "music"]),
              help="run only these generations (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print the rows as JSON")
def bench(no_models, only, as_json):
    """Time flow on this machine: engine overhead, a cached request, one image/text/music generation.

    Prints a table to paste into an issue: the device, torch with its ROCm or CUDA version, fp16 or
    fp32, microseconds per node, requests per second, and per generation (with the model each
    endpoint uses by default, when it is on this machine; never downloaded) seconds, seconds per
    step and the peak VRAM. Outputs go to a temporary folder.
    """
    from deploy.bench import as_json as rows_json
    from deploy.bench import render, run

    rows = run(load_settings(), with_models=not no_models, only=set(only) or None)
    click.echo(rows_json(rows) if as_json else render(rows))

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

    store = model_manager().store
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
    found = model_manager().store.list()
    if as_json:
        click.echo(json.dumps([m.to_json() for m in found], indent=2))
        return
    if not found:
        click.echo("no models yet; fetch one with: flow pull hf:ORG/NAME or flow pull ollama:NAME")
    for m in found:
        click.echo(f"{m.ref:<50} {m.size / 2**30:8.2f} GiB  {m.location}" + (f"  [{m.family}]" if m.family else ""))


@models_command.command("loaded")
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
def models_loaded(as_json):
    """Show the model manager's device, budget, loaded models and counters (this process only)."""
    manager = model_manager()
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
