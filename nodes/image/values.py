"""IMAGE and MASK values: PIL images in memory while a graph runs, files with metadata when saved.

Every value remembers, per image, the parameters that made it (prompt, seed, steps...) and a
*recipe*: the part of the workflow that produced it, with every input written out (the seed
actually used, a linked prompt's text). A saved file carries the description every saved file
carries (engine.provenance): the parameters, and the run's whole workflow with the recipe's
inputs written over it (image i of a batch: seed + i, batch size 1), so `flow run FILE.png`
re-runs exactly that image. Written outside a run, the recipe alone is the workflow. PIL is
imported inside the functions that use it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.embedded import EXIF_DESCRIPTION, PARAMETERS_KEY, WORKFLOW_KEY
from engine.paths import OutputFiles
from engine.provenance import describe

# One JPEG APP1 segment holds 64 KiB: a workflow bigger than this goes to PNG only.
_EXIF_LIMIT = 60_000
FORMATS = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}


@dataclass(frozen=True, eq=False)
class Images:
    """The IMAGE value: a batch of RGB images of one size, with per-image parameters and recipes."""

    images: tuple  # PIL.Image.Image, mode RGB, never modified in place (the cache shares them)
    params: tuple[dict, ...] = ()
    recipes: tuple[dict | None, ...] = ()
    _hash: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        n = len(self.images)
        if n == 0:
            raise ValueError("an IMAGE value holds at least one image")
        object.__setattr__(self, "params", tuple(self.params) or ({},) * n)
        object.__setattr__(self, "recipes", tuple(self.recipes) or (None,) * n)
        if len(self.params) != n or len(self.recipes) != n:
            raise ValueError(f"{n} images need {n} parameter sets and recipes")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) shared by every image of the batch."""
        return self.images[0].size

    def __len__(self) -> int:
        return len(self.images)

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data held (the output cache's size accounting)."""
        width, height = self.size
        return width * height * 3 * len(self.images)

    def to_host(self) -> "Images":
        """PIL images live in host memory already: the value itself."""
        return self

    def content_hash(self) -> str:
        """SHA-256 of the pixels (size, mode and bytes of every image), computed once."""
        if not self._hash:
            digest = hashlib.sha256()
            for image in self.images:
                digest.update(f"{image.mode}{image.size}".encode())
                digest.update(image.tobytes())
            self._hash.append(digest.hexdigest())
        return self._hash[0]

    def write_file(self, files: OutputFiles, prefix: str) -> Path:
        """Save every image as PNG with its parameters and recipe embedded (no run known); returns the first path."""
        paths = []
        for i, image in enumerate(self.images):
            path = files.new_path(prefix, ".png")
            save_image(image, path, "png", 90, file_entries(describe(None, self.params[i], **self.picked(i, prefix))))
            paths.append(path)
        return paths[0]

    def picked(self, i: int, prefix: str, fmt: str = "png") -> dict:
        """How image ``i`` is singled out of its run, as :func:`engine.provenance.describe` takes it.

        ``pick``: its recipe's nodes (seed + i, batch size 1 written over the run's workflow);
        ``alone``: a stand-alone workflow from the recipe, saving like ``prefix`` and ``fmt``.
        """
        recipe = self.recipes[i]
        if recipe is None:
            return {}
        return {"pick": recipe["nodes"], "alone": rerun_workflow(recipe, prefix, fmt)}


@dataclass(frozen=True, eq=False)
class Mask:
    """The MASK value: one greyscale image; white (255) marks what an edit may repaint."""

    image: Any  # PIL.Image.Image, mode L
    recipe: dict | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.image.size

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data held."""
        width, height = self.size
        return width * height

    def to_host(self) -> "Mask":
        """Already in host memory: the value itself."""
        return self

    def content_hash(self) -> str:
        """SHA-256 of the mask's pixels."""
        return hashlib.sha256(f"{self.size}".encode() + self.image.tobytes()).hexdigest()

    def write_file(self, files: OutputFiles, prefix: str) -> Path:
        """Save as a greyscale PNG."""
        path = files.new_path(prefix, ".png")
        self.image.save(path, format="PNG")
        return path


def recipe_of(node_id: str, node_type: str, inputs: dict, output: str, upstream: dict[str, dict | None]) -> dict | None:
    """The recipe of one output: upstream recipes, plus this node with links to them; None if one is unknown.

    ``upstream`` maps an input name to the recipe of the media value that fed it.
    """
    nodes: dict[str, dict] = {}
    written = dict(inputs)
    for name, source in upstream.items():
        if source is None:
            return None
        nodes.update(source["nodes"])
        written[name] = {"from": source["from"], "output": source["output"]}
    nodes[node_id] = {"type": node_type, "inputs": written}
    return {"nodes": nodes, "from": node_id, "output": output}


def rerun_workflow(recipe: dict, prefix: str, fmt: str) -> dict:
    """A workflow document that re-makes one image from its recipe and saves it like the original."""
    save_id = "save"
    while save_id in recipe["nodes"]:
        save_id += "_"
    nodes = dict(recipe["nodes"])
    nodes[save_id] = {"type": "image.save", "inputs": {
        "images": {"from": recipe["from"], "output": recipe["output"]}, "prefix": prefix, "format": fmt}}
    return {
        "name": "rerun",
        "description": "Re-makes an image saved by flow, from the workflow embedded in it.",
        "nodes": nodes,
        "outputs": {"files": {"from": save_id, "output": "paths"}},
    }


def file_entries(description: dict | None, extra: dict | None = None) -> dict[str, str]:
    """The text entries a saved image carries: its description (parameters, workflow, the A1111
    ``parameters`` text built from the same parameters), then the caller's extras."""
    entries = {}
    if description is not None:
        params = description["params"]
        entries[PARAMETERS_KEY] = json.dumps(params, ensure_ascii=False, sort_keys=True, default=str)
        if params.get("prompt") is not None:
            entries["parameters"] = a1111_parameters(params)
        if description.get("workflow") is not None:
            entries[WORKFLOW_KEY] = json.dumps(description["workflow"], ensure_ascii=False, default=str)
    entries.update(text_entries(extra))
    return entries


def text_entries(extra: dict | None) -> dict[str, str]:
    """Caller-given entries as text: strings as they are, anything else as JSON."""
    return {str(key): value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            for key, value in (extra or {}).items()}


def a1111_parameters(params: dict) -> str:
    """The `parameters` text other image tools read (prompt, negative prompt, then key: value pairs)."""
    # LoRAs the way A1111 writes them: <lora:NAME:WEIGHT> in the prompt
    loras = "".join(f" <lora:{Path(str(item.get('path'))).stem}:{item.get('weight', 1.0):g}>"
                    for item in params.get("loras") or [] if isinstance(item, dict))
    lines = [str(params.get("prompt", "")) + loras]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    names = {"steps": "Steps", "scheduler": "Sampler", "guidance": "CFG scale", "seed": "Seed",
             "strength": "Denoising strength", "model": "Model"}
    pairs = [f"{label}: {params[key]}" for key, label in names.items() if key in params]
    if "width" in params and "height" in params:
        pairs.append(f"Size: {params['width']}x{params['height']}")
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def save_image(image, path: Path, fmt: str, quality: int, entries: dict[str, str]) -> None:
    """Write one image: PNG with text chunks (compressed), WebP/JPEG with the entries in EXIF."""
    from PIL import Image, PngImagePlugin

    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        for key, value in entries.items():
            info.add_text(key, value, zip=len(value) > 1024)
        image.save(path, format="PNG", pnginfo=info)
        return
    exif = Image.Exif()
    blob = json.dumps(entries, ensure_ascii=True)
    if len(blob) > _EXIF_LIMIT:  # too big for one EXIF segment: keep the parameters, drop the workflow
        blob = json.dumps({k: v for k, v in entries.items() if k != WORKFLOW_KEY}, ensure_ascii=True)
    if len(blob) <= _EXIF_LIMIT:
        exif[EXIF_DESCRIPTION] = blob
    image.save(path, format="WEBP" if fmt == "webp" else "JPEG", quality=quality, exif=exif.tobytes())

