"""The SSRF guard: scrapers may only reach public addresses unless told otherwise.

A scraper fetches URLs that come from users and from the pages themselves (links,
redirects, scripts). Without a guard, a source could read the cloud metadata endpoint
(``169.254.169.254``), the worker's own admin ports or anything on the private network.
Every URL, every redirect hop and every request a rendered page makes is checked here:
the host is resolved and the URL refused when *any* address is loopback, private,
link-local, multicast, reserved, unspecified or otherwise not global (IPv4 embedded in
IPv6 — mapped, 6to4, Teredo — is unwrapped first).

Known limit (DNS rebinding): for static fetches the guard resolves the name, then httpx
resolves it again to connect; a name whose answer changes between the two can slip
through. Browser renders are not affected: their traffic goes through
:mod:`activities.fetch.proxy`, which connects to the very address it checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from activities.fetch.errors import DnsError, InvalidUrlError, UrlNotAllowedError
from models.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {"http": 80, "https": 443}
_METADATA_ADDRESSES = frozenset({"169.254.169.254", "fd00:ec2::254"})


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect and which addresses were verified.

    Attributes:
        url: The URL as given.
        scheme: ``http`` or ``https``.
        host: The host name (ASCII, lower case; an IP literal without brackets).
        port: The port, defaulted from the scheme.
        addresses: The resolved addresses, all allowed. Empty when no resolution was
            needed (private networks allowed, or the host name is in the allow list).
    """

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``, the key of per-site state such as robots.txt."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return f"{self.scheme}://{host}"
        return f"{self.scheme}://{host}:{self.port}"


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched, or ``None`` when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            inner = blocked_reason(embedded)
            if inner is not None:
                return f"{inner} (IPv4 {embedded} embedded in IPv6)"
    # Order matters: 0.0.0.0 and 127/8 also count as "private" to the ipaddress module.
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        if str(address) in _METADATA_ADDRESSES:
            return "link-local (cloud metadata endpoint)"
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "special-purpose (not globally routable)"
    return None


def parse_url(url: str) -> httpx.URL:
    """Parse an absolute http(s) URL.

    Raises:
        InvalidUrlError: When it does not parse, is not http/https or has no host.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidUrlError(f"{url!r} is not a valid URL ({exc})", url=url) from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise InvalidUrlError(
            f"{url!r} is not an http:// or https:// URL (scheme {parsed.scheme or 'missing'!r});"
            " scrapers only fetch web pages",
            url=url,
        )
    if not parsed.host:
        raise InvalidUrlError(f"{url!r} has no host; give an absolute URL", url=url)
    return parsed


class HostGuard:
    """Decides which hosts scrapers may reach, from the settings.

    Args:
        settings: ``allow_private_networks`` turns the guard off; ``allowed_hosts`` lists
            host names (``intranet.example``, or ``*.corp.example`` for subdomains) and
            CIDR ranges (``10.1.0.0/16``, a bare address) that are always allowed.

    Raises:
        ValueError: When an ``allowed_hosts`` entry that looks like an address or CIDR
            does not parse.
    """

    def __init__(self, settings: Settings) -> None:
        self.allow_private = settings.allow_private_networks
        self._names: set[str] = set()
        self._suffixes: list[str] = []
        self._networks: list[IPNetwork] = []
        for raw in settings.allowed_hosts.split(","):
            entry = raw.strip().lower().strip("[]")
            if not entry:
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                if "/" in entry or entry.replace(".", "").isdigit():
                    raise ValueError(
                        f"MENDLINE_ALLOWED_HOSTS entry {raw.strip()!r} is neither a host name "
                        "nor a valid address or CIDR range (e.g. 10.1.0.0/16)"
                    ) from None
            if entry.startswith("*."):
                self._suffixes.append(entry[1:])
            else:
                self._names.add(entry.rstrip("."))

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` is in the allow list by name."""
        host = host.lower().rstrip(".")
        return host in self._names or any(host.endswith(suffix) for suffix in self._suffixes)

    def address_allowed(self, address: IPAddress) -> bool:
        """Whether ``address`` is public or inside an allowed CIDR range."""
        if blocked_reason(address) is None:
            return True
        return any(address in network for network in self._networks)

    async def check_url(self, url: str, *, resolve: bool = False) -> Target:
        """Check a URL before fetching it.

        Args:
            url: The absolute URL.
            resolve: Resolve the host even when no check needs it (the browser proxy must
                know the address it connects to).

        Returns:
            The checked target.

        Raises:
            InvalidUrlError: Not an http(s) URL with a host.
            UrlNotAllowedError: The host resolves to an address that is not allowed.
            DnsError: The host does not resolve.
        """
        parsed = parse_url(url)
        host = parsed.raw_host.decode("ascii").lower()
        port = parsed.port or DEFAULT_PORTS[parsed.scheme]
        addresses = await self.check_host(host, port, url=url, resolve=resolve)
        return Target(url=url, scheme=parsed.scheme, host=host, port=port, addresses=addresses)

    async def check_host(
        self, host: str, port: int, *, url: str, resolve: bool = False
    ) -> tuple[IPAddress, ...]:
        """Check a host name or IP literal; see :meth:`check_url`."""
        if (self.allow_private or self.host_allowed(host)) and not resolve:
            return ()
        addresses = await resolve_host(host, port, url=url)
        if not (self.allow_private or self.host_allowed(host)):
            for address in addresses:
                if not self.address_allowed(address):
                    reason = blocked_reason(address) or "disallowed"
                    raise UrlNotAllowedError(url, host=host, address=str(address), reason=reason)
        return addresses


async def resolve_host(host: str, port: int, *, url: str) -> tuple[IPAddress, ...]:
    """Every address ``host`` resolves to (getaddrinfo runs in a worker thread).

    Raises:
        DnsError: When the name does not resolve.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DnsError(
            f"cannot resolve host {host!r} of {url}: {exc}; check the URL's spelling, or "
            "the worker's DNS if the name is right (it will be retried)",
            url=url,
        ) from None
    found: dict[IPAddress, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        # IPv6 link-local answers carry a zone ("fe80::1%eth0"); the zone is not part of
        # the address.
        text = str(sockaddr[0]).split("%", 1)[0]
        found[ipaddress.ip_address(text)] = None
    if not found:
        raise DnsError(f"host {host!r} of {url} resolved to no address", url=url)
    return tuple(found)
