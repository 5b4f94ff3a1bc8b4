"""Network addresses: which ones stay on this machine (the gateway's guard and the privacy rule ask)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for names and addresses that only reach this machine (localhost, 127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
