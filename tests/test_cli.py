"""The `flow` command, through click's runner and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main

ROOT = Path(__file__).resolve().parent.parent
HELLO = str(ROOT / "workflows" / "hello.json")
FLOW = str(Path(sys.executable).with_name("flow"))


def write(tmp_path, doc, name="wf.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


FAILING = {"nodes": {"k": {"type": "primitive.json", "inputs": {"value": {"a": 1}}},
                     "g": {"type": "json.get", "inputs": {"value": {"from": "k", "output": "value"}, "path": "b"}}},
           "outputs": {"b": {"from": "g", "output": "value"}}}
INVALID = {"nodes": {"j": {"type": "text.join", "inputs": {"a": 1}}, "u": {"type": "text.nope"}}}


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOW_OUTPUT_DIR", str(tmp_path / "out"))
    return CliRunner()


def test_cli_run_json_shape(runner):
    result = runner.invoke(main, ["run", HELLO, "--param", "name=Ada", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["outputs"]["text"] == "Hello, Ada!"
    assert Path(body["outputs"]["file"]).read_text() == "Hello, Ada!"
    assert set(body["executed"]) == {"greeting", "end", "save"}
    assert body["cached"] == [] and body["seeds"] == {}
    assert {"job_id", "outputs", "executed", "cached", "seeds"} <= body.keys()


def test_cli_run_by_name_prints_outputs(runner):
    result = runner.invoke(main, ["run", "hello", "-p", "name=Bo", "-p", "punctuation=?"])
    assert result.exit_code == 0, result.output
    assert "text: Hello, Bo?" in result.stdout


def test_cli_invalid_workflow_exits_2_with_every_problem(runner, tmp_path):
    result = runner.invoke(main, ["run", write(tmp_path, INVALID)])
    assert result.exit_code == 2
    lines = [l for l in result.stderr.splitlines() if l.startswith("invalid:")]
    assert len(lines) == 3, result.stderr  # a is not TEXT, b is missing, u has an unknown type
    assert any("node 'j' input 'a'" in l for l in lines) and any("node 'u'" in l for l in lines)
    assert "Traceback" not in result.output


def test_cli_bad_param_exits_2(runner):
    result = runner.invoke(main, ["run", HELLO, "--param", "nobody=1", "--param", "broken"])
    assert result.exit_code == 2
    result = runner.invoke(main, ["run", HELLO, "--param", "nobody=1"])
    assert result.exit_code == 2 and "param 'nobody': unknown param" in result.stderr


def test_cli_node_failure_exits_1_without_traceback(runner, tmp_path):
    result = runner.invoke(main, ["run", write(tmp_path, FAILING)])
    assert result.exit_code == 1
    assert "node 'g' (json.get) failed" in result.stderr and "path 'b' not found" in result.stderr
    assert "Traceback" not in result.stderr
    debug = runner.invoke(main, ["run", write(tmp_path, FAILING), "--debug"])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr


def test_cli_validate_and_nodes(runner, tmp_path):
    ok = runner.invoke(main, ["validate", HELLO])
    assert ok.exit_code == 0 and "ok: hello: 3 nodes" in ok.stdout
    bad = runner.invoke(main, ["validate", write(tmp_path, INVALID)])
    assert bad.exit_code == 2
    listing = runner.invoke(main, ["nodes", "--json"])
    catalogue = json.loads(listing.stdout)
    assert catalogue["text.join"]["inputs"]["separator"]["default"] == " "
    assert "text.template" in runner.invoke(main, ["nodes"]).stdout


def run_flow(*args, tmp_path):
    env = {**os.environ, "FLOW_OUTPUT_DIR": str(tmp_path / "out")}
    return subprocess.run([FLOW, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_cli_subprocess_exit_codes_and_json(tmp_path):
    ok = run_flow("run", HELLO, "--json", tmp_path=tmp_path)
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)  # stdout is exactly one JSON object
    assert body["outputs"]["text"] == "Hello, world!"
    assert ok.stderr == ""  # quiet: not a terminal
    assert run_flow("run", write(tmp_path, INVALID), tmp_path=tmp_path).returncode == 2
    failed = run_flow("run", write(tmp_path, FAILING), tmp_path=tmp_path)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert run_flow("run", str(tmp_path / "missing.json"), tmp_path=tmp_path).returncode == 2


def test_cli_help_imports_no_heavy_library(tmp_path):
    probe = ("import sys; sys.argv = ['flow', '--help']\n"
             "import cli\n"
             "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'networkx', 'jsonschema', 'engine.executor', 'nodes')"
             " if m in sys.modules]\n"
             "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_cli_endpoints_takes_the_run_helpers_from_cli_run_not_from_cli():
    import ast

    tree = ast.parse((ROOT / "cli_endpoints.py").read_text())  # every import, function bodies included
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "cli_run" in imported and "cli" not in imported
