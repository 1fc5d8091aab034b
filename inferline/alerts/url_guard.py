"""Which webhook URLs the service may call (server-side request forgery): http(s) only, and no
loopback, private, link-local or otherwise non-public address unless the operator allows them
(`INFERLINE_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES`). A name is resolved and every address checked,
when the webhook is created and again at every delivery, which then goes to the address checked
(so a name that resolves elsewhere a moment later changes nothing).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    pass


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL, or UnsafeUrl."""
    if len(url) > 2048:
        raise UnsafeUrl("URL longer than 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UnsafeUrl(f"not a URL: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("only http and https URLs")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("no credentials in the URL (sign with the webhook's secret instead)")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _refused(ip: IPAddress, allow_private: bool) -> str | None:
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return "an unspecified or multicast address"
    if not ip.is_global and not allow_private:
        return "a loopback, private, link-local or reserved address"
    return None


def resolve(host: str, port: int, allow_private: bool) -> list[IPAddress]:
    """Every address of `host`, all of them allowed, or UnsafeUrl. Blocking (DNS)."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            raise UnsafeUrl(f"{host} does not resolve: {e.strerror or e}") from None
        except (UnicodeError, ValueError):  # not a name IDNA can encode (a label over 63 characters)
            raise UnsafeUrl("the host is not a valid name") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise UnsafeUrl(f"{host} has no address")
    for ip in addresses:
        why = _refused(ip, allow_private)
        if why is not None:
            raise UnsafeUrl(f"{host} resolves to {why} ({ip}); webhooks may not call it")
    return addresses


def check(url: str, allow_private: bool) -> list[IPAddress]:
    _, host, port = parse(url)
    return resolve(host, port, allow_private)
