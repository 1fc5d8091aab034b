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

import httpx

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
    try:
        # What the HTTP client will be given must be a URL it takes: one it refuses at delivery
        # ("http://1.1.1.1/hook\x01", a host IDNA cannot encode) was accepted here.
        host = httpx.URL(url).raw_host.decode("ascii")
    except httpx.InvalidURL as e:
        raise UnsafeUrl(f"not a URL: {e}") from None
    if any(c <= " " or c == "\x7f" for c in url):
        raise UnsafeUrl("the URL holds spaces or control characters")
    # The host as the client sends it (an IDN as its ASCII form, "xn--bcher-kva.de"): the name
    # resolved and checked, and the Host header and TLS name of the request.
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


# IPv6 ranges that carry an IPv4 address in their last 32 bits: IPv4-compatible (::a.b.c.d),
# SIIT (::ffff:0:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d), which a gateway may route to that IPv4
# address. The local-use NAT64 prefix embeds it elsewhere: refused whole.
_EMBEDDING_V4 = (ipaddress.IPv6Network("::/96"), ipaddress.IPv6Network("::ffff:0:0:0/96"),
                 ipaddress.IPv6Network("64:ff9b::/96"))  # fmt: skip
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _addresses_behind(ip: IPAddress) -> list[IPAddress]:
    """`ip`, and for an IPv6 address the IPv4 addresses it carries (mapped, compatible, SIIT,
    NAT64, 6to4, Teredo): each is checked, so `[::127.0.0.1]` or `[2002:7f00:1::]` is no way in."""
    if ip.version == 4:
        return [ip]
    assert isinstance(ip, ipaddress.IPv6Address)
    out: list[IPAddress] = [ip]
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)
    if any(ip in net for net in _EMBEDDING_V4):
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def _refused(ip: IPAddress, allow_private: bool) -> str | None:
    for address in _addresses_behind(ip):
        if address.is_unspecified or address.is_multicast:
            return "an unspecified or multicast address"
        if allow_private:
            continue
        site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
        if not address.is_global or site_local or address in _LOCAL_NAT64:
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
