"""Helpers of the deployment tests (a module of its own: `conftest` names clash across test folders)."""

from __future__ import annotations

import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A trimmed `rocminfo` listing of an RX 6750 XT (one CPU agent, one GPU agent).
ROCMINFO_6750XT = textwrap.dedent("""\
    ROCk module is loaded
    =====================
    HSA Agents
    ==========
    *******
    Agent 1
    *******
      Name:                    AMD Ryzen 7 5800X 8-Core Processor
      Marketing Name:          AMD Ryzen 7 5800X 8-Core Processor
      Device Type:             CPU
    *******
    Agent 2
    *******
      Name:                    gfx1031
      Marketing Name:          AMD Radeon RX 6750 XT
      Device Type:             GPU
""")


def add_docker(fake_bin, compose_version: str | None = "2.29.1", daemon: bool = True) -> None:
    """A fake `docker`: --version, `compose version --short` (absent when None), `info`."""
    compose_branch = (f'echo "{compose_version}"; exit 0' if compose_version
                      else "echo \"docker: 'compose' is not a docker command.\" >&2; exit 1")
    info_branch = 'echo "28.2.2"; exit 0' if daemon else (
        'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2; exit 1')
    fake_bin("docker", f"""\
        case "$1" in
          --version) echo "Docker version 28.2.2, build e6534b4";;
          compose) {compose_branch};;
          info) {info_branch};;
          *) exit 2;;
        esac
    """)
