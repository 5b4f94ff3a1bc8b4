"""Build-time pins for the flow image: keep the base image's torch, pin everything else.

Run by the Dockerfile (Python >= 3.11 for tomllib). It writes:
  * a constraints file: constraints.txt with the torch family (torch, torchvision, torchaudio)
    re-pinned to the exact versions installed in the image (local "+rocm..." label included);
  * a requirements file: the project's dependencies plus its `models` extra, with each
    torch-family requirement replaced by the installed exact version.
pip then treats the image's torch as satisfied and never fetches another one (on PyPI the
Linux torch wheel is the CUDA build); a dependency that needs a different torch makes the
build fail with a resolution error rather than download gigabytes of CUDA wheels.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

TORCH_FAMILY = ("torch", "torchvision", "torchaudio")


def requirement_name(line: str) -> str:
    """The normalised project name of a requirement line (``Torch==2.6`` -> ``torch``)."""
    return re.split(r"[<>=!~\[;@ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def installed_torch_family() -> dict[str, str]:
    """Versions of the torch family present in this interpreter (absent ones left out)."""
    found = {}
    for name in TORCH_FAMILY:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def pins(constraints: str, pyproject: dict, installed: dict[str, str]) -> tuple[str, str]:
    """Return (constraints text, requirements text) for the image; see the module docstring."""
    if "torch" not in installed:
        raise ValueError(
            "no torch in the base image: build from a ROCm PyTorch base "
            "or set the TORCH_INDEX_URL build argument (cpu flavour)"
        )
    exact = [f"{name}=={version}" for name, version in sorted(installed.items())]
    kept = [
        line for line in constraints.splitlines()
        if requirement_name(line) not in installed or line.lstrip().startswith("#")
    ]
    project = pyproject["project"]
    wanted = list(project.get("dependencies", []))
    wanted += project.get("optional-dependencies", {}).get("models", [])
    requirements = [r for r in wanted if requirement_name(r) not in installed] + exact
    return "\n".join(kept + exact) + "\n", "\n".join(requirements) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line used by the Dockerfile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constraints", type=Path, default=Path("constraints.txt"))
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--out-constraints", type=Path, required=True)
    parser.add_argument("--out-requirements", type=Path, required=True)
    args = parser.parse_args(argv)
    installed = installed_torch_family()
    try:
        constraints, requirements = pins(
            args.constraints.read_text(), tomllib.loads(args.pyproject.read_text()), installed
        )
    except ValueError as exc:
        print(f"pins: {exc}", file=sys.stderr)
        return 1
    args.out_constraints.write_text(constraints)
    args.out_requirements.write_text(requirements)
    print(f"pins: torch family from the image: {installed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
