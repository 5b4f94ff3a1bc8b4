"""The `flow` command: run and validate workflows, list nodes (and, as they land, serve and models).

Only click is imported at module level: `flow --help` stays fast and never loads the engine's
dependencies, let alone torch.
"""

from __future__ import annotations

import json
import sys

import click

VERSION = "0.1.0"

EXIT_FAILED = 1  # a node failed while running
EXIT_INVALID = 2  # the workflow or a param is invalid (also click's usage errors)
EXIT_CANCELLED = 130  # interrupted (Ctrl-C)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    import os

    import nodes
    from engine import Engine
    from engine.models import ModelManager

    models = ModelManager.from_settings(settings, hf_token=os.environ.get("HF_TOKEN"))
    return Engine.from_settings(settings, nodes.registry(), models=models)


def _load(path: str, settings):
    """A workflow from a file, or by name from the workflows folder (``hello`` -> workflows/hello.json)."""
    from pathlib import Path

    from engine import Workflow

    candidate = Path(path)
    if not candidate.exists() and "/" not in path and not path.endswith(".json"):
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
    """Draws one line per node on stderr from the engine's events."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.live = False

    def __call__(self, event) -> None:
        if not self.enabled:
            return
        kind = event.kind
        if kind == "node.progress":
            total = f"/{event.total:g}" if event.total else ""
            note = f" {event.message}" if event.message else ""
            click.echo(f"\r  … {event.node} ({event.node_type}) {event.done:g}{total}{note}\033[K", err=True, nl=False)
            self.live = True
            return
        line = {
            "node.finished": lambda: f"  ✓ {event.node} ({event.node_type}) {event.elapsed * 1000:.1f} ms",
            "node.cached": lambda: f"  = {event.node} ({event.node_type}) cached",
            "node.failed": lambda: f"  ✗ {event.node} ({event.node_type}) failed: {event.message}",
            "job.cancelled": lambda: f"  cancelled: {event.reason}",
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


@main.command()
@click.argument("workflow")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="fill a workflow param")
@click.option("--output", "-o", "outputs", multiple=True, metavar="NAME", help="compute only these outputs")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="folder for saved files")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object on stdout, nothing else")
@click.option("--debug", is_flag=True, help="show tracebacks")
def run(workflow, params, outputs, out_dir, as_json, debug):
    """Run WORKFLOW (a .json file, or the name of a saved workflow)."""
    import asyncio
    import signal

    from engine import Cancelled, CancelToken, FlowError, InvalidWorkflow, NodeFailed

    settings = _settings(output_dir=out_dir)
    raw = _parse_params(params)
    engine = _engine(settings)
    progress = _Progress(enabled=not as_json and sys.stderr.isatty())

    async def go():
        token = CancelToken()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, token.cancel, "interrupted (Ctrl-C)")
        wf = _load(workflow, settings)
        values = engine.compile(wf).params_from_text(raw)
        return await engine.run(wf, values, outputs=outputs or None, listener=progress, cancel=token)

    try:
        result = asyncio.run(go())
    except InvalidWorkflow as exc:
        _report_invalid(exc)
    except Cancelled as exc:
        click.echo(f"cancelled: {exc}", err=True)
        sys.exit(EXIT_CANCELLED)
    except (NodeFailed, FlowError) as exc:
        if debug:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        engine.close()

    shown = {name: _present(value, engine.files, name) for name, value in result.outputs.items()}
    if as_json:
        click.echo(json.dumps({
            "job_id": result.job_id, "outputs": shown, "executed": result.executed, "cached": result.cached,
            "seeds": result.seeds, "timings": result.timings, "elapsed": result.elapsed,
        }, ensure_ascii=False, default=repr))
        return
    for name, value in shown.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        click.echo(f"{name}: {text}")
    if result.seeds:
        click.echo("seeds: " + ", ".join(f"{node}={seed}" for node, seed in result.seeds.items()), err=True)


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


def _model_manager():
    import os

    from engine.models import ModelManager

    # The face reads HF_TOKEN once; the engine never reads the environment.
    return ModelManager.from_settings(_settings(), hf_token=os.environ.get("HF_TOKEN"))


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
