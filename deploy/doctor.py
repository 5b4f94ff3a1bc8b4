"""`flow doctor`: checks what a deployment on an AMD GPU needs, each with a verdict and the fix.

The checks live by what they look at: `host_checks` (the machine) and `config_checks` (.env,
compose.yaml's defaults, the settings). Each takes what it looks at as parameters (a root folder
that holds `/dev`, `/sys`, `/etc/group`...; a runner for host programs found on a given PATH; the
environment; an account), so tests drive each outcome with real files, real programs and a real
HTTP server instead of patching the machine. `diagnose` wires them to the real host; the CLI
passes it `os.environ`. The engine itself reads no environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from engine.settings import Settings

from .config_checks import (
    check_budgets, check_env_file, check_gfx_override, check_group_ids, check_ollama, wants_gpu,
)
from .doctor_broker import check_broker
from .host import (
    Account, Commands, Gpu, gpus_from_rocminfo, gpus_from_sysfs, in_container, mem_total_bytes, read_dotenv,
    torch_hip_version,
)
from .host_checks import (
    check_compose, check_devices, check_disk, check_docker, check_docker_engine, check_gpu, check_groups, check_rocm,
)
from .verdict import Report, Status


def diagnose(
    environ: Mapping[str, str],
    *,
    root: Path = Path("/"),
    commands: Commands | None = None,
    account: Account | None = None,
    env_file: Path = Path(".env"),
    example_file: Path | None = None,
    hip_version: Callable[[], str | None] = torch_hip_version,
    gpu: bool | None = None,
    ollama_timeout: float = 3.0,
    settings: Settings | None = None,
) -> Report:
    """Run every check against this host (or the fake one the parameters describe).

    ``environ`` is the caller's environment; .env fills what it lacks, as Compose does.
    ``gpu`` None follows COMPOSE_PROFILES (GPU checks fail only for the gpu profile).
    ``settings``: what `flow serve` would run with (the CLI's loader); None reads them from ``env``.
    """
    dotenv = read_dotenv(env_file) if env_file.is_file() else {}
    env = {**dotenv, **environ}
    commands = commands or Commands(env.get("PATH"))
    account = account or Account.current()
    example_file = example_file or env_file.with_name(".env.example")
    gpu = wants_gpu(env) if gpu is None else gpu
    inside = in_container(root)

    # the kernel's topology knows ISA and memory; rocminfo, where it runs, adds marketing names
    listed = commands.run("rocminfo")
    agents = gpus_from_rocminfo(listed.stdout) if listed.returncode == 0 else []
    names = {agent.gfx: agent.name for agent in agents}
    gpus = [Gpu(g.gfx, names.get(g.gfx, ""), g.vram_bytes) for g in gpus_from_sysfs(root)] or agents
    if settings is None:
        try:
            settings = Settings.from_env(env)
        except ValueError:
            settings = Settings()  # check_env_file reports the bad value

    return Report((
        check_docker(commands, inside),
        check_compose(commands, inside),
        check_docker_engine(commands, inside),
        check_rocm(commands, root, hip_version, gpu),
        check_gpu(gpus, gpu),
        check_gfx_override(gpus, env),
        check_groups(account, root / "etc/group", gpu),
        check_group_ids(root / "etc/group", env),
        check_devices(root / "dev", gpu),
        check_env_file(env_file, example_file, Settings, environ),
        check_ollama(settings.ollama_url, ollama_timeout),
        check_disk(settings.models_dir),
        check_budgets(settings, gpus, mem_total_bytes(root)),
        check_broker(settings.broker_url),
    ))


def render(report: Report) -> str:
    """The report as text: one line per check, the fix indented below what is not a pass."""
    marks = {Status.PASS: "pass", Status.WARN: "WARN", Status.FAIL: "FAIL"}
    lines = []
    for check in report.checks:
        lines.append(f"[{marks[check.status]}] {check.name:<13} {check.message}")
        if check.fix and check.status is not Status.PASS:
            lines.append(f"       {'':<13} fix: {check.fix}")
    failed = sum(c.status is Status.FAIL for c in report.checks)
    warned = sum(c.status is Status.WARN for c in report.checks)
    lines.append(f"{failed} failed, {warned} warning(s): " + ("ready" if report.ok else "not ready"))
    return "\n".join(lines)
