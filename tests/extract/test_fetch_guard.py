"""The SSRF guard (engine/fetch.py): which addresses are refused, redirects, rebinding, limits."""

from __future__ import annotations

import socket

import pytest

from engine import fetch as guard
from engine.errors import BadURL, FetchFailed, FetchLimit, FetchRefused

LIMIT = 1 << 20


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.9", "private"), ("192.168.1.1", "private"), ("fd12::1", "private"),
    ("100.64.0.1", "private"), ("169.254.10.10", "link-local"), ("fe80::1", "link-local"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "reserved"), ("192.0.2.5", "reserved"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "metadata"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo, client 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
])
def test_fetch_guard_refuses_internal_addresses(address, why):
    assert why in guard.refusal(address, allow_private=False)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:8.8.8.8"])
def test_fetch_guard_allows_public_addresses(address):
    assert guard.refusal(address, allow_private=False) is None


@pytest.mark.parametrize("address, allowed", [
    ("127.0.0.1", True), ("10.0.0.1", True), ("fe80::1", True), ("::ffff:192.168.0.1", True),
    ("169.254.169.254", False), ("224.0.0.1", False), ("0.0.0.0", False),
])
def test_fetch_guard_allow_private_opens_only_private_addresses(address, allowed):
    assert (guard.refusal(address, allow_private=True) is None) is allowed


def test_fetch_guard_refuses_loopback_by_default_with_the_fix(site):
    with pytest.raises(FetchRefused) as caught:
        guard.fetch(site.url("/article"), max_bytes=LIMIT, timeout=5, allow_private=False)
    message = str(caught.value)
    assert site.url("/article") in message and "127.0.0.1" in message and "FLOW_FETCH_ALLOW_PRIVATE=true" in message
    assert caught.value.status == 403


def test_fetch_guard_refuses_a_name_resolving_to_loopback(site):
    with pytest.raises(FetchRefused, match="resolves to 127.0.0.1"):
        guard.fetch(site.url("/article", host="localhost"), max_bytes=LIMIT, timeout=5, allow_private=False)


def test_fetch_guard_refuses_a_mapped_name_resolving_to_loopback(site, monkeypatch):
    monkeypatch.setattr(guard, "resolve", lambda host, port: ["93.184.216.34", "127.0.0.1"])
    with pytest.raises(FetchRefused, match="shop.example.*127.0.0.1, a loopback"):
        guard.fetch(f"http://shop.example:{site.port}/", max_bytes=LIMIT, timeout=5, allow_private=False)


def test_fetch_guard_setting_allows_loopback(site, monkeypatch):
    got = guard.fetch(site.url("/article"), max_bytes=LIMIT, timeout=5, allow_private=True)
    assert got.status == 200 and got.content_type == "text/html" and b"lighthouse" in got.body
    monkeypatch.setenv("FLOW_FETCH_ALLOW_PRIVATE", "true")  # None: the setting decides
    assert guard.fetch(site.url("/article"), max_bytes=LIMIT, timeout=5).status == 200
    monkeypatch.setenv("FLOW_FETCH_ALLOW_PRIVATE", "false")
    with pytest.raises(FetchRefused):
        guard.fetch(site.url("/article"), max_bytes=LIMIT, timeout=5)


def test_fetch_guard_settings_field_reads_the_variable():
    from engine.settings import Settings

    assert Settings.from_env({"FLOW_FETCH_ALLOW_PRIVATE": "true"}).fetch_allow_private is True
    assert Settings().fetch_allow_private is False


def test_fetch_guard_follows_redirects_and_reports_the_final_url(site):
    got = guard.fetch(site.url("/redirect/4"), max_bytes=LIMIT, timeout=5, allow_private=True)
    assert got.url == site.url("/article") and b"lighthouse" in got.body


def test_fetch_guard_gives_up_after_five_redirects(site):
    with pytest.raises(FetchFailed, match="more than 5 times"):
        guard.fetch(site.url("/redirect/6"), max_bytes=LIMIT, timeout=5, allow_private=True)


def test_fetch_guard_rechecks_a_redirect_to_metadata(site):
    with pytest.raises(FetchRefused, match="169.254.169.254, a cloud metadata address"):
        guard.fetch(site.url("/to-metadata"), max_bytes=LIMIT, timeout=5, allow_private=True)


@pytest.fixture
def public_site(site, monkeypatch):
    """``public.example`` resolves to a public address whose connections land on the test site:
    a public host as far as the guard can tell."""
    public = "93.184.216.34"
    monkeypatch.setattr(guard, "resolve", lambda host, port: [public] if host == "public.example"
                        else ["127.0.0.1"])
    connected = []
    real = socket.create_connection

    def connect(address, timeout=None, source=None):
        connected.append(address[0])
        assert address[0] == public, "the guard connected to an address it did not check"
        return real(("127.0.0.1", address[1]), timeout, source)

    monkeypatch.setattr(guard, "connect", connect)
    return connected


def test_fetch_guard_rechecks_a_redirect_from_a_public_host_to_loopback(site, public_site):
    got = guard.fetch(f"http://public.example:{site.port}/article", max_bytes=LIMIT, timeout=5, allow_private=False)
    assert b"lighthouse" in got.body and public_site == ["93.184.216.34"]
    with pytest.raises(FetchRefused, match="127.0.0.1, a loopback address"):
        guard.fetch(f"http://public.example:{site.port}/to-loopback", max_bytes=LIMIT, timeout=5,
                    allow_private=False)


def test_fetch_guard_connects_to_the_checked_address_not_a_second_lookup(site, monkeypatch):
    """DNS rebinding: a name checked as public that would resolve to 127.0.0.1 on a second lookup."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    monkeypatch.setattr(guard, "resolve", lambda host, port: next(answers))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("a second DNS lookup"))
    connected = []

    def connect(address, timeout=None, source=None):
        connected.append(address[0])
        raise ConnectionRefusedError("unreachable in the test")

    monkeypatch.setattr(guard, "connect", connect)
    with pytest.raises(FetchFailed):
        guard.fetch(f"http://rebind.example:{site.port}/", max_bytes=LIMIT, timeout=5, allow_private=False)
    assert connected == ["93.184.216.34"]


@pytest.mark.parametrize("url, match", [
    ("ftp://example.com/file", "only http:// and https://"), ("file:///etc/passwd", "only http:// and https://"),
    ("gopher://127.0.0.1:70/", "only http:// and https://"), ("http:///nohost", "names no host"),
    ("http://user:pw@example.com/", "carries credentials"), ("", "no URL given"),
    ("http://example.com:99999/", "not a valid URL"),
])
def test_fetch_guard_refuses_bad_urls(url, match):
    with pytest.raises(BadURL, match=match) as caught:
        guard.fetch(url, max_bytes=LIMIT, timeout=5, allow_private=True)
    assert "pw" not in str(caught.value)


def test_fetch_guard_cuts_a_huge_page(site):
    with pytest.raises(FetchLimit, match="more than the limit of 1048576 bytes"):
        guard.fetch(site.url("/huge"), max_bytes=LIMIT, timeout=10, allow_private=True)


def test_fetch_guard_refuses_a_declared_size_over_the_limit(site):
    with pytest.raises(FetchLimit, match="16384 bytes, more than the limit of 1000"):
        guard.fetch(site.url("/file.bin"), max_bytes=1000, timeout=5, allow_private=True)


def test_fetch_guard_checks_the_content_type(site):
    with pytest.raises(FetchLimit, match="'application/octet-stream', not one of text/html"):
        guard.fetch(site.url("/file.bin"), max_bytes=LIMIT, timeout=5, allow_private=True,
                    accept=("text/html", "application/xhtml+xml"))
    got = guard.fetch(site.url("/images/x.png"), max_bytes=LIMIT, timeout=5, allow_private=True, accept=("image/",))
    assert got.body.startswith(b"\x89PNG")


def test_fetch_guard_time_limit_covers_a_stalled_body(site):
    with pytest.raises(FetchFailed, match="took more than 0.5 s"):
        guard.fetch(site.url("/slow"), max_bytes=LIMIT, timeout=0.5, allow_private=True)


def test_fetch_guard_http_errors_name_the_status(site):
    with pytest.raises(FetchFailed, match="HTTP 404"):
        guard.fetch(site.url("/missing"), max_bytes=LIMIT, timeout=5, allow_private=True)


def test_fetch_guard_unresolvable_host_fails_clearly():
    with pytest.raises(FetchFailed, match="cannot resolve host 'nothing.invalid'"):
        guard.fetch("http://nothing.invalid/", max_bytes=LIMIT, timeout=5, allow_private=False)


# -- image.load from a URL goes through the same guard ---------------------------------------------

def _load_url(engine, url):
    from zoo import G

    g = G().node("l", "image.load", url=url).output("w", "l", "width").output("h", "l", "height")
    return engine.run_sync(g.build(), {}).outputs


def test_fetch_guard_image_load_from_a_url(engine, site, monkeypatch):
    monkeypatch.setenv("FLOW_FETCH_ALLOW_PRIVATE", "true")
    assert _load_url(engine, site.url("/images/pic.png")) == {"w": 16, "h": 12}


def test_fetch_guard_image_load_refuses_loopback_by_default(engine, site, monkeypatch):
    from engine import NodeError

    monkeypatch.delenv("FLOW_FETCH_ALLOW_PRIVATE", raising=False)
    with pytest.raises(NodeError, match="FLOW_FETCH_ALLOW_PRIVATE=true") as caught:
        _load_url(engine, site.url("/images/pic.png"))
    assert caught.value.status == 403


def test_fetch_guard_image_load_refuses_a_non_image(engine, site, monkeypatch):
    from engine import NodeError

    monkeypatch.setenv("FLOW_FETCH_ALLOW_PRIVATE", "true")
    with pytest.raises(NodeError, match="text/html") as caught:
        _load_url(engine, site.url("/article"))
    assert caught.value.status == 422


def test_fetch_guard_image_load_reads_the_setting_from_the_engine_config(site, registry, tmp_path, monkeypatch):
    from engine import Engine, MemoryCache
    from engine.settings import Settings

    monkeypatch.delenv("FLOW_FETCH_ALLOW_PRIVATE", raising=False)
    eng = Engine(registry, cache=MemoryCache(1 << 20), output_dir=tmp_path / "o",
                 config={"fetch": Settings(fetch_allow_private=True)})
    try:
        assert _load_url(eng, site.url("/images/pic.png"))["w"] == 16
    finally:
        eng.close()


# -- https: the socket goes to the checked address, TLS still verifies the host name ---------------

@pytest.fixture(scope="module")
def tls_site(tmp_path_factory):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for ``localhost``."""
    import http.server
    import shutil
    import ssl
    import subprocess
    import threading

    if shutil.which("openssl") is None:
        pytest.skip("openssl is absent")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = f"host={self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.handle_error = lambda request, address: None  # the refused handshake of the verify test: expected
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], cert
    server.shutdown()


def test_fetch_guard_https_verifies_the_certificate(tls_site):
    port, _ = tls_site
    with pytest.raises(FetchFailed, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        guard.fetch(f"https://localhost:{port}/", max_bytes=LIMIT, timeout=10, allow_private=True)


def test_fetch_guard_https_pins_the_address_and_keeps_the_host_name(tls_site, monkeypatch):
    """A name checked as public whose socket lands on the local server: TLS and Host still name it."""
    import ssl

    port, cert = tls_site
    monkeypatch.setattr(guard, "resolve", lambda host, port: ["93.184.216.34"])
    real = socket.create_connection
    monkeypatch.setattr(guard, "connect", lambda address, timeout=None, source=None:
                        real(("127.0.0.1", address[1]), timeout, source))
    trusting = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(guard.ssl, "create_default_context", lambda: trusting)
    got = guard.fetch(f"https://localhost:{port}/", max_bytes=LIMIT, timeout=10, allow_private=False)
    assert got.body == f"host=localhost:{port}".encode()


@pytest.mark.parametrize("url", ["http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://0x7f000001/",
                                 "http://2130706433/", "http://127.1/", "http://0177.0.0.1/", "http://localhost./",
                                 "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/",
                                 "http://10.0.0.1:8080/admin", "http://0.0.0.0:8000/"])
def test_fetch_guard_refuses_classic_ssrf_spellings(url, monkeypatch):
    monkeypatch.setattr(guard, "connect", lambda *a, **k: pytest.fail("connected to a refused address"))
    with pytest.raises(FetchRefused):
        guard.fetch(url, max_bytes=LIMIT, timeout=5, allow_private=False)
