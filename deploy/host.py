"""What the host looks like to `flow doctor`: its programs, the account, its AMD GPUs, an .env.

Each probe takes where to look as a parameter (a PATH, a root folder, a file), so tests build a
fake `/sys` tree or a folder of fake programs instead of patching the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from engine.models.sizes import GiB


@dataclass(frozen=True, slots=True)
class Completed:
    """What a program printed and how it exited (127: not found, 124: timed out)."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


class Commands:
    """Runs host programs looked up on one PATH; tests point it at a folder of fake programs."""

    def __init__(self, path: str | None, timeout: float = 15.0):
        self.path = path
        self.timeout = timeout

    def which(self, name: str) -> str | None:
        """Full path of ``name`` on this PATH, or None."""
        return shutil.which(name, path=self.path)

    def run(self, *argv: str) -> Completed:
        """Run a program and capture its output; never raises for a missing or hanging one."""
        exe = self.which(argv[0])
        if exe is None:
            return Completed(127, "", f"{argv[0]}: not found")
        try:
            done = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return Completed(124, "", f"{argv[0]}: no answer within {self.timeout:g} s")
        except OSError as exc:
            return Completed(126, "", f"{argv[0]}: {exc}")
        return Completed(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True, slots=True)
class Account:
    """Who runs flow: user name, uid, and the group names this login session has."""

    name: str
    uid: int
    session_groups: frozenset[str]

    @classmethod
    def current(cls) -> "Account":
        """The account of this process (groups as the kernel sees them now)."""
        import grp
        import pwd

        uid = os.getuid()
        names = set()
        for gid in os.getgroups():
            try:
                names.add(grp.getgrgid(gid).gr_name)
            except KeyError:
                names.add(str(gid))
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return cls(name, uid, frozenset(names))


@dataclass(frozen=True, slots=True)
class Gpu:
    """One AMD GPU: its ISA name (``gfx1031``), marketing name and memory where known."""

    gfx: str
    name: str = ""
    vram_bytes: int | None = None

    def describe(self) -> str:
        """E.g. ``gfx1031 (AMD Radeon RX 6750 XT), 12.0 GiB``."""
        text = self.gfx + (f" ({self.name})" if self.name else "")
        return text + (f", {self.vram_bytes / GiB:.1f} GiB" if self.vram_bytes else "")


def _key_values(path: Path) -> dict[str, str]:
    """``key value`` lines of a sysfs properties file."""
    pairs = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        pairs[key] = value.strip()
    return pairs


def gpus_from_sysfs(root: Path) -> list[Gpu]:
    """AMD GPUs in the KFD topology (``/sys/class/kfd/kfd/topology/nodes``); [] without a driver.

    ``gfx_target_version`` is major*10000 + minor*100 + stepping (100301 -> gfx1031); memory
    comes from the render node's ``mem_info_vram_total``.
    """
    nodes = root / "sys/class/kfd/kfd/topology/nodes"
    found = []
    for props in sorted(nodes.glob("*/properties")):
        try:
            values = _key_values(props)
            target = int(values.get("gfx_target_version", "0"))
        except (OSError, ValueError):
            continue
        if target == 0:  # a CPU node
            continue
        gfx = f"gfx{target // 10000}{target // 100 % 100:x}{target % 100:x}"
        vram = None
        minor = values.get("drm_render_minor")
        total = root / f"sys/class/drm/renderD{minor}/device/mem_info_vram_total"
        if minor and total.is_file():
            try:
                vram = int(total.read_text().strip())
            except ValueError:
                vram = None
        found.append(Gpu(gfx, "", vram))
    return found


_AGENT_NAME = re.compile(r"^\s*Name:\s+(gfx[0-9a-f]+)\s*$", re.M)
_MARKETING = re.compile(r"^\s*Marketing Name:\s+(.+?)\s*$", re.M)


def gpus_from_rocminfo(text: str) -> list[Gpu]:
    """GPU agents listed by ``rocminfo`` (ISA name and marketing name)."""
    found = []
    for block in re.split(r"\*{5,}\s*\n\s*Agent \d+", text)[1:]:
        gfx = _AGENT_NAME.search(block)
        if gfx:
            name = _MARKETING.search(block)
            found.append(Gpu(gfx.group(1), name.group(1) if name else ""))
    return found


def read_dotenv(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of an .env file, as Compose reads them (comments, quotes, export)."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if value[:1] in {"'", '"'} and value.endswith(value[0]) and len(value) >= 2:
            value = value[1:-1]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0]
        values[key.strip()] = value
    return values


def documented_variables(example: str) -> set[str]:
    """Variable names an .env.example documents, set (``K=v``) or commented out (``# K=v``)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.M))


def torch_hip_version() -> str | None:
    """torch's HIP version when a ROCm build of torch is installed here, else None."""
    import warnings

    with warnings.catch_warnings():  # torch warns about optional extras (numpy) on import
        warnings.simplefilter("ignore")
        try:
            import torch  # heavy: only the doctor's ROCm check comes here
        except ImportError:
            return None
    return getattr(torch.version, "hip", None) or None


def in_container(root: Path) -> bool:
    """True inside a Docker or Podman container."""
    return (root / ".dockerenv").exists() or (root / "run/.containerenv").exists()


def read_group_file(path: Path) -> dict[str, tuple[int, frozenset[str]]]:
    """``/etc/group`` as name -> (gid, listed members)."""
    groups = {}
    if not path.is_file():
        return groups
    for line in path.read_text().splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit():
            groups[parts[0]] = (int(parts[2]), frozenset(m for m in parts[3].split(",") if m))
    return groups


def mem_total_bytes(root: Path) -> int | None:
    """Physical memory from ``/proc/meminfo`` under ``root``, or None when unreadable."""
    try:
        text = (root / "proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    return int(match.group(1)) * 1024 if match else None
