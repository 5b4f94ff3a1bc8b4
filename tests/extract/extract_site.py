"""A small web site served on 127.0.0.1 by the tests: an article, a product page, a JavaScript page,
redirects, a huge page, a binary file, a slow page and a PNG."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTICLE_TEXT = ("The lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a can of "
                "paraffin and a cloth to polish the great lens. For forty years the light never failed, "
                "and the ships that passed the reef at night owed their safety to his patience.")
BOILERPLATE = "Subscribe to our newsletter for weekly deals"
PRODUCT_NAME = "Trailblazer 40L Hiking Backpack"
PRODUCT_DESCRIPTION = ("A light, waterproof 40 litre backpack with a ventilated back panel, hip belt pockets "
                       "and a rain cover stowed in the lid. Made from recycled ripstop nylon.")
JS_TEXT = "This paragraph was written by JavaScript after the page loaded, long enough to be the main text " \
          "of the page for any extractor that looks for real content in the document body."


def _page(title: str, body: str, head: str = "") -> str:
    nav = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(12))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>{head}</head>
<body><header><nav><ul>{nav}</ul></nav><div class="banner">{BOILERPLATE}</div></header>
<main>{body}</main>
<footer><p>{BOILERPLATE}</p><p>Copyright 2026 Example Media. All rights reserved. Privacy policy. Cookies.</p>
<a href="/about">About us</a> <a href="https://other.example/partner">Partner</a></footer></body></html>"""


ARTICLE = _page("The lighthouse keeper", f"""<article><h1>The lighthouse keeper</h1>
<p class="byline">By Ada Writer, 2026-03-14</p>
<p>{ARTICLE_TEXT}</p>
<p>Every winter storm tested the tower. The keeper logged wind, rain and the passing ships in a leather book
that is now kept in the town museum, where visitors can read the careful handwriting of a quiet life.</p>
<img src="/images/lighthouse.png" alt="the lighthouse">
<p>When the light was automated the keeper moved to the village, but he still walked to the cliff each night
to see the beam sweep across the water, and he said it was like watching an old friend at work.</p>
</article>""", head='<meta name="author" content="Ada Writer"><meta name="description" content="A keeper\'s life">'
                   '<meta property="article:published_time" content="2026-03-14">')

_JSONLD = {"@context": "https://schema.org", "@type": "Product", "name": PRODUCT_NAME,
           "description": PRODUCT_DESCRIPTION, "sku": "TB-40", "brand": {"@type": "Brand", "name": "Northpeak"},
           "image": ["/images/backpack-front.png", "https://cdn.example/backpack-side.png"],
           "offers": {"@type": "Offer", "price": "129.90", "priceCurrency": "EUR",
                      "availability": "https://schema.org/InStock"}}
PRODUCT = _page(PRODUCT_NAME, f"""<div class="product"><h1>{PRODUCT_NAME}</h1>
<p>{PRODUCT_DESCRIPTION}</p><p>Capacity: 40 litres. Weight: 1.2 kg. Colour: forest green.</p>
<p>Our most popular pack for long weekends in the mountains, tested on three continents by our guides.</p>
<img src="/images/backpack-front.png"></div>""", head=f"""
<script type="application/ld+json">{json.dumps(_JSONLD)}</script>
<meta property="og:title" content="{PRODUCT_NAME}"><meta property="og:type" content="product">
<meta property="og:image" content="/images/backpack-og.png"><meta property="og:site_name" content="Northpeak Shop">
<meta property="product:price:amount" content="129.90"><meta property="product:price:currency" content="EUR">""")

JS_PAGE = _page("Built by script", """<div id="root"><p>Loading…</p></div>
<script>document.getElementById('root').innerHTML = '<article><h1>Built by script</h1><p>' +
 %s + '</p><p>' + %s + '</p></article>';</script>""" % (json.dumps(JS_TEXT), json.dumps(JS_TEXT)))


def png_bytes(size=(16, 12), colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


class Site:
    """The test site; ``url(path)`` is an address on it. ``huge_bytes`` sets the size of /huge."""

    huge_bytes = 3 << 20

    def __init__(self):
        site = self
        self.requests: list[str] = []
        self.extra: dict[str, tuple[int, dict, bytes]] = {}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                site.requests.append(self.path)
                status, headers, body = site.answer(self.path)
                if body is None:  # a slow page: a first byte, then nothing
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"<")
                    self.wfile.flush()
                    time.sleep(3)
                    return
                if body == b"HUGE":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Transfer-Encoding", "chunked")  # no Content-Length: the stream is cut
                    self.end_headers()
                    chunk = b"<p>" + b"word " * 2000 + b"</p>"
                    sent = 0
                    try:
                        while sent < site.huge_bytes:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            sent += len(chunk)
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        pass  # the client stopped reading: what the limit is for
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def answer(self, path: str):
        html = {"Content-Type": "text/html; charset=utf-8"}
        if path in self.extra:
            return self.extra[path]
        if path == "/article":
            return 200, html, ARTICLE.encode()
        if path == "/product":
            return 200, html, PRODUCT.encode()
        if path == "/js":
            return 200, html, JS_PAGE.encode()
        if path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            target = "/article" if left <= 0 else f"/redirect/{left - 1}"
            return 302, {"Location": target}, b""
        if path == "/to-metadata":
            return 302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""
        if path == "/to-loopback":
            return 302, {"Location": self.url("/article")}, b""
        if path == "/huge":
            return 200, html, b"HUGE"
        if path == "/slow":
            return 200, html, None
        if path == "/file.bin":
            return 200, {"Content-Type": "application/octet-stream"}, bytes(range(256)) * 64
        if path.startswith("/images/") and path.endswith(".png"):
            return 200, {"Content-Type": "image/png"}, png_bytes()
        if path == "/missing":
            return 404, html, b"<p>no such page</p>"
        return 404, html, b"<p>not found</p>"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
