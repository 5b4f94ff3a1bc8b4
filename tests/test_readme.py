"""The README's shell blocks run as written, so the README cannot drift from what flow does.

Every ```sh block carries a marker on the line above it:
- ``<!-- readme: run -->``: each line runs offline in a fresh folder (``.venv/bin/`` and a bare
  ``flow`` are this checkout's command; ``[...]`` optional parts are left out);
- ``<!-- readme: server -->``: the same, against a real `flow serve` that the test starts
  (``localhost:8000`` is its address, ``ID`` a job it ran);
- ``<!-- readme: skip (why) -->``: needs what a test machine has not (a GPU, Docker, models, a
  network), said in the marker.
A block without a marker fails the test: a new example must say whether it runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"(?:<!-- readme: (?P<mark>[^>]*?) -->\n)?```sh\n(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str, str, int]]:
    """(marker, body, line number) of every shell block of the README."""
    text = (ROOT / "README.md").read_text()
    return [(m.group("mark") or "", m.group("body"), text[:m.start("body")].count("\n") + 1)
            for m in BLOCK.finditer(text)]


def commands(body: str) -> list[str]:
    """The block's command lines, comments and optional ``[...]`` parts left out."""
    found = []
    for line in body.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()  # a trailing comment
        line = re.sub(r"\s\[[^\]]*\]", "", line)  # optional parts: [--json], [--server URL]
        if line and not line.startswith("#"):
            found.append(line)
    return found


def test_readme_every_shell_block_says_whether_it_runs():
    found = blocks()
    assert found, "the README lost its shell examples"
    for mark, _, line in found:
        assert mark in ("run", "server") or mark.startswith("skip ("), \
            f"README.md line {line}: mark the block <!-- readme: run|server|skip (why) -->"


def _run(line: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    line = re.sub(r"(^|\s)\.venv/bin/", r"\1" + str(BIN) + "/", line)
    line = re.sub(r"^flow\b", str(BIN / "flow"), line)
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _env(tmp: Path) -> dict:
    return {**os.environ, "FLOW_OUTPUT_DIR": str(tmp / "outputs"), "FLOW_JOBS_DB": str(tmp / "jobs.sqlite3"),
            "FLOW_MODELS_DIR": str(tmp / "models"), "FLOW_PROBE_DEVICE": "false", "HOME": str(tmp)}


@pytest.mark.parametrize("line", [pytest.param(c, id=f"line{n}:{c[:40]}") for mark, body, n in blocks()
                                  if mark == "run" for c in commands(body)])
def test_readme_offline_commands_run(line, tmp_path):
    (tmp_path / "workflows").symlink_to(ROOT / "workflows")  # examples name saved workflows by path
    done = _run(line, tmp_path, _env(tmp_path))
    assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.mark.slow
def test_readme_server_commands_run(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "gateway"))
    from gateway_support import Served

    lines = [c for mark, body, _ in blocks() if mark == "server" for c in commands(body)]
    assert lines, "no README block is marked to run against a server"
    (tmp_path / "workflows").symlink_to(ROOT / "workflows")
    server = Served(tmp_path, {"FLOW_PROBE_DEVICE": "false"})
    server.start()
    try:
        status, job = server.call("POST", "/hello", {})
        assert status == 200, job
        for line in lines:
            line = re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", f"127.0.0.1:{server.port}", line)
            line = line.replace("/jobs/ID", f"/jobs/{job['id']}")
            done = _run(f"set -o pipefail; {line}", tmp_path, _env(tmp_path))
            assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            if line.startswith("curl") and "-N" not in line:
                assert "error" not in json.loads(done.stdout or "{}"), (line, done.stdout[:500])
    finally:
        server.stop()
