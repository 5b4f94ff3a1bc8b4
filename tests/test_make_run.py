"""`make run`: pip's progress shows on the first install, `PORT=` picks the port, and the README says so."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def _dry_run(*args: str, venv: Path) -> str:
    """What `make -n` would run, for a virtual environment that does not exist yet."""
    # run from `make test` (as CI does), the outer make's variables would leak in: drop them
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(["make", "--no-print-directory", "-n", *args, f"VENV={venv}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True, env=env)
    return done.stdout


def test_make_run_port_goes_to_flow_serve(tmp_path):
    assert _dry_run("run", "PORT=8080", venv=tmp_path / "v").splitlines()[-1].endswith("flow serve --port 8080")
    assert _dry_run("run", venv=tmp_path / "v").splitlines()[-1].endswith("flow serve")  # FLOW_PORT, else 8000


def test_make_run_shows_the_install_and_make_test_keeps_it_quiet(tmp_path):
    run = _dry_run("run", venv=tmp_path / "v")
    assert "installing pinned dependencies" in run
    assert "pip install -c" in " ".join(run.split()) and "--quiet" not in run
    test = _dry_run("test", venv=tmp_path / "v")
    assert "installing pinned dependencies" in test and "pip install --quiet" in test


def test_readme_set_up_names_the_port_the_env_file_and_the_log_level():
    set_up = (ROOT / "README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    assert "make run PORT=8080" in set_up
    assert ".env" in set_up and "FLOW_LOG_LEVEL" in set_up
