"""`flow` subcommands generated from saved endpoint workflows: `/text/gen` -> `flow text gen`.

Listing them reads only the workflows' JSON (so `flow --help` stays fast); a command's options
are built from its workflow's params when it is used. Running goes through `flow run`'s helpers
(cli_run.py), in process or against a gateway (`--server`).
"""

from __future__ import annotations

import json
import sys

import click

from cli_run import Progress, load_settings, report_invalid, run_local, run_remote, server_options, show


class FlowCLI(click.Group):
    """The `flow` group: built-in commands plus one command per saved endpoint workflow.

    `/hello` becomes `flow hello`, `/text/gen` becomes `flow text gen`. Listing them reads only
    the workflows' JSON; a command's options are built from the workflow when it is used.
    """

    def _endpoints(self) -> dict[str, dict[str, tuple[str, object, str]]]:
        """First path segment -> {rest of the path or "": (endpoint path, workflow file, description)}."""
        from pathlib import Path

        folder = Path(load_settings().workflows_dir)
        tree: dict[str, dict[str, tuple[str, object, str]]] = {}
        for path in sorted(folder.glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                endpoint, about = doc.get("endpoint"), str(doc.get("description") or path.stem)
            except (OSError, ValueError, AttributeError):
                continue  # `flow validate` reports broken files; listing must not fail on them
            if isinstance(endpoint, str) and endpoint.startswith("/"):
                head, _, rest = endpoint.strip("/").partition("/")
                tree.setdefault(head, {})[rest.replace("/", "-")] = (endpoint, path, about)
        return tree

    def list_commands(self, ctx):
        builtin = sorted({*super().list_commands(ctx), "products"})
        return builtin + sorted(n for n in self._endpoints() if n not in builtin)

    def resolve_command(self, ctx, args):
        """Unknown commands suggest the nearest: `flow text-gen` -> did you mean `flow text gen`?"""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            nearest = _nearest(args[0] if args else "", self._flat_names(ctx))
            if nearest is None:
                raise
            raise click.UsageError(f"no such command {args[0]!r}; did you mean `flow {nearest}`?", ctx) from exc

    def _flat_names(self, ctx) -> list[str]:
        """Every command as typed after `flow`: `run`, `text`, `text gen`, `models loaded`..."""
        names, endpoints = [], self._endpoints()
        for name in self.list_commands(ctx):
            names.append(name)
            if name in endpoints and name not in self.commands:
                names.extend(f"{name} {sub}" for sub in endpoints[name] if sub)
            elif isinstance(self.commands.get(name), click.Group):
                names.extend(f"{name} {sub}" for sub in self.commands[name].list_commands(ctx))
        return names

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        if name == "products":
            return products
        branch = self._endpoints().get(name)
        if branch is None:
            return None
        if list(branch) == [""]:
            return _LazyEndpoint(name, *branch[""])
        group = click.Group(name, help=f"Endpoints under /{name}.")
        for sub, entry in branch.items():
            group.add_command(_LazyEndpoint(sub or name, *entry))
        return group


def _nearest(typed: str, names: list[str]) -> str | None:
    """The command name nearest to what was typed (``text-gen``, ``text_gen`` -> ``text gen``), or None."""
    import difflib

    spaced = " ".join(typed.replace("-", " ").replace("_", " ").split())
    if not spaced:
        return None
    match = difflib.get_close_matches(spaced, names, n=1, cutoff=0.6)
    return match[0] if match else None


class _LazyEndpoint(click.Command):
    """Stands for an endpoint command in listings; builds the real one (options from params) when used."""

    def __init__(self, name: str, endpoint: str, path, about: str):
        super().__init__(name, short_help=f"POST {endpoint}: {about.splitlines()[0] if about else ''}")
        self._args = (endpoint, path)
        self._real: click.Command | None = None

    def _command(self) -> click.Command:
        if self._real is None:
            self._real = _endpoint_command(self.name, *self._args)
        return self._real

    def make_context(self, info_name, args, parent=None, **extra):
        return self._command().make_context(info_name, args, parent=parent, **extra)


def _endpoint_command(name: str, endpoint: str, path) -> click.Command:
    """A command for one saved endpoint: its params become options; the first TEXT param is also positional."""
    from engine import InvalidWorkflow, Workflow

    try:
        workflow = Workflow.load(path)
        import nodes
        from engine.compile import compile_workflow

        compiled = compile_workflow(workflow, nodes.registry())
    except InvalidWorkflow as exc:
        problems = exc

        @click.command(name, help=f"(invalid workflow {path})")
        def broken():
            report_invalid(problems)

        return broken
    from engine.types import ValueType

    kinds = {ValueType.INT: click.INT, ValueType.FLOAT: click.FLOAT, ValueType.BOOL: click.BOOL}
    effective = compiled.effective_params({})
    positional = next((p for p, info in compiled.params.items()
                       if info.type in (ValueType.TEXT, ValueType.JSON)), None)
    options = []
    if positional is not None:
        options.append(click.Argument([f"{positional}_arg"], required=False, metavar=positional.upper()))
    for pname, info in compiled.params.items():
        default = f" (default: {json.dumps(effective[pname])})" if pname in effective else " (required)"
        options.append(click.Option([f"--{pname.replace('_', '-')}", pname], type=kinds.get(info.type, str),
                                    default=None, help=info.description + _limits(info) + default))

    def callback(server, token, out_dir, as_json, debug, **given):
        if positional is not None:
            arg = given.pop(f"{positional}_arg")
            if arg is not None and given.get(positional) is None:
                given[positional] = arg
        values = {}
        for pname, value in given.items():
            if value is None:
                continue
            if compiled.params[pname].type is ValueType.JSON:
                try:
                    value = json.loads(value)
                except ValueError:
                    pass  # a bare word is a JSON string
            values[pname] = value
        settings = load_settings(output_dir=out_dir)
        for pname in values:
            if any(spec.widget == "file" for spec in compiled.params[pname].specs):
                values[pname] = _input_file(values[pname], pname, settings, server, token)
        progress = Progress(enabled=not as_json and sys.stderr.isatty())
        hint = _option_hint(click.get_current_context().command_path, positional)
        if server:
            result = run_remote(server, token, endpoint, values, out_dir, progress, debug, hint)
        else:
            result = run_local(settings, lambda: workflow, None, values, None, progress, debug, hint)
        show(result, as_json)

    command = click.Command(name, callback=callback, params=options,
                            help=f"POST {endpoint}: {workflow.description or workflow.name}")
    return server_options(command)


def input_files(load, raw: dict[str, str], settings, server, token) -> dict[str, str]:
    """`flow run -p NAME=./photo.png`: image params naming a file here as ``input:NAME`` refs (see
    :func:`_input_file`); ``load()`` gives the workflow, loaded only when a value names an existing file."""
    from pathlib import Path

    if not any(v and Path(v).expanduser().is_file() for v in raw.values()):
        return raw
    import nodes
    from engine.compile import compile_workflow

    params = compile_workflow(load(), nodes.registry()).params
    return {name: _input_file(value, name, settings, server, token)
            if name in params and any(spec.widget == "file" for spec in params[name].specs) else value
            for name, value in raw.items()}


def _input_file(value, pname: str, settings, server, token):
    """An image file named on the command line (relative to the current folder, or absolute) as the
    ``input:NAME`` ref of its copy in the input folder, or of its upload to ``server``; other values as given."""
    from pathlib import Path

    from engine.errors import FlowError
    from gateway.inputs import REF_PREFIX, store_input, upload

    if not isinstance(value, str) or not value or value.startswith(REF_PREFIX):
        return value
    file = Path(value).expanduser()
    if not file.is_file():
        return value  # a path inside the input or output folder, resolved by the node
    try:
        raw = file.read_bytes()
        return (upload(server, token, raw) if server else store_input(settings.input_dir, raw))["ref"]
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value!r} ({exc.strerror})", param_hint=f"--{pname}") from exc
    except FlowError as exc:
        raise click.BadParameter(f"{value!r}: {exc}", param_hint=f"--{pname.replace('_', '-')}") from exc


def _limits(info) -> str:
    """The constraints of the inputs a param fills, as its messages say them: ``[a multiple of 8; 16 to 1920]``."""
    found = []
    for spec in info.specs:
        c = spec.constraints
        low = c.get("minimum", c.get("exclusiveMinimum"))
        high = c.get("maximum", c.get("exclusiveMaximum"))
        parts = [f"a multiple of {c['multipleOf']:g}"] if "multipleOf" in c else []
        if low is not None or high is not None:
            above = f"more than {low:g}" if "exclusiveMinimum" in c else f"at least {low:g}"
            below = f"less than {high:g}" if "exclusiveMaximum" in c else f"at most {high:g}"
            if "minimum" in c and "maximum" in c:
                parts.append(f"{low:g} to {high:g}")
            else:
                parts.append(" and ".join(t for t, v in ((above, low), (below, high)) if v is not None))
        if "enum" in c:
            parts.append("one of " + ", ".join(map(str, c["enum"])))
        if parts and "; ".join(parts) not in found:
            found.append("; ".join(parts))
    return f" [{' | '.join(found)}]" if found else ""


def _option_hint(command_path: str, positional: str | None):
    """How this subcommand gives a param: `--prompt VALUE`, or for its positional param also `flow text gen VALUE`."""

    def hint(name: str) -> str:
        option = f"--{name.replace('_', '-')} VALUE"
        return f'{command_path} "VALUE" or {option}' if name == positional else option

    return hint


# -- `flow products`: the product records, here (the job database) or on a gateway (--server) -------

def _products_store(settings):
    from engine.products import ProductStore

    return ProductStore(settings.jobs_db, settings.output_dir)


def _products_call(server, token, method: str, path: str, body=None):
    from gateway.client import Client

    return Client(server, token, timeout=3600).call(method, path, body)[1]


def _products_show(product: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(product, ensure_ascii=False))
        return
    click.echo(f"{product['id']}  {product['name']}")
    for image in product.get("images") or []:
        click.echo(f"  image: {image.get('path') or image.get('url')}")
    for url in product.get("source_urls") or []:
        click.echo(f"  page: {url}")
    described = product.get("description")
    if described:
        click.echo(json.dumps(described, ensure_ascii=False, indent=2))


def _products_run(debug: bool, work):
    """Run ``work()``; a flow error is printed (exit 1, or 2 for a bad request) instead of a traceback."""
    from cli_run import fail
    from engine.errors import FlowError

    try:
        return work()
    except FlowError as exc:
        if getattr(exc, "status", 500) in (400, 404, 413, 415, 422) and not debug:
            raise click.ClickException(str(exc)) from exc
        fail(exc, debug)


def _product_options(command):
    for option in reversed([
        click.option("--server", metavar="URL", envvar="FLOW_SERVER", help="use this gateway's products instead of "
                                                                         "this machine's job database"),
        click.option("--token", envvar="FLOW_API_TOKEN", default="", help="the gateway's API token"),
        click.option("--json", "as_json", is_flag=True, help="print JSON on stdout"),
        click.option("--debug", is_flag=True, help="show tracebacks"),
    ]):
        command = option(command)
    return command


@click.group("products")
def products():
    """Products (name, images, pages, the generated description) kept in the job database."""


@products.command("list")
@_product_options
def products_list(server, token, as_json, debug):
    """List products, newest first."""
    def work():
        if server:
            return _products_call(server, token, "GET", "/products?limit=500")["products"]
        return [p.to_json() for p in _products_store(load_settings()).list(500)[0]]
    found = _products_run(debug, work)
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False))
        return
    for product in found:
        state = (product.get("describe") or {}).get("state", "not described")
        click.echo(f"{product['id']}  {product['name']}  ({state})")


@products.command("show")
@click.argument("product_id")
@_product_options
def products_show(product_id, server, token, as_json, debug):
    """Show one product and its description."""
    def work():
        if server:
            return _products_call(server, token, "GET", f"/products/{product_id}")
        return _products_store(load_settings()).get(product_id).to_json()
    _products_show(_products_run(debug, work), as_json)


@products.command("create")
@click.argument("name")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="a PNG, JPEG or WebP file (repeatable)")
@click.option("--image-url", "image_urls", multiple=True, help="an http(s) URL of a picture (repeatable)")
@click.option("--url", "source_urls", multiple=True, help="the product's web page (repeatable)")
@click.option("--notes", default="", help="notes for the description")
@click.option("--facts", default=None, help="known facts, a JSON object")
@_product_options
def products_create(name, images, image_urls, source_urls, notes, facts, server, token, as_json, debug):
    """Create a product."""
    import base64
    from pathlib import Path

    fields = {"name": name, "notes": notes, "source_urls": list(source_urls),
              "images": [{"url": u} for u in image_urls]}
    if facts is not None:
        try:
            fields["facts"] = json.loads(facts)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON ({exc})", param_hint="--facts") from exc
    uploads = [Path(p).read_bytes() for p in images]

    def work():
        if server:
            body = {**fields, "images": [*fields["images"],
                                         *({"data": base64.b64encode(b).decode()} for b in uploads)]}
            return _products_call(server, token, "POST", "/products", body)
        return _products_store(load_settings()).create(fields, uploads).to_json()
    _products_show(_products_run(debug, work), as_json)


@products.command("describe")
@click.argument("product_id")
@click.option("--tone", default=None, help="tone of voice, e.g. friendly, technical")
@click.option("--language", default=None, help="language, e.g. en, fr")
@click.option("--model", default=None, help="the LLM that writes the description")
@click.option("--vision-model", default=None, help="the vision model that describes the picture")
@click.option("--seed", type=int, default=None, help="random seed")
@_product_options
def products_describe(product_id, tone, language, model, vision_model, seed, server, token, as_json, debug):
    """Run the product_describe workflow on a product and save the description into it."""
    import time

    from cli_run import run_local

    options = {k: v for k, v in {"tone": tone, "language": language, "model": model, "vision_model": vision_model,
                                 "seed": seed}.items() if v is not None}
    if server:
        answer = _products_run(debug, lambda: _products_call(server, token, "POST",
                                                             f"/products/{product_id}/describe?timeout=3600", options))
        _products_show(answer["product"], as_json)
        return
    from engine import Workflow
    from engine.products import describe_params, describe_result

    settings = load_settings()
    store = _products_store(settings)
    product = _products_run(debug, lambda: store.get(product_id))
    params = _products_run(debug, lambda: describe_params(product, options))
    workflow = Workflow.load(settings.workflows_dir / "product_describe.json")
    progress = Progress(enabled=not as_json and sys.stderr.isatty())
    run = {"job": None, "state": "running", "tone": params.get("tone", "neutral"),
           "language": params.get("language", "en"), "started": time.time()}
    result = run_local(settings, lambda: workflow, None, params, None, progress, debug)
    run["job"] = result["job_id"]
    saved = store.update(product.id, describe_result(run, "finished", result["outputs"], None), internal=True)
    _products_show(saved.to_json(), as_json)


@products.command("delete")
@click.argument("product_id")
@_product_options
def products_delete(product_id, server, token, as_json, debug):
    """Delete a product and its uploaded images."""
    def work():
        if server:
            return _products_call(server, token, "DELETE", f"/products/{product_id}")["deleted"]
        return _products_store(load_settings()).delete(product_id).id
    click.echo(_products_run(debug, work))
