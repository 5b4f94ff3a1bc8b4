"""Image files: load from the input folder, base64 / a data URL or an http(s) URL; save as PNG, WebP or JPEG."""

from __future__ import annotations

import base64
import binascii
import io
import re
import threading
from pathlib import Path

from engine import BOOL, IMAGE, INT, JSON, MASK, TEXT, FlowError, Input, InvalidInput, Node, Output
from engine.paths import safe_join
from engine.provenance import encode
from engine.saving import SaveNode, remember_saved

from .values import FORMATS, Images, Mask, file_entries, recipe_of, save_image

#: larger images are refused before decoding (decompression bombs)
MAX_PIXELS = 4096 * 4096
#: an image fetched from a URL: at most this many bytes, this many seconds (through engine.fetch's SSRF guard)
URL_MAX_BYTES = 32 << 20
URL_TIMEOUT = 30.0
#: how an upload in the input folder is named (gateway/inputs.py makes these)
INPUT_REF = "input:"
_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+(;[A-Za-z0-9=.-]+)*;base64,", re.I)


class Load(Node):
    """Load an image from a file in the input folder, base64 / a data URL, or an http(s) URL; also its mask."""

    type = "image.load"
    inputs = {
        "path": Input(TEXT, "input:NAME (an upload in the input folder), or a path relative to the input "
                            "folder or, failing that, the output folder (e.g. an earlier job's output)",
                      default="", maxLength=1000, widget="file"),
        "data": Input(TEXT, "the image as base64 or a data URL (data:image/png;base64,...)", default="",
                      maxLength=64 << 20, widget="image"),
        "url": Input(TEXT, "an http(s) URL of the image (public addresses only unless FLOW_FETCH_ALLOW_PRIVATE)",
                     default="", maxLength=4000),
        "mask_from": Input(TEXT, "mask output: auto = transparent areas if the image has alpha, else white "
                                 "areas; luminance = white areas", default="auto", enum=["auto", "luminance"]),
        "optional": Input(BOOL, "when neither path nor data is given, output nothing instead of failing",
                          default=False),
    }
    outputs = {
        "image": Output(IMAGE, "the image (RGB)"),
        "mask": Output(MASK, "a mask from the image: white marks what an edit may repaint"),
        "width": Output(INT, "width in pixels"),
        "height": Output(INT, "height in pixels"),
    }

    @classmethod
    def check(cls, literals, given):
        if sum(bool(literals.get(k)) for k in ("path", "data", "url")) > 1:
            yield "data", "give one of path, data and url, not several"

    @classmethod
    def fingerprint(cls, inputs, files, config=None):
        # A file replaced under the same name must be read again: its size and mtime join the key,
        # read from the folder run() reads it from (the input folder first, else the output folder).
        path = inputs.get("path")
        if not path:
            return None
        if path.startswith(INPUT_REF):
            return None  # an upload's name is its content hash: the name is the key
        try:
            stat = safe_join(_folder(config or {}, files.root, path), path).stat()
        except (OSError, FlowError):
            return None  # run() reports the problem
        return [stat.st_size, stat.st_mtime_ns]

    def run(self, ctx, path, data, url, mask_from, optional):
        if sum(bool(v) for v in (path, data, url)) > 1:
            raise InvalidInput("data", "several of 'path', 'data' and 'url' are given; give one of them")
        if not path and not data and not url:
            if optional:
                return {"image": None, "mask": None, "width": 0, "height": 0}
            raise InvalidInput("data", "no image given: set 'data' (base64 or a data URL), 'path' (a file in "
                                       "the input folder) or 'url'")
        if path:
            raw, which, source = _read(_folder(ctx.config, ctx.files.root, path), _name_in(path)), "path", {"path": path}
        elif url:
            raw, which, source = _download(ctx, url), "url", {"url": url}
        else:
            raw, which, source = _decode_base64(data), "data", {"data": data}
        picture, mask_picture = _open(raw, which, mask_from)
        inputs = {**source, "mask_from": mask_from}
        image_value = Images((picture,), recipes=(recipe_of(ctx.node_id, self.type, inputs, "image", {}),))
        params = {"node": self.type, "source": path or url or "data", "sha256": image_value.content_hash()}
        image_value = Images((picture,), (params,), image_value.recipes)
        mask_value = Mask(mask_picture, recipe_of(ctx.node_id, self.type, inputs, "mask", {}))
        width, height = picture.size
        return {"image": image_value, "mask": mask_value, "width": width, "height": height}


def _name_in(path: str) -> str:
    """The path inside its folder: ``input:NAME`` is NAME."""
    return path[len(INPUT_REF):] if path.startswith(INPUT_REF) else path


def _folder(config, output_root, path: str):
    """The folder ``path`` is read from: the input folder (``config["inputs"]``) for ``input:`` refs and the
    files found there, else the output folder (where earlier jobs' results are)."""
    inputs = config.get("inputs")
    if path.startswith(INPUT_REF):
        if inputs is None:
            raise InvalidInput("path", f"{path!r} names an upload, but this engine has no input folder; run it "
                                       "through `flow` or the gateway (FLOW_INPUT_DIR)")
        return inputs
    if inputs is not None:
        try:
            if safe_join(inputs, path).is_file():
                return inputs
        except (OSError, FlowError):
            pass  # _read reports it against the output folder
    return output_root


def _read(root, path: str) -> bytes:
    """The bytes of the file ``path`` under the input folder, with errors that say what to give instead."""
    file = safe_join(root, path)  # UnsafePath (refused as not found) for '..', absolute paths, symlinks out
    shown = path if len(path) <= 80 else f"{path[:60]}…{path[-10:]}"
    try:
        if file.is_dir():
            raise InvalidInput("path", f"{shown!r} is a folder; give an image file in the input folder")
        if not file.is_file():
            raise InvalidInput("path", f"no file {shown!r} in the input folder; give the path of an image "
                                       "file there, relative to it")
        return file.read_bytes()
    except OSError as exc:  # a name too long, a file that vanished or cannot be read
        raise InvalidInput("path", f"cannot read {shown!r} ({exc.strerror or type(exc).__name__}); give the "
                                   "path of an image file in the input folder") from exc


def _download(ctx, url: str) -> bytes:
    """The bytes of the image at ``url``, through the one SSRF guard (engine.fetch)."""
    from engine.fetch import allow_private_for, fetch

    got = fetch(url, max_bytes=URL_MAX_BYTES, timeout=URL_TIMEOUT, allow_private=allow_private_for(ctx.config),
                accept=("image/", "application/octet-stream"))
    if not got.body:
        raise InvalidInput("url", f"{url!r} answered no bytes; give the URL of a PNG, JPEG or WebP image")
    return got.body


def _decode_base64(data: str) -> bytes:
    text = data.strip()
    match = _DATA_URL.match(text)
    if match:
        text = text[match.end():]
    elif text.startswith("data:"):
        raise InvalidInput("data", "a data URL but not a base64 image one; write data:image/png;base64,...")
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("data", f"not valid base64 ({exc}); give base64 or a data URL") from exc
    if not raw:
        raise InvalidInput("data", "holds no bytes; give a base64 PNG, JPEG or WebP image")
    return raw


def _open(raw: bytes, which: str, mask_from: str):
    """Decode image bytes into an RGB image and a mask, with errors that name the input."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise InvalidInput(which, f"{width}x{height} is more than {MAX_PIXELS} pixels; resize it first")
            opened.load()
            picture = ImageOps.exif_transpose(opened)
    except UnidentifiedImageError as exc:
        raise InvalidInput(which, "not a readable image (an unknown format); give a PNG, JPEG or WebP image") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(which, f"not a readable image ({exc}); give a PNG, JPEG or WebP image") from exc
    has_alpha = picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
    alpha = picture.convert("RGBA").getchannel("A") if mask_from == "auto" and has_alpha else None
    if alpha is not None and alpha.getextrema()[0] < 255:
        # Transparent = repaint, the convention of image edit APIs (an alpha channel with no transparent
        # pixel, as a browser canvas writes, marks nothing: then the white areas do).
        mask = ImageOps.invert(alpha)
    else:
        mask = picture.convert("L")
    return picture.convert("RGB"), mask


class Save(SaveNode):
    """Save images to the output folder (PNG, WebP or JPEG) with their parameters and workflow embedded."""

    type = "image.save"
    inputs = {
        "images": Input(IMAGE, "the images to save"),
        **SaveNode.common_inputs("image/flow", None),
        "format": Input(TEXT, "file type", default="png", enum=list(FORMATS)),
        "quality": Input(INT, "WebP and JPEG quality", default=90, minimum=1, maximum=100),
        "embed": Input(BOOL, "embed the parameters and the workflow that re-makes each image", default=True),
        # Unlike the other save nodes, more text entries beside the description (tools read PNG text by key).
        "metadata": Input(JSON, "more text entries to embed (an object: key -> text or JSON)", default=None,
                          type="object", maxProperties=64),
    }
    outputs = {
        "paths": Output(JSON, "paths of the files written, one per image"),
        "path": Output(TEXT, "path of the first file written"),
    }

    def run(self, ctx, images, prefix, format, quality, embed, metadata):
        if images is None:
            raise InvalidInput("images", "no image (an optional image.load got none); nothing to save")
        paths, described = [], []
        for i, image in enumerate(images.images):
            # Each file describes its own image: the run's workflow with image i's seed, batch size 1.
            description = self.description(ctx, images.params[i], **images.picked(i, prefix, format)) if embed else None
            if description is not None and ctx.run is not None:
                # Re-running an image file answers the paths of the images it re-made, as `files`.
                description["workflow"].setdefault("outputs", {}).setdefault(
                    "files", {"from": ctx.node_id, "output": "paths"})
            described.append(description)
        # The same cached images saved the same way (an identical seeded request): the files written then.
        key = encode({"save": [prefix, format, quality, embed, metadata], "files": described})
        earlier = (getattr(images, _WRITTEN_ATTR, None) or {}).get(key)
        if earlier and all(Path(p).is_file() for p in earlier):
            remember_saved(ctx, images, earlier)
            return {"paths": list(earlier), "path": earlier[0]}
        for image, description in zip(images.images, described):
            def write(path, described, image=image):
                save_image(image, path, format, quality, file_entries(described, metadata))

            paths.append(self.save(ctx, prefix, FORMATS[format], description, write)["path"])
        if embed:  # without the description there is no telling two requests apart: each writes its files
            _note_written(images, key, paths)
        remember_saved(ctx, images, paths)  # the faces show these files for `images`, no copy
        return {"paths": paths, "path": paths[0]}


#: what an image value remembers of its saves: {save key: paths}, the latest few (a cached value is shared)
_WRITTEN_ATTR = "_flow_written"
_WRITTEN_KEEP = 8
_written_lock = threading.Lock()


def _note_written(images, key: str, paths: list[str]) -> None:
    """Note on the (possibly cached) value that saving it as ``key`` wrote ``paths``: a repeat reuses them."""
    with _written_lock:
        written = dict(getattr(images, _WRITTEN_ATTR, None) or {})
        written.pop(key, None)
        written[key] = list(paths)
        while len(written) > _WRITTEN_KEEP:
            written.pop(next(iter(written)))
        try:
            object.__setattr__(images, _WRITTEN_ATTR, written)
        except (AttributeError, TypeError):
            pass
