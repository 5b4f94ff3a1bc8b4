"""Web pages: fetch one through the SSRF guard (engine.fetch) and extract its content with trafilatura.

``web.extract`` gives the main text without the page's navigation, footer and other boilerplate
(trafilatura decides what is content), as text and as Markdown, plus metadata: trafilatura's
(author, date, site, description), the page's language, OpenGraph properties and schema.org
JSON-LD, from which a ``product`` summary (name, brand, price, currency...) is taken when the page
describes one. ``render: true`` loads the page in headless Chromium (Playwright) first, for pages
that build their content with JavaScript; every request that browser makes goes through the same
guard (it is answered by :func:`engine.fetch.fetch`, never by the browser's own network stack).
"""

from __future__ import annotations

import json
import shutil
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from engine import BOOL, FLOAT, INT, JSON, TEXT, FlowError, Input, InvalidInput, Node, Output
from engine.errors import NotConfigured
from engine.fetch import allow_private_for, fetch

#: what a page may be served as
HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
#: most images and links reported
MAX_IMAGES = 100
MAX_LINKS = 500
#: most JSON-LD objects reported in metadata
MAX_JSONLD = 20
#: where Debian's chromium lives, then other names it goes by
BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage"]
#: what the browser may fetch in all, as a multiple of the page's own limit
RENDER_BUDGET = 4


class Extract(Node):
    """Fetch a web page (public addresses only, unless the server allows private ones) and extract its
    main text, Markdown, metadata (incl. JSON-LD/OpenGraph product data), images and links."""

    type = "web.extract"
    inputs = {
        "url": Input(TEXT, "the page: an http:// or https:// URL", maxLength=4000),
        "render": Input(BOOL, "load the page in headless Chromium first, for pages built by JavaScript "
                              "(needs the chromium browser and Playwright)", default=False),
        "max_bytes": Input(INT, "largest page accepted, in bytes", default=5 << 20, minimum=1024,
                           maximum=50 << 20),
        "timeout": Input(FLOAT, "seconds the fetch (or the browser's load) may take in all", default=30.0,
                         minimum=1, maximum=300),
        "max_chars": Input(INT, "longest text and Markdown returned, in characters (longer is cut)",
                           default=100_000, minimum=100, maximum=2_000_000),
        "optional": Input(BOOL, "when url is empty, output empty results instead of failing", default=False),
    }
    outputs = {
        "title": Output(TEXT, "the page's title"),
        "text": Output(TEXT, "the main content as plain text, boilerplate removed"),
        "markdown": Output(TEXT, "the main content as Markdown"),
        "metadata": Output(JSON, "url, author, date, site, language, description, image, type; product "
                                 "(name, brand, price, currency...) from JSON-LD or OpenGraph; jsonld; opengraph"),
        "images": Output(JSON, "absolute URLs of the page's images (OpenGraph and JSON-LD first)"),
        "links": Output(JSON, "the page's links: [{url, text}], absolute"),
    }

    def run(self, ctx, url, render, max_bytes, timeout, max_chars, optional):
        if not url.strip():
            if optional:
                return {"title": "", "text": "", "markdown": "", "metadata": None, "images": [], "links": []}
            raise InvalidInput("url", "no URL given; give the page's http:// or https:// URL")
        allow = allow_private_for(ctx.config)
        if render:
            final_url, html = _render(url, max_bytes, timeout, allow, ctx)
        else:
            got = fetch(url, max_bytes=max_bytes, timeout=timeout, allow_private=allow, accept=HTML_TYPES)
            final_url, html = got.url, _decode(got.body, got.charset)
        return extract_html(html, final_url, max_chars)


def _decode(body: bytes, charset: str | None) -> str:
    if charset:
        try:
            return body.decode(charset, errors="replace")
        except LookupError:
            pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(body).best()
        return str(best) if best is not None else body.decode("latin-1")


def extract_html(html: str, url: str, max_chars: int = 100_000) -> dict[str, Any]:
    """The outputs of ``web.extract`` for a page's HTML found at ``url``."""
    import trafilatura
    from trafilatura.utils import load_html

    tree = load_html(html) if html.strip() else None
    if tree is None:
        raise InvalidInput("url", f"{url!r} holds no HTML to extract; give the URL of a web page")
    text = trafilatura.extract(html, url=url, output_format="txt", include_comments=False,
                               include_tables=True, favor_recall=True) or ""
    markdown = trafilatura.extract(html, url=url, output_format="markdown", include_comments=False,
                                   include_tables=True, include_images=True, include_links=True,
                                   favor_recall=True) or ""
    found = trafilatura.extract_metadata(tree, default_url=url)
    meta = found.as_dict() if found is not None else {}
    opengraph = _opengraph(tree)
    jsonld = _jsonld(tree)
    title = meta.get("title") or opengraph.get("og:title") or ""
    metadata = {
        "url": url,
        "title": title,
        "author": meta.get("author"),
        "date": meta.get("date"),
        "site": meta.get("sitename") or opengraph.get("og:site_name"),
        "language": _language(tree, meta),
        "description": meta.get("description") or opengraph.get("og:description"),
        "image": _absolute(url, meta.get("image") or opengraph.get("og:image")),
        "type": meta.get("pagetype") or opengraph.get("og:type"),
        "tags": meta.get("tags") or [],
        "product": _product(jsonld, opengraph, url),
        "jsonld": jsonld[:MAX_JSONLD],
        "opengraph": opengraph,
    }
    return {"title": title, "text": text[:max_chars], "markdown": markdown[:max_chars], "metadata": metadata,
            "images": _images(tree, url, metadata), "links": _links(tree, url)}


def _absolute(base: str, ref: Any) -> str | None:
    """``ref`` as an absolute http(s) URL without its fragment, or None."""
    if not isinstance(ref, str) or not ref.strip():
        return None
    absolute = urldefrag(urljoin(base, ref.strip()))[0]
    return absolute if urlsplit(absolute).scheme in ("http", "https") else None


def _opengraph(tree) -> dict[str, str]:
    """``og:*``, ``product:*``, ``article:*`` and ``twitter:*`` meta properties (the first of each)."""
    found: dict[str, str] = {}
    for meta in tree.iter("meta"):
        key = (meta.get("property") or meta.get("name") or "").strip().lower()
        value = meta.get("content")
        if value and key.split(":", 1)[0] in ("og", "product", "article", "twitter") and ":" in key:
            found.setdefault(key, value.strip())
    return found


def _jsonld(tree) -> list[dict]:
    """Every JSON-LD object of the page (``@graph`` and lists flattened); scripts that are not JSON are skipped."""
    objects: list[dict] = []
    for script in tree.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json" or not script.text:
            continue
        try:
            value = json.loads(script.text)
        except ValueError:
            continue  # broken JSON-LD is common on the web: the rest of the page still counts
        stack = [value]
        while stack and len(objects) < 200:
            item = stack.pop(0)
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                if isinstance(item.get("@graph"), list):
                    stack.extend(item["@graph"])
                else:
                    objects.append(item)
    return objects


def _types(item: dict) -> set[str]:
    kind = item.get("@type")
    kinds = kind if isinstance(kind, list) else [kind]
    return {k.rsplit("/", 1)[-1] for k in kinds if isinstance(k, str)}


def _name(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("name")
    if isinstance(value, list) and value:
        return _name(value[0])
    return value


def _product(jsonld: list[dict], opengraph: dict[str, str], url: str) -> dict | None:
    """A product summary from JSON-LD (schema.org Product), else from OpenGraph ``product:*``; None without one."""
    item = next((o for o in jsonld if _types(o) & {"Product", "ProductGroup", "IndividualProduct"}), None)
    product: dict[str, Any] = {}
    if item is not None:
        offers = item.get("offers")
        offer = offers[0] if isinstance(offers, list) and offers else offers
        offer = offer if isinstance(offer, dict) else {}
        images = item.get("image")
        images = images if isinstance(images, list) else [images]
        product = {
            "name": item.get("name"), "description": item.get("description"), "brand": _name(item.get("brand")),
            "sku": item.get("sku"), "gtin": item.get("gtin13") or item.get("gtin") or item.get("gtin12"),
            "price": offer.get("price", offer.get("lowPrice")), "currency": offer.get("priceCurrency"),
            "availability": offer.get("availability"), "category": _name(item.get("category")),
            "rating": (item.get("aggregateRating") or {}).get("ratingValue")
            if isinstance(item.get("aggregateRating"), dict) else None,
            "images": [u for u in (_absolute(url, _image_url(i)) for i in images) if u],
            "source": "json-ld",
        }
    if opengraph.get("og:type", "").startswith("product") or "product:price:amount" in opengraph:
        fallback = {"name": opengraph.get("og:title"), "description": opengraph.get("og:description"),
                    "price": opengraph.get("product:price:amount"), "currency": opengraph.get("product:price:currency"),
                    "brand": opengraph.get("product:brand"), "availability": opengraph.get("product:availability"),
                    "images": [u for u in [_absolute(url, opengraph.get("og:image"))] if u]}
        if not product:
            product = {**fallback, "source": "opengraph"}
        else:
            for key, value in fallback.items():
                if product.get(key) in (None, "", []) and value:
                    product[key] = value
    if not product:
        return None
    if isinstance(product.get("price"), (int, float)):
        product["price"] = str(product["price"])
    return {k: v for k, v in product.items() if v not in (None, "", [])}


def _image_url(value: Any) -> Any:
    return value.get("url") or value.get("contentUrl") if isinstance(value, dict) else value


def _images(tree, url: str, metadata: dict) -> list[str]:
    found: list[str] = []
    candidates = [metadata.get("image"), *((metadata.get("product") or {}).get("images") or [])]
    for img in tree.iter("img"):
        candidates.append(img.get("src") or img.get("data-src"))
    for candidate in candidates:
        absolute = _absolute(url, candidate)
        if absolute and absolute not in found:
            found.append(absolute)
            if len(found) >= MAX_IMAGES:
                break
    return found


def _links(tree, url: str) -> list[dict[str, str]]:
    found: dict[str, str] = {}
    for anchor in tree.iter("a"):
        absolute = _absolute(url, anchor.get("href"))
        if absolute and absolute not in found:
            found[absolute] = " ".join(anchor.text_content().split())[:200]
            if len(found) >= MAX_LINKS:
                break
    return [{"url": u, "text": t} for u, t in found.items()]


def _language(tree, meta: dict) -> str | None:
    declared = (tree.get("lang") or tree.get("{http://www.w3.org/XML/1998/namespace}lang") or "").strip()
    if not declared:
        for meta_tag in tree.iter("meta"):
            if (meta_tag.get("http-equiv") or "").lower() == "content-language" and meta_tag.get("content"):
                declared = meta_tag.get("content").strip()
                break
    return declared or meta.get("language") or None


# -- render mode: headless Chromium, every request answered through the guard ---------------------

def browser_path() -> str | None:
    """The chromium executable to drive, or None when none is installed."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _render(url: str, max_bytes: int, timeout: float, allow_private: bool | None, ctx) -> tuple[str, str]:
    """(final URL, HTML after scripts ran) of ``url`` loaded in headless Chromium.

    The browser never opens a connection itself: every request it makes is answered by
    :func:`engine.fetch.fetch` (redirects handed back one hop at a time, so each target is checked),
    anything but GET over http(s) is refused, WebSockets and service workers are off.
    """
    import time

    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise NotConfigured("render: true needs Playwright (`pip install playwright==1.65.2`, in the test extra) "
                            "and Debian's chromium (`apt-get install chromium`); or set render to false") from exc
    executable = browser_path()
    if executable is None:
        raise NotConfigured("render: true needs a Chromium browser and none is installed; install Debian's "
                            "package (`apt-get install chromium`), or set render to false")
    deadline = time.monotonic() + timeout  # one deadline for all: the check below, the browser, its requests
    first = fetch(url, max_bytes=max_bytes, timeout=timeout, allow_private=allow_private, accept=HTML_TYPES,
                  follow=True)  # the page itself first: its refusal or limit is the error, not a blank browser page
    budget = {"left": max_bytes * RENDER_BUDGET - len(first.body)}
    refused: list[FlowError] = []

    def answer(route):
        request = route.request
        if request.method != "GET" or urlsplit(request.url).scheme not in ("http", "https"):
            route.abort("blockedbyclient")
            return
        left = deadline - time.monotonic()
        if left <= 0 or budget["left"] <= 0:
            route.abort("timedout")
            return
        try:
            got = fetch(request.url, max_bytes=min(max_bytes, budget["left"]), timeout=left,
                        allow_private=allow_private, follow=False)
        except FlowError as exc:
            refused.append(exc)
            route.abort("blockedbyclient")
            return
        budget["left"] -= len(got.body)
        headers = {k: v for k, v in got.headers.items()
                   if k in ("content-type", "location", "cache-control", "last-modified", "etag")}
        route.fulfill(status=got.status, headers=headers, body=got.body)

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, headless=True, args=BROWSER_ARGS)
            try:
                context = browser.new_context(service_workers="block", java_script_enabled=True,
                                              accept_downloads=False)
                context.route("**/*", answer)
                context.route_web_socket("**/*", lambda ws: ws.close())
                page = context.new_page()
                ms = max(1000, int((deadline - time.monotonic()) * 1000))
                response = page.goto(url, wait_until="load", timeout=ms)
                if response is None or response.status >= 400:
                    cause = refused[0] if refused else None
                    if cause is not None:
                        raise cause
                    status = response.status if response is not None else "no answer"
                    raise InvalidInput("url", f"{url!r} answered {status} in the browser; check the URL")
                try:  # scripts that fetch more content: give them a moment, within the time limit
                    page.wait_for_load_state("networkidle", timeout=max(1, min(3000, int(
                        (deadline - time.monotonic()) * 1000))))
                except PlaywrightError:
                    pass  # still busy: extract what is there
                ctx.progress(1, 1, "rendered")
                return page.url, page.content()
            finally:
                browser.close()
    except FlowError:
        raise
    except PlaywrightError as exc:
        if refused:
            raise refused[0] from exc
        raise InvalidInput("url", f"the browser could not load {url!r}: {str(exc).splitlines()[0]}") from exc
