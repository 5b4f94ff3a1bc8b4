"""The one URL guard for every outbound fetch (SSRF): check the address, then connect to that address.

Every fetch flow makes on a caller's behalf (``web.extract``, ``image.load`` from a URL, the
browser's requests in render mode) goes through :func:`fetch`:

1. only ``http``/``https`` URLs without credentials;
2. the host is resolved once and *every* address checked: loopback, private, link-local,
   shared (CGNAT), cloud metadata, multicast, reserved and unspecified addresses are refused,
   IPv6 equivalents too, and IPv4 addresses hidden in IPv6 (IPv4-mapped, 6to4, Teredo, NAT64)
   are checked as the IPv4 address they carry;
3. the connection goes to the checked address itself (the Host header and TLS SNI still name
   the host), so a DNS answer that changes between the check and the connect cannot move it;
4. redirects (at most :data:`MAX_REDIRECTS`) are followed by hand, each target checked again;
5. the body is streamed and cut at ``max_bytes``; one deadline covers the whole fetch,
   redirects included; the content type is checked against ``accept``.

``allow_private`` (the setting ``FLOW_FETCH_ALLOW_PRIVATE``) opens loopback, private and
link-local addresses for intranets and tests. Cloud metadata addresses, multicast, reserved and
unspecified addresses stay refused whatever the setting: nothing flow fetches lives there.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import quote, urljoin, urlsplit

from .errors import BadURL, FetchFailed, FetchLimit, FetchRefused

#: redirects followed before a fetch fails
MAX_REDIRECTS = 5
#: the setting that opens private addresses (read from the environment only when a caller passes None)
ALLOW_PRIVATE_ENV = "FLOW_FETCH_ALLOW_PRIVATE"
#: the fix every refusal names
FIX = f"set {ALLOW_PRIVATE_ENV}=true to allow private and loopback addresses (intranets, tests)"
USER_AGENT = "flow-fetch/1 (+https://github.com/flow)"
_CHUNK = 64 << 10
_REDIRECTS = {301, 302, 303, 307, 308}

#: cloud metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba): refused whatever the setting
METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200",
                                                       "169.254.170.2"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: what an intranet uses (RFC 1918, carrier-grade NAT, IPv6 unique-local): opened by allow_private
PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                                  "fc00::/7"))


@dataclass(frozen=True)
class Fetched:
    """A fetched resource: the final URL (after redirects), status, content type, body and headers."""

    url: str
    status: int
    content_type: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def charset(self) -> str | None:
        """The charset the Content-Type names, if any."""
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"').strip()
        return None


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (tests may replace this function to map names)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise FetchFailed(f"cannot resolve host {host!r} ({exc}); check the URL") from exc
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = sockaddr[0].split("%", 1)[0]  # drop an IPv6 zone id
        if address not in seen:
            seen.append(address)
    return seen


def env_allows_private(environ: Mapping[str, str] | None = None) -> bool:
    """The setting ``FLOW_FETCH_ALLOW_PRIVATE`` as the environment gives it (for callers without settings)."""
    raw = (os.environ if environ is None else environ).get(ALLOW_PRIVATE_ENV, "")
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, Teredo client, NAT64), else None."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(address: str, allow_private: bool) -> str | None:
    """Why ``address`` may not be fetched (e.g. "a loopback address"), or None when it may."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            why = refusal(str(inner), allow_private)
            return f"{why} (IPv4 {inner} inside IPv6)" if why else None
    if ip in METADATA:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback:
        return None if allow_private else "a loopback address"
    if ip.is_link_local:
        return None if allow_private else "a link-local address"
    if any(ip in net for net in PRIVATE if net.version == ip.version):
        return None if allow_private else "a private address"
    if ip.is_reserved or not ip.is_global:  # documentation, benchmarking, 240/4...: nothing to fetch there
        return "a reserved address"
    return None


def check_url(url: str, allow_private: bool) -> tuple[str, str, int, list[str]]:
    """Check ``url`` and its host's addresses: (scheme, host, port, addresses), or raise a refusal."""
    if not isinstance(url, str) or not url.strip():
        raise BadURL("no URL given; give an http:// or https:// URL")
    url = url.strip()
    shown = _shown(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadURL(f"{shown!r} is not a valid URL ({exc}); give an http:// or https:// URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BadURL(f"{shown!r}: only http:// and https:// URLs are fetched, not {scheme or 'a relative URL'!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BadURL(f"{shown!r} names no host; give a full URL such as https://example.com/page")
    if parts.username is not None or parts.password is not None:
        raise BadURL(f"{_shown(url, hide_user=True)!r} carries credentials; flow does not send them, remove them")
    port = port or (443 if scheme == "https" else 80)
    addresses = resolve(host, port)
    if not addresses:
        raise FetchFailed(f"host {host!r} of {shown!r} resolves to no address; check the URL")
    for address in addresses:
        why = refusal(address, allow_private)
        if why is not None:
            fix = FIX if "private" in why or "loopback" in why or "link-local" in why else \
                "this kind of address is never fetched; give a public URL"
            raise FetchRefused(f"refused to fetch {shown!r}: host {host!r} resolves to {address}, {why}; {fix}")
    return scheme, host, port, addresses


def fetch(url: str, *, max_bytes: int, timeout: float, allow_private: bool | None = None,
          accept: tuple[str, ...] = (), headers: Mapping[str, str] | None = None, follow: bool = True) -> Fetched:
    """GET ``url`` through the SSRF guard: checked addresses only, at most 5 redirects, ``max_bytes``,
    ``timeout`` seconds in all, a content type among ``accept`` (prefixes such as ``"image/"``, or
    ``"text/html"``; empty: any). ``allow_private`` None reads ``FLOW_FETCH_ALLOW_PRIVATE``.

    ``follow=False`` returns a redirect as it is (status 3xx, ``headers["location"]``), for a caller that
    follows it through this guard itself (the browser of ``web.extract``'s render mode)."""
    if allow_private is None:
        allow_private = env_allows_private()
    deadline = time.monotonic() + max(0.001, float(timeout))
    current = url.strip() if isinstance(url, str) else url
    for hop in range(MAX_REDIRECTS + 1):
        scheme, host, port, addresses = check_url(current, allow_private)
        status, reason, response_headers, body = _get(scheme, host, port, addresses, current, max_bytes,
                                                      deadline, timeout, headers or {})
        if status in _REDIRECTS and response_headers.get("location"):
            if not follow:
                return Fetched(current, status, "", b"", response_headers)
            if hop == MAX_REDIRECTS:
                raise FetchFailed(f"{_shown(url)!r} redirects more than {MAX_REDIRECTS} times (last to "
                                  f"{_shown(current)!r}); give the final URL")
            current = urljoin(current, response_headers["location"].strip())
            continue
        if status >= 400:
            raise FetchFailed(f"{_shown(current)!r} answered HTTP {status} {reason}; check the URL")
        content_type = response_headers.get("content-type", "").split(";")[0].strip().lower()
        if accept and not _accepted(content_type, accept):
            raise FetchLimit(f"{_shown(current)!r} is {content_type or 'of no declared type'!r}, not one of "
                             f"{', '.join(accept)}; give the URL of such a resource")
        return Fetched(current, status, content_type, body, response_headers)
    raise AssertionError("unreachable")  # the loop returns or raises


def _accepted(content_type: str, accept: tuple[str, ...]) -> bool:
    for wanted in accept:
        wanted = wanted.lower().rstrip("*")
        if content_type == wanted or (wanted.endswith("/") and content_type.startswith(wanted)):
            return True
    return False


def _get(scheme: str, host: str, port: int, addresses: list[str], url: str, max_bytes: int, deadline: float,
         timeout: float, extra_headers: Mapping[str, str]) -> tuple[int, str, dict[str, str], bytes]:
    """One GET to one of the checked ``addresses``: (status, reason, headers, body cut at ``max_bytes``)."""
    parts = urlsplit(url)
    # as a browser sends it: characters outside ASCII percent-encoded (the request line is ASCII)
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe="/?&=%:@!$'()*+,;[]")
    conn = _connection(scheme, host, port, addresses, _left(deadline, url, timeout))
    try:
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            request_headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity",
                               **extra_headers}
            for name, value in request_headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            sock = conn.sock  # kept: the connection forgets it once a response says it will close
            response = conn.getresponse()
            found = {k.lower(): v for k, v in response.getheaders()}
            if response.status in _REDIRECTS:
                return response.status, response.reason, found, b""
            declared = found.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchLimit(f"{_shown(url)!r} is {int(declared)} bytes, more than the limit of {max_bytes}; "
                                 "give a smaller resource")
            chunks, size = [], 0
            while True:
                left = _left(deadline, url, timeout)
                try:
                    sock.settimeout(left)
                except OSError:  # a closing (HTTP/1.0) TLS response: its reads keep the connect-time timeout
                    pass
                chunk = response.read(min(_CHUNK, max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise FetchLimit(f"{_shown(url)!r} is more than the limit of {max_bytes} bytes; "
                                     "give a smaller resource")
            return response.status, response.reason, found, b"".join(chunks)
        except (socket.timeout, TimeoutError) as exc:
            raise FetchFailed(f"fetching {_shown(url)!r} took more than {timeout:g} s; try again or give "
                              "another URL") from exc
        except (OSError, http.client.HTTPException, UnicodeError) as exc:
            raise FetchFailed(f"fetching {_shown(url)!r} failed ({type(exc).__name__}: {exc}); check the URL")\
                from exc
    finally:
        conn.close()


def _connection(scheme: str, host: str, port: int, addresses: list[str], timeout: float):
    """An HTTP(S) connection whose socket goes to a checked address; Host and SNI still name ``host``."""
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn._create_connection = _pinned(addresses, port)  # the one place a socket opens: to checked addresses
    return conn


#: how a socket opens (tests replace it to land a "public" address on the local test site)
connect = socket.create_connection


def _pinned(addresses: list[str], port: int) -> Callable:
    def create_connection(_address, timeout=None, source_address=None):
        last: OSError | None = None
        for address in addresses:
            try:
                return connect((address, port), timeout, source_address)
            except OSError as exc:
                last = exc
        raise last or OSError("no address to connect to")
    return create_connection


def _left(deadline: float, url: str, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchFailed(f"fetching {_shown(url)!r} took more than {timeout:g} s; try again or give another URL")
    return left


def _shown(url: str, hide_user: bool = False) -> str:
    """The URL as messages show it: credentials hidden, at most 200 characters."""
    text = str(url)
    if hide_user and "@" in text:
        scheme, _, rest = text.partition("://")
        text = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return text if len(text) <= 200 else text[:180] + "…" + text[-10:]


def allow_private_for(config: Mapping) -> bool | None:
    """The ``fetch_allow_private`` setting as a node's ``ctx.config`` carries it (``config["fetch"]``: a bool or
    the settings; else the text nodes' settings), or None (then :func:`fetch` reads the environment)."""
    for value in (config.get("fetch"), getattr(config.get("text"), "settings", None)):
        if isinstance(value, bool):
            return value
        flag = getattr(value, "fetch_allow_private", None)
        if isinstance(flag, bool):
            return flag
    return None
