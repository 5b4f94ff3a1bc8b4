"""`flow doctor`'s checks of the machine: Docker and Compose, ROCm, the GPU, groups, devices, disk.

Each check takes what it looks at as parameters (a runner for programs on a given PATH, a
root folder holding `/dev` and `/etc/group`, an account), so tests drive every outcome with
real files and real programs instead of patching the machine.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable, Sequence

from engine.models.sizes import GiB

from .host import Account, Commands, Completed, Gpu, read_group_file
from .verdict import Check, Status


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


def _first_line(done: Completed) -> str:
    text = (done.stderr or done.stdout).strip()
    return text.splitlines()[0] if text else f"exit status {done.returncode}"
