"""`flow doctor`: checks what a deployment on an AMD GPU needs, each with a verdict and the fix.

Every check is a small function that takes what it looks at as parameters (a root folder that
holds `/dev`, `/sys`, `/etc/group`...; a runner for host programs found on a given PATH; the
environment; an account), so tests drive each outcome with real files, real programs and a real
HTTP server instead of patching the machine. `diagnose` wires them to the real host; the CLI
passes it `os.environ`. The engine itself reads no environment.
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .host import (
    Account, Commands, Completed, Gpu, documented_variables, gpus_from_rocminfo, gpus_from_sysfs,
    in_container, mem_total_bytes, read_dotenv, read_group_file, torch_hip_version,
)
from .settings import Settings

GiB = 1 << 30

#: What compose.yaml gives HSA_OVERRIDE_GFX_VERSION when neither the shell nor .env sets it
#: (a test keeps the two in step).
COMPOSE_GFX_OVERRIDE = "10.3.0"
#: Host ids compose.yaml adds to the containers when .env does not set VIDEO_GID / RENDER_GID.
COMPOSE_GROUP_IDS = {"video": 44, "render": 109}

#: Cards ROCm does not list, and the supported ISA they run as. Cards not listed here either
#: are supported as they are (gfx1030, gfx1100, gfx90a, ...) or are unknown to us.
GFX_OVERRIDES = {
    "gfx1031": "10.3.0", "gfx1032": "10.3.0", "gfx1033": "10.3.0", "gfx1034": "10.3.0",
    "gfx1035": "10.3.0", "gfx1036": "10.3.0", "gfx1102": "11.0.0", "gfx1103": "11.0.0",
    "gfx90c": "9.0.0",
}


class Status(str, enum.Enum):
    """A check's verdict: fine, worth a look, or blocking (makes `flow doctor` exit non-zero)."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict: what was checked, what was found, and what to do about it."""

    name: str
    status: Status
    message: str
    fix: str = ""
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON form used by `flow doctor --json`."""
        return {"name": self.name, "status": self.status.value, "message": self.message,
                "fix": self.fix, "details": self.details}


@dataclass(frozen=True, slots=True)
class Report:
    """All verdicts of one run; ``ok`` is false when any check failed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when nothing required failed (warnings allowed)."""
        return all(c.status is not Status.FAIL for c in self.checks)

    def to_json(self) -> dict:
        """JSON form used by `flow doctor --json`."""
        return {"ok": self.ok, "checks": [c.to_json() for c in self.checks]}


# ---- the checks: each returns one Check ----


def check_docker(commands: Commands, inside_container: bool) -> Check:
    """The docker command line is installed."""
    if inside_container:
        return Check("docker", Status.PASS, "running inside a container: docker is needed on the host only")
    done = commands.run("docker", "--version")
    if done.returncode != 0:
        return Check("docker", Status.FAIL, f"docker not found or broken ({_first_line(done)})",
                     "install Docker Engine: https://docs.docker.com/engine/install/")
    return Check("docker", Status.PASS, done.stdout.strip())


_COMPOSE_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
#: compose.yaml uses `env_file: {path, required: false}`, which Compose reads from 2.24.0 on.
COMPOSE_MIN = (2, 24)


def check_compose(commands: Commands, inside_container: bool) -> Check:
    """Docker Compose v2 (the `docker compose` plugin), recent enough for compose.yaml."""
    if inside_container:
        return Check("compose", Status.PASS, "running inside a container: Compose is needed on the host only")
    done = commands.run("docker", "compose", "version", "--short")
    if done.returncode != 0:
        legacy = commands.which("docker-compose")
        found = f"only the old docker-compose v1 ({legacy})" if legacy else "no `docker compose`"
        return Check("compose", Status.FAIL, f"{found}: compose.yaml needs Compose v2",
                     "install the Compose plugin: `sudo apt install docker-compose-plugin` "
                     "(https://docs.docker.com/compose/install/linux/)")
    match = _COMPOSE_VERSION.search(done.stdout)
    version = tuple(int(g) for g in match.groups()[:2]) if match else None
    if version is None or version < COMPOSE_MIN:
        return Check("compose", Status.WARN,
                     f"Docker Compose {done.stdout.strip()} is older than {'.'.join(map(str, COMPOSE_MIN))}",
                     "update the Compose plugin (`sudo apt install --only-upgrade docker-compose-plugin`)")
    return Check("compose", Status.PASS, f"Docker Compose {done.stdout.strip()}")


def check_docker_engine(commands: Commands, inside_container: bool) -> Check:
    """This user can talk to the Docker daemon (else `docker compose up` needs sudo or fails)."""
    if inside_container:
        return Check("docker_engine", Status.PASS, "running inside a container: the daemon is on the host")
    done = commands.run("docker", "info", "--format", "{{.ServerVersion}}")
    if done.returncode != 0:
        return Check("docker_engine", Status.WARN, f"cannot reach the Docker daemon ({_first_line(done)})",
                     "start it (`sudo systemctl start docker`) and let your user use it "
                     "(`sudo usermod -aG docker $USER`, then log in again)")
    return Check("docker_engine", Status.PASS, f"Docker daemon {done.stdout.strip()} answers")


def check_rocm(commands: Commands, root: Path, hip_version: Callable[[], str | None], gpu: bool) -> Check:
    """ROCm works here: `rocminfo` runs, or torch is a ROCm build.

    Containers bring their own ROCm; on the host only the kernel driver is required (see the
    `devices` check), so a host without ROCm tools is a warning, a broken one a failure.
    """
    version_file = root / "opt/rocm/.info/version"
    version = version_file.read_text().strip() if version_file.is_file() else ""
    done = commands.run("rocminfo")
    if done.returncode == 0:
        return Check("rocm", Status.PASS, f"rocminfo runs (ROCm {version or 'version unknown'})",
                     details={"version": version})
    if done.returncode != 127:
        return Check("rocm", Status.FAIL if gpu else Status.WARN, f"rocminfo failed: {_first_line(done)}",
                     "usually /dev/kfd is not accessible: see the `groups` and `devices` checks")
    hip = hip_version()
    if hip:
        return Check("rocm", Status.PASS, f"torch is a ROCm build (HIP {hip})", details={"hip": hip})
    return Check("rocm", Status.WARN, "no ROCm tools on this host (rocminfo not found, torch not a ROCm build)",
                 "the containers bring ROCm; to diagnose the GPU from the host install rocminfo "
                 "(`sudo apt install rocminfo`, or AMD's amdgpu-install --usecase=rocm)")


def check_gpu(gpus: Sequence[Gpu], gpu: bool) -> Check:
    """An AMD GPU is visible, with its gfx name and memory."""
    if not gpus:
        return Check("gpu", Status.FAIL if gpu else Status.PASS,
                     "no AMD GPU visible (no KFD topology, rocminfo lists no GPU agent)"
                     + ("" if gpu else "; the cpu profile needs none"),
                     "load the amdgpu driver (`sudo modprobe amdgpu`; AMD's amdgpu-install), "
                     "or set COMPOSE_PROFILES=cpu in .env to run without a GPU" if gpu else "")
    return Check("gpu", Status.PASS, "; ".join(g.describe() for g in gpus),
                 details={"gpus": [{"gfx": g.gfx, "name": g.name, "vram_bytes": g.vram_bytes} for g in gpus]})


def check_gfx_override(gpus: Sequence[Gpu], env: Mapping[str, str]) -> Check:
    """HSA_OVERRIDE_GFX_VERSION fits the card (gfx1031 needs 10.3.0; supported cards need none).

    ``env`` is the shell environment over .env, as Compose sees it; absent, compose.yaml's
    default applies; set empty in .env, no override reaches the containers.
    """
    name = "gfx_override"
    present = "HSA_OVERRIDE_GFX_VERSION" in env
    value = env.get("HSA_OVERRIDE_GFX_VERSION", COMPOSE_GFX_OVERRIDE).strip()
    origin = "" if present else " (compose.yaml's default; not set in the environment or .env)"
    if not gpus:
        return Check(name, Status.PASS, f"no GPU to check against; override is {value or 'off'}{origin}")
    for gpu in gpus:
        needed = GFX_OVERRIDES.get(gpu.gfx)
        if needed and value != needed:
            return Check(name, Status.FAIL,
                         f"{gpu.gfx} needs HSA_OVERRIDE_GFX_VERSION={needed}, found {value or 'none'}{origin}",
                         f"set HSA_OVERRIDE_GFX_VERSION={needed} in .env "
                         f"(and `export HSA_OVERRIDE_GFX_VERSION={needed}` to run flow outside Docker)")
        if not needed and value:
            return Check(name, Status.WARN,
                         f"{gpu.gfx} is not a card we know to need an override, but "
                         f"HSA_OVERRIDE_GFX_VERSION={value}{origin}",
                         "if ROCm is supported on this card, set `HSA_OVERRIDE_GFX_VERSION=` (empty) in .env")
    note = "" if present else "; flow run outside Docker needs it exported too"
    return Check(name, Status.PASS, f"HSA_OVERRIDE_GFX_VERSION={value or 'none'} fits "
                 f"{', '.join(g.gfx for g in gpus)}{origin}{note}")


def check_groups(account: Account, group_file: Path, gpu: bool) -> Check:
    """The user is in the `video` and `render` groups (needed to open /dev/kfd and /dev/dri)."""
    name = "groups"
    if account.uid == 0:
        return Check(name, Status.PASS, "running as root: device groups are not needed")
    groups = read_group_file(group_file)
    wanted = [g for g in ("video", "render") if g in groups]
    missing = [g for g in wanted if g not in account.session_groups and account.name not in groups[g][1]]
    stale = [g for g in wanted if g not in account.session_groups and account.name in groups[g][1]]
    if missing:
        return Check(name, Status.FAIL if gpu else Status.WARN,
                     f"{account.name} is not in the group(s) {', '.join(missing)}",
                     f"sudo usermod -aG {','.join(wanted)} {account.name}   (then log out and in again)")
    if stale:
        return Check(name, Status.WARN,
                     f"{account.name} was added to {', '.join(stale)} but this login session predates it",
                     "log out and in again (or run `newgrp render` in this shell)")
    note = "" if "render" in groups else " (this host has no render group; older systems use video only)"
    return Check(name, Status.PASS, f"{account.name} is in {', '.join(wanted) or 'no device group'}{note}")


def check_group_ids(group_file: Path, env: Mapping[str, str]) -> Check:
    """VIDEO_GID / RENDER_GID (what compose.yaml adds to the containers) match this host's groups."""
    groups = read_group_file(group_file)
    wrong = []
    for group, default in COMPOSE_GROUP_IDS.items():
        if group not in groups:
            continue
        var = f"{group.upper()}_GID"
        configured = env.get(var, "").strip() or str(default)
        if configured != str(groups[group][0]):
            wrong.append(f"{var}={groups[group][0]}")
    if wrong:
        return Check("group_ids", Status.WARN,
                     "the containers get other group ids than this host's video/render groups",
                     f"set {' and '.join(wrong)} in .env (needed when the containers run as a non-root user)")
    found = {g: groups[g][0] for g in COMPOSE_GROUP_IDS if g in groups}
    return Check("group_ids", Status.PASS, f"group ids match the host: {found or 'no device groups here'}",
                 details=found)


def check_devices(dev: Path, gpu: bool, access: Callable[[str, int], bool] = os.access) -> Check:
    """/dev/kfd and a /dev/dri render node exist and this user may open them."""
    name = "devices"
    kfd = dev / "kfd"
    renders = sorted((dev / "dri").glob("renderD*"))
    absent = [str(p) for p, there in ((kfd, kfd.exists()), (dev / "dri/renderD*", bool(renders))) if not there]
    if absent:
        return Check(name, Status.FAIL if gpu else Status.PASS, f"missing: {', '.join(absent)}",
                     "the amdgpu kernel driver is not loaded (`sudo modprobe amdgpu`; install it with "
                     "AMD's amdgpu-install) or, inside a container, the devices were not passed" if gpu else "")
    denied = [str(p) for p in (kfd, *renders) if not access(str(p), os.R_OK | os.W_OK)]
    if denied:
        return Check(name, Status.FAIL if gpu else Status.WARN, f"no read/write access to {', '.join(denied)}",
                     "sudo usermod -aG video,render $USER   (then log out and in again)")
    return Check(name, Status.PASS, f"{kfd} and {', '.join(map(str, renders))} are accessible")


def check_env_file(env_file: Path, example: Path, settings_cls: type, environ: Mapping[str, str]) -> Check:
    """.env exists, names only known variables, and every FLOW_* value parses."""
    name = "env_file"
    if not env_file.is_file():
        return Check(name, Status.WARN, f"no {env_file}", f"cp {example.name} {env_file.name} and review it")
    values = read_dotenv(env_file)
    try:
        settings_cls.from_env({**values, **environ})
    except (TypeError, ValueError) as exc:
        return Check(name, Status.FAIL, f"a setting does not parse: {exc}", f"correct it in {env_file}")
    known = {f"FLOW_{f.name.upper()}" for f in fields(settings_cls)}
    if example.is_file():
        known |= documented_variables(example.read_text())
    unknown = sorted(k for k in values if k.startswith("FLOW_") and k not in known)
    if unknown:
        return Check(name, Status.WARN, f"{env_file} sets unknown variable(s): {', '.join(unknown)}",
                     f"check the spelling against {example.name}")
    return Check(name, Status.PASS, f"{env_file}: {len(values)} variables, all known")


def check_ollama(url: str, timeout: float = 3.0) -> Check:
    """The Ollama server answers `GET /api/tags`, and which models it has."""
    name = "ollama"
    fix = "start it (`docker compose up -d ollama`) or point FLOW_OLLAMA_URL at it"
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/tags", timeout=timeout) as response:
            body = json.loads(response.read())
        models = [m.get("name") or m.get("model") for m in body["models"]]
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(name, Status.WARN, f"Ollama not reachable at {url}: {reason}", fix)
    except (ValueError, KeyError, TypeError, AttributeError):
        return Check(name, Status.WARN, f"{url} answered, but not like an Ollama server (GET /api/tags)",
                     "check FLOW_OLLAMA_URL / OLLAMA_PORT")
    if not models:
        return Check(name, Status.WARN, f"Ollama at {url} has no models yet",
                     "docker compose exec ollama ollama pull llama3.2", details={"url": url, "models": []})
    return Check(name, Status.PASS, f"Ollama at {url} has {len(models)} model(s): {', '.join(models)}",
                 details={"url": url, "models": models})


def check_disk(path: Path, need_bytes: int = 10 * GiB, want_bytes: int = 40 * GiB,
               usage: Callable[[str], tuple] = shutil.disk_usage) -> Check:
    """Free space where models are stored (the nearest existing folder of ``path``)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = usage(str(probe))[2]
    text = f"{free / GiB:.1f} GiB free for models at {path}"
    details = {"path": str(path), "free_bytes": free}
    if free < need_bytes:
        return Check("disk", Status.FAIL, f"only {text}; the default models need about {need_bytes // GiB} GiB",
                     "free some space, or move the models (FLOW_MODELS_DIR, Docker's data-root)", details)
    if free < want_bytes:
        return Check("disk", Status.WARN, f"{text}; the full default set (text, image, music, video) wants "
                     f"about {want_bytes // GiB} GiB", "free some space before pulling the video model", details)
    return Check("disk", Status.PASS, text, details=details)


def check_budgets(settings: Settings, gpus: Sequence[Gpu], mem_total: int | None) -> Check:
    """The model manager's budgets (FLOW_GPU_BUDGET_BYTES, ..._RESERVE_, FLOW_CPU_BUDGET_BYTES) fit the machine."""
    name = "budgets"
    gpu_budget, reserve, cpu_budget = settings.gpu_budget_bytes, settings.gpu_reserve_bytes, settings.cpu_budget_bytes
    vram = max((g.vram_bytes or 0 for g in gpus), default=0)
    details = {"vram_bytes": vram or None, "mem_total_bytes": mem_total, "gpu_budget_bytes": gpu_budget,
               "gpu_reserve_bytes": reserve, "cpu_budget_bytes": cpu_budget}
    problems: list[tuple[Status, str, str]] = []
    if vram:
        if gpu_budget > vram:
            problems.append((Status.FAIL, f"FLOW_GPU_BUDGET_BYTES={gpu_budget} is more than the card's "
                             f"{vram / GiB:.1f} GiB", "set FLOW_GPU_BUDGET_BYTES=0 (detect) or lower it"))
        elif gpu_budget == 0 and reserve >= vram:
            problems.append((Status.FAIL, f"FLOW_GPU_RESERVE_BYTES={reserve} leaves nothing of the card's "
                             f"{vram / GiB:.1f} GiB", "lower FLOW_GPU_RESERVE_BYTES (2 GiB suits a 12 GiB card)"))
        elif gpu_budget and gpu_budget + reserve > vram:
            problems.append((Status.WARN, f"FLOW_GPU_BUDGET_BYTES={gpu_budget} leaves less than the reserve "
                             f"({reserve / GiB:.1f} GiB) of the card's {vram / GiB:.1f} GiB for activations",
                             "lower it, or set 0 to use the card's memory minus the reserve"))
    if mem_total:
        if cpu_budget > mem_total:
            problems.append((Status.FAIL, f"FLOW_CPU_BUDGET_BYTES={cpu_budget} is more than this machine's "
                             f"{mem_total / GiB:.1f} GiB of RAM", "set FLOW_CPU_BUDGET_BYTES=0 (half the RAM) or lower it"))
        elif cpu_budget > 0.75 * mem_total:
            problems.append((Status.WARN, f"FLOW_CPU_BUDGET_BYTES={cpu_budget} is over 3/4 of this machine's "
                             f"{mem_total / GiB:.1f} GiB of RAM", "lower it, or 0 for half the RAM"))
    if problems:
        worst = Status.FAIL if any(p[0] is Status.FAIL for p in problems) else Status.WARN
        return Check(name, worst, "; ".join(p[1] for p in problems), "; ".join(p[2] for p in problems), details)
    gpu_text = (f"GPU budget {(gpu_budget or max(vram - reserve, 0)) / GiB:.1f} GiB of {vram / GiB:.1f} GiB"
                if vram else "no GPU memory detected: the GPU budget is accounting only")
    cpu_text = (f"CPU budget {(cpu_budget or mem_total // 2) / GiB:.1f} GiB of {mem_total / GiB:.1f} GiB RAM"
                if mem_total else "RAM size unknown")
    return Check(name, Status.PASS, f"{gpu_text}; {cpu_text}", details=details)


def wants_gpu(env: Mapping[str, str]) -> bool:
    """False when COMPOSE_PROFILES selects only the cpu profile; GPU checks then only inform."""
    profiles = {p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()}
    return not (profiles and "gpu" not in profiles and "cpu" in profiles)


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
) -> Report:
    """Run every check against this host (or the fake one the parameters describe).

    ``environ`` is the caller's environment; .env fills what it lacks, as Compose does.
    ``gpu`` None follows COMPOSE_PROFILES (GPU checks fail only for the gpu profile).
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
    try:
        settings = Settings.from_env(env)
    except ValueError:
        settings = Settings()  # check_env_file reports the bad value
    ollama_url = settings.ollama_url or f"http://127.0.0.1:{env.get('OLLAMA_PORT') or 11434}"

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
        check_ollama(ollama_url, ollama_timeout),
        check_disk(settings.models_dir),
        check_budgets(settings, gpus, mem_total_bytes(root)),
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


def _first_line(done: Completed) -> str:
    text = (done.stderr or done.stdout).strip()
    return text.splitlines()[0] if text else f"exit status {done.returncode}"
