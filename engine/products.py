"""Products: name, images, source URLs, facts, notes and the generated description, kept in the job database.

The records live in their own table (``products``) of the same SQLite file as the job store
(``FLOW_JOBS_DB``), through a connection of their own (WAL, so jobs and products never block each
other for long). Uploaded images are files under the output folder (``products/<id>/``), so the
gateway serves them like any output and ``image.load`` reads them by path; a referenced image is
an http(s) URL, fetched (through the SSRF guard) only when the product is described.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidRequest, ProductNotFound, TooLarge

MAX_NAME = 300
MAX_NOTES = 4000
MAX_IMAGES = 8
MAX_URLS = 8
MAX_URL = 2000
#: one uploaded image, in bytes, and in pixels (decompression bombs)
MAX_IMAGE_BYTES = 16 << 20
MAX_PIXELS = 4096 * 4096
#: what an uploaded image may be
IMAGE_TYPES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
_ID = re.compile(r"[0-9a-f]{32}")
_FIELDS = ("name", "images", "source_urls", "facts", "notes", "description", "describe")
#: fields a PATCH may change (images are changed by giving the full new list)
EDITABLE = ("name", "images", "source_urls", "facts", "notes", "description")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS products_seq ON products (seq);
"""


@dataclass(frozen=True)
class Product:
    """One product record."""

    id: str
    name: str
    images: list[dict] = field(default_factory=list)  # {"path": under the output folder} or {"url": http(s)}
    source_urls: list[str] = field(default_factory=list)
    facts: dict | None = None
    notes: str = ""
    description: dict | None = None
    describe: dict | None = None  # the last describe run: job id, state, tone, language, when
    created: float = 0.0
    updated: float = 0.0

    def to_json(self) -> dict:
        """The record as the API answers it."""
        return asdict(self)


class ProductStore:
    """The products table of the job database; each call opens its own short-lived connection."""

    def __init__(self, db_path: str | Path, files_root: str | Path):
        if "://" in str(db_path):  # jobs in PostgreSQL (FLOW_JOBS_DB=postgresql://...): products stay in SQLite
            from .settings import _data_home

            db_path = _data_home() / "products.sqlite3"
        self.path = Path(db_path)
        self.files_root = Path(files_root)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        db.execute("PRAGMA busy_timeout=30000")
        return db

    # -- reading

    def get(self, product_id: str) -> Product:
        """The product, or ProductNotFound."""
        if not isinstance(product_id, str) or not _ID.fullmatch(product_id):
            raise ProductNotFound(product_id)
        with closing(self._connect()) as db:
            row = db.execute("SELECT id, name, doc, created, updated FROM products WHERE id=?",
                             (product_id,)).fetchone()
        if row is None:
            raise ProductNotFound(product_id)
        return _product(row)

    def list(self, limit: int = 50, before: int | None = None) -> tuple[list[Product], int | None]:
        """Newest first: (products, the seq to continue before, or None at the end)."""
        sql, args = "SELECT id, name, doc, created, updated, seq FROM products", []
        if before is not None:
            sql, args = sql + " WHERE seq < ?", [before]
        with closing(self._connect()) as db:
            rows = db.execute(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [_product(r[:5]) for r in rows], (rows[-1][5] if more else None)

    # -- writing

    def create(self, fields: dict[str, Any], uploads: list[bytes] = ()) -> Product:
        """A new product from checked ``fields`` (name required) and uploaded image bytes."""
        values = check_fields(fields, creating=True)
        images = list(values.get("images", []))
        if any("path" in image for image in images):
            raise InvalidRequest("a new product's images are uploaded files or {\"url\": ...}; a path names an "
                                 "image a product already has (PATCH)")
        inline = [_base64(image["data"], f"images[{i}]") for i, image in enumerate(images) if "data" in image]
        images = [image for image in images if "data" not in image]
        uploads = [*inline, *uploads]
        if len(images) + len(uploads) > MAX_IMAGES:
            raise InvalidRequest(f"a product has at most {MAX_IMAGES} images, got {len(images) + len(uploads)}; "
                                 "send fewer")
        checked = [check_image(data, f"image {i + 1}") for i, data in enumerate(uploads)]
        product_id, now = uuid.uuid4().hex, time.time()
        images += [self._save_image(product_id, i, data, ext) for i, (data, ext) in enumerate(checked)]
        product = Product(id=product_id, name=values["name"], images=images,
                          source_urls=values.get("source_urls", []), facts=values.get("facts"),
                          notes=values.get("notes", ""), description=values.get("description"),
                          created=now, updated=now)
        try:
            with closing(self._connect()) as db:
                db.execute("INSERT INTO products (id, seq, name, doc, created, updated) VALUES "
                           "(?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM products), ?, ?, ?, ?)",
                           (product.id, product.name, _doc(product), now, now))
        except sqlite3.Error:
            shutil.rmtree(self.files_root / "products" / product_id, ignore_errors=True)
            raise
        return product

    def update(self, product_id: str, fields: dict[str, Any], *, internal: bool = False) -> Product:
        """The product with ``fields`` changed (checked unless ``internal``, e.g. the describe result)."""
        current = self.get(product_id)
        values = dict(fields) if internal else check_fields(fields, creating=False)
        if "images" in values:
            kept = {i.get("path") for i in values["images"] if "path" in i}
            mine = {i["path"] for i in current.images if "path" in i}
            if kept - mine:
                raise InvalidRequest("images may keep this product's uploaded files and add URLs; "
                                     f"{sorted(kept - mine)[0]!r} is not one of its files")
            own = f"products/{product_id}/"
            for gone in mine - kept:
                if gone.startswith(own) and "/" not in gone[len(own):]:  # only this product's own uploads
                    (self.files_root / gone).unlink(missing_ok=True)
        changed = Product(**{**asdict(current), **values, "updated": time.time()})
        with closing(self._connect()) as db:
            db.execute("UPDATE products SET name=?, doc=?, updated=? WHERE id=?",
                       (changed.name, _doc(changed), changed.updated, product_id))
        return changed

    def delete(self, product_id: str) -> Product:
        """Remove the product and its uploaded images."""
        product = self.get(product_id)
        with closing(self._connect()) as db:
            db.execute("DELETE FROM products WHERE id=?", (product_id,))
        shutil.rmtree(self.files_root / "products" / product_id, ignore_errors=True)
        return product

    def _save_image(self, product_id: str, index: int, data: bytes, ext: str) -> dict:
        folder = self.files_root / "products" / product_id
        folder.mkdir(parents=True, exist_ok=True)
        name = f"image-{index + 1}-{uuid.uuid4().hex[:8]}{ext}"
        (folder / name).write_bytes(data)
        return {"path": f"products/{product_id}/{name}"}


def _doc(product: Product) -> str:
    return json.dumps({k: getattr(product, k) for k in _FIELDS if k != "name"}, ensure_ascii=False)


def _product(row) -> Product:
    product_id, name, doc, created, updated = row
    values = json.loads(doc)
    return Product(id=product_id, name=name, created=created, updated=updated,
                   **{k: values.get(k, v) for k, v in (("images", []), ("source_urls", []), ("facts", None),
                                                       ("notes", ""), ("description", None), ("describe", None))})


def check_fields(fields: Any, *, creating: bool) -> dict[str, Any]:
    """The request's fields, checked (every problem named); raises InvalidRequest."""
    if not isinstance(fields, dict):
        raise InvalidRequest("the body must be a JSON object of product fields")
    allowed = EDITABLE
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; a product has: {', '.join(allowed)}")
    values: dict[str, Any] = {}
    if creating or "name" in fields:
        name = fields.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise InvalidRequest(f"'name' must be a non-empty text of at most {MAX_NAME} characters")
        values["name"] = name.strip()
    if "source_urls" in fields:
        values["source_urls"] = _urls(fields["source_urls"], "source_urls", MAX_URLS)
    if "images" in fields:
        images = fields["images"]
        if not isinstance(images, list) or len(images) > MAX_IMAGES:
            raise InvalidRequest(f"'images' must be a list of at most {MAX_IMAGES} entries "
                                 '({"url": "https://..."} or a kept {"path": ...})')
        checked = []
        for i, item in enumerate(images):
            if isinstance(item, str):
                item = {"url": item}
            if not isinstance(item, dict) or len(item) != 1 or not ({"url", "path", "data"} & set(item)):
                raise InvalidRequest(f"images[{i}] must be {{\"url\": \"https://...\"}}, {{\"data\": base64}} (on "
                                     "create) or a kept {{\"path\": ...}}")
            if "data" in item:
                if not creating or not isinstance(item["data"], str):
                    raise InvalidRequest(f"images[{i}]: base64 data is taken on create only (as a text); "
                                         "upload new images with a new product")
                checked.append({"data": item["data"]})
            elif "url" in item:
                checked.append({"url": _urls([item["url"]], f"images[{i}]", 1)[0]})
            else:
                if not isinstance(item["path"], str):
                    raise InvalidRequest(f"images[{i}].path must be a text")
                checked.append({"path": item["path"]})
        values["images"] = checked
    if "facts" in fields:
        facts = fields["facts"]
        if facts is not None and (not isinstance(facts, dict) or len(json.dumps(facts)) > 20000):
            raise InvalidRequest("'facts' must be a JSON object (at most 20000 characters as JSON) or null")
        values["facts"] = facts
    if "notes" in fields:
        notes = fields["notes"]
        if not isinstance(notes, str) or len(notes) > MAX_NOTES:
            raise InvalidRequest(f"'notes' must be a text of at most {MAX_NOTES} characters")
        values["notes"] = notes
    if "description" in fields:
        description = fields["description"]
        if description is not None:
            from jsonschema import Draft202012Validator

            from_schema = sorted(Draft202012Validator(DESCRIPTION_SCHEMA).iter_errors(description), key=str)
            if from_schema:
                where = "/".join(map(str, from_schema[0].absolute_path)) or "description"
                raise InvalidRequest(f"'description' does not fit its schema at {where}: {from_schema[0].message}")
        values["description"] = description
    return values


def _base64(text: str, where: str) -> bytes:
    """Bytes of an image given as base64 or a data URL in a JSON create."""
    import base64
    import binascii

    if len(text) > MAX_IMAGE_BYTES * 4 // 3 + 100:
        raise TooLarge(f"{where} is more than the limit of {MAX_IMAGE_BYTES} bytes; send a smaller image")
    body = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    try:
        return base64.b64decode(re.sub(r"\s+", "", body), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{where}: not valid base64 ({exc}); give base64 or a data URL") from exc


def _urls(value: Any, name: str, most: int) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > most:
        raise InvalidRequest(f"'{name}' must be a list of at most {most} http(s) URLs")
    urls = []
    for url in value:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or len(url) > MAX_URL:
            raise InvalidRequest(f"'{name}': {str(url)[:100]!r} is not an http(s) URL; give one such as "
                                 "https://shop.example/product")
        urls.append(url)
    return urls


def check_image(data: bytes, where: str) -> tuple[bytes, str]:
    """(bytes, file extension) of an uploaded PNG, JPEG or WebP image; refuses anything else clearly."""
    if len(data) > MAX_IMAGE_BYTES:
        raise TooLarge(f"{where} is {len(data)} bytes, more than the limit of {MAX_IMAGE_BYTES}; send a smaller image")
    if not data:
        raise InvalidRequest(f"{where} is empty; send a PNG, JPEG or WebP image")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            kind = opened.format
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise InvalidRequest(f"{where} is {width}x{height}, more than {MAX_PIXELS} pixels; resize it first")
            opened.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"{where} is not a readable image ({type(exc).__name__}); send a PNG, JPEG or WebP "
                             "image") from exc
    if kind not in IMAGE_TYPES:
        raise InvalidRequest(f"{where} is a {kind} image; send a PNG, JPEG or WebP image")
    return data, IMAGE_TYPES[kind]


#: what a saved description must look like (the product workflow's schema, a little looser for hand edits)
DESCRIPTION_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 200}, "short": {"type": "string", "maxLength": 600},
        "long": {"type": "string", "maxLength": 8000},
        "features": {"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 300}},
        "attributes": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "language": {"type": "string", "maxLength": 35}, "tone": {"type": "string", "maxLength": 100},
    },
    "additionalProperties": False,
}


#: what a describe run may set (the rest comes from the record)
DESCRIBE_OPTIONS = frozenset({"tone", "language", "model", "vision_model", "render", "notes", "seed", "privacy",
                              "max_tokens"})


def describe_params(product: Product, options: dict) -> dict:
    """The product_describe workflow's params for ``product``: its name, facts and notes, its first image and
    first source URL, and the run's ``options`` (tone, language, models...)."""
    unknown = sorted(set(options) - DESCRIBE_OPTIONS)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; describe takes: {', '.join(sorted(DESCRIBE_OPTIONS))}")
    params: dict[str, Any] = {k: v for k, v in options.items() if k != "notes"}
    params["name"] = product.name
    notes = "\n".join(n for n in (product.notes, options.get("notes") or "") if isinstance(n, str) and n.strip())
    if notes:
        params["notes"] = notes
    if product.facts:
        params["facts"] = product.facts
    if product.source_urls:
        params["url"] = product.source_urls[0]
    if product.images:
        first = product.images[0]
        params["image_path" if "path" in first else "image_url"] = first.get("path") or first.get("url")
    return params


def describe_result(run: dict, state: str, outputs: dict | None, error: str | None) -> dict:
    """The changes a finished describe run makes to its product: the description and the run's summary."""
    summary = {**run, "state": state, "ended": time.time()}
    changes: dict[str, Any] = {"describe": summary}
    if state == "finished" and outputs:
        changes["description"] = outputs.get("description")
        summary["seen"] = outputs.get("seen")
        summary["page_title"] = outputs.get("page_title")
    elif error:
        summary["error"] = error
    return changes
