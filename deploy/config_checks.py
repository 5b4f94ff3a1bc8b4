"""`flow doctor`'s checks of the configuration: .env, the GPU override, group ids, Ollama, budgets.

Each compares what compose.yaml, .env and the settings ask for with what this machine has; the
environment and the files come in as parameters (the CLI passes `os.environ`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import fields
from pathlib import Path
from typing import Mapping, Sequence

from engine.models.sizes import GiB
from engine.settings import Settings

from .host import Gpu, documented_variables, read_dotenv, read_group_file
from .verdict import Check, Status

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
    """The Ollama server answers `GET /api/tags`, and which models it has; none configured is fine."""
    name = "ollama"
    if not url:  # as `flow serve` sees it: text nodes then run in process
        return Check(name, Status.PASS, "no Ollama configured (FLOW_OLLAMA_URL is empty): that is fine, text "
                     "nodes run in process with transformers; set FLOW_OLLAMA_URL to use an Ollama server",
                     details={"url": "", "models": []})
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
