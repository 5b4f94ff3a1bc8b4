"""Who may talk to the gateway: Host and Origin checks, JSON-only bodies, the API token, safe headers.

A local server is reachable from every web page its user opens. The checks below are the ones
Jupyter and Ollama use to keep those pages out:

- **Host** must name this server (a loopback name, the address it is bound to, or a name in
  ``FLOW_ALLOWED_HOSTS``): a page on ``evil.example`` whose DNS is re-pointed at 127.0.0.1 (DNS
  rebinding) sends ``Host: evil.example`` and is refused.
- **Origin**, when a browser sends one, must be this server's own or one in
  ``FLOW_CORS_ORIGINS``, on every route and on WebSocket upgrades; ``Sec-Fetch-Site:
  cross-site`` is refused too, except for following a plain link to a page.
- **Bodies** are ``application/json`` unless a route declares other types (415 otherwise): the
  body types a foreign page may send without asking (forms, ``text/plain``) never reach a handler.
- **The token** travels in ``Authorization: Bearer``; ``?token=`` only on the routes a browser
  cannot send a header to (EventSource and WebSocket).
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

from engine.errors import Forbidden, Unauthorized, UnsupportedMediaType
from engine.net import is_loopback

#: paths reachable without the token: the health check, and the web page's own files (the page
#: asks for the token itself)
OPEN_PATHS = frozenset({"/health"})
#: routes a browser opens without being able to set a header: the token may come as ?token=
TOKEN_IN_QUERY = ("/ws",)
JSON_TYPES = frozenset({"application/json"})


def _is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def split_host(value: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8000`` -> ``::1``), lower-cased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class Policy:
    """What this gateway answers: its bound address, extra host names, allowed origins, the token."""

    bind: str
    allowed_hosts: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset()
    token: str = field(default="", repr=False)
    #: path prefix -> Content-Types its bodies may have (all others: JSON only)
    body_types: dict[str, frozenset[str]] = field(default_factory=dict)
    #: Host header -> the answer, for the few distinct values a server sees (each request asks)
    _hosts_seen: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings, body_types: dict[str, frozenset[str]] | None = None) -> "Policy":
        """The policy of ``settings`` (``FLOW_HOST``, ``FLOW_ALLOWED_HOSTS``, ``FLOW_CORS_ORIGINS``, token)."""
        hosts = {h.strip().lower().rstrip(".") for h in settings.allowed_hosts.split(",") if h.strip()}
        origins = {o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()}
        if not _is_wildcard(settings.host) and not is_loopback(settings.host):
            hosts.add(settings.host.strip("[]").lower())
        if _is_wildcard(settings.host):
            hosts.add(socket.gethostname().lower())  # bound everywhere: the machine's own name too
        return cls(settings.host, frozenset(hosts), frozenset(origins), settings.api_token, body_types or {})

    # -- the checks, each a plain function of the request's values ---------------------------------

    def host_allowed(self, host_header: str | None) -> bool:
        """Does ``Host`` name this server? (Absent: HTTP/1.0 clients, never browsers: allowed.)"""
        if host_header is None:
            return True
        seen = self._hosts_seen.get(host_header)
        if seen is None:
            seen = self._host_allowed(host_header)
            if len(self._hosts_seen) < 256:  # bounded: a client may send any number of names
                self._hosts_seen[host_header] = seen
        return seen

    def _host_allowed(self, host_header: str) -> bool:
        host = split_host(host_header)
        if "*" in self.allowed_hosts or is_loopback(host) or host in self.allowed_hosts:
            return True
        if any(h.startswith("*.") and host.endswith(h[1:]) for h in self.allowed_hosts):
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False  # a DNS name nobody configured: the DNS-rebinding case
        # An address literal cannot be re-pointed by DNS; bound everywhere, any of ours may be used.
        return _is_wildcard(self.bind)

    def origin_allowed(self, origin: str, host_header: str | None) -> bool:
        """Is a browser's ``Origin`` this server itself or a configured one?"""
        origin = origin.rstrip("/")
        if "*" in self.origins or origin in self.origins:
            return True
        parts = urlsplit(origin)
        if origin == "null" or not parts.scheme or not parts.netloc or host_header is None:
            return False
        # the scheme is not compared: behind a TLS proxy the page is https and this server sees http
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.strip().lower()

    def body_types_of(self, path: str) -> frozenset[str]:
        """The Content-Types a body sent to ``path`` may have."""
        for prefix, types in self.body_types.items():
            if path == prefix or path.startswith(prefix + "/"):
                return types
        return JSON_TYPES

    def token_ok(self, request: web.Request) -> bool:
        """Does the request carry the token (compared in constant time, as bytes of any encoding)?"""
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not given and _token_in_query(request.path):
            given = request.query.get("token", "")
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                   self.token.encode("utf-8", "surrogateescape"))


def _token_in_query(path: str) -> bool:
    return path in TOKEN_IN_QUERY or (path.startswith("/jobs/") and path.endswith("/events"))


def needs_token(path: str, method: str = "GET") -> bool:
    """Everything but /health and the web page's own files needs the token (when one is set).

    The page's files are read (GET/HEAD) only: a saved endpoint under /web (POST /web/extract) needs the token.
    """
    page = method in ("GET", "HEAD") and (path == "/" or path.startswith("/web/"))
    return not (path in OPEN_PATHS or page)


def guard_middleware(policy: Policy):
    """Refuse foreign hosts and origins, non-JSON bodies and missing tokens, before any handler."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        host = request.headers.get("Host")
        if not policy.host_allowed(host):
            raise Forbidden(f"this server does not answer to the host name {split_host(host)!r}; "
                            "add it to FLOW_ALLOWED_HOSTS if it is yours")
        origin = request.headers.get("Origin")
        if origin is not None and not policy.origin_allowed(origin, host):
            raise Forbidden(f"requests from the web origin {origin!r} are refused; "
                            "add it to FLOW_CORS_ORIGINS if it is yours")
        site = request.headers.get("Sec-Fetch-Site", "")
        if site == "cross-site" and origin is None and not (
                request.method == "GET" and request.headers.get("Sec-Fetch-Mode") == "navigate"):
            raise Forbidden("cross-site requests are refused (Sec-Fetch-Site: cross-site)")
        if request.method == "OPTIONS":
            return await handler(request)  # preflight: answered by the CORS middleware or 405
        if request.body_exists and request.method in ("POST", "PUT", "PATCH", "DELETE"):
            allowed = policy.body_types_of(request.path)
            if request.content_type not in allowed and "*" not in allowed:
                raise UnsupportedMediaType(
                    f"this route takes a body of type {' or '.join(sorted(allowed))}, not {request.content_type!r}; "
                    f"send the header 'Content-Type: {sorted(allowed)[0]}'")
        if policy.token and needs_token(request.path, request.method) and not policy.token_ok(request):
            raise Unauthorized("an API token is required: send 'Authorization: Bearer <token>'")
        return await handler(request)

    return middleware


def cors_middleware(origins: frozenset[str]):
    """CORS headers for the configured origins, and answers to their preflight requests."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        origin = (request.headers.get("Origin") or "").rstrip("/")
        ok = bool(origin) and ("*" in origins or origin in origins)
        if request.method == "OPTIONS" and ok:
            response = web.Response(status=204)
        else:
            response = await handler(request)
        if ok:
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Prefer"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE, OPTIONS"
            response.headers["Vary"] = "Origin"
        return response

    return middleware


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers on every answer: no MIME sniffing, no framing (clickjacking), no referrer leaks."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/files/"):
        # Outputs are data, never pages of this origin: a saved .html or .svg cannot run script here.
        headers.setdefault("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'; "
                                                      "media-src 'self'; style-src 'unsafe-inline'")
    else:
        headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")


def exposure_problem(settings) -> str | None:
    """Why ``settings`` must not start (a non-loopback address with no token), or None when it may."""
    reached_on = settings.published_host or settings.host
    if settings.api_token or settings.insecure_no_token or is_loopback(reached_on):
        return None
    return (f"refusing to serve on {reached_on} without an API token: anyone who can reach that address "
            "could run jobs and read every output. Set FLOW_API_TOKEN (e.g. to the output of "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`), bind 127.0.0.1, or pass "
            "--insecure-no-token (FLOW_INSECURE_NO_TOKEN=true) if this network is yours alone")
