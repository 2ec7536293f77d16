"""The HTTP transport webhooks are sent through: it checks the URL, resolves its host, checks every
address, and connects to the address it checked.

httpx resolves a host itself when it connects; checking a name first and letting httpx resolve it
again would leave a window in which the name answers differently (DNS rebinding). Here the network
backend underneath httpx's connection pool does the resolving: it is given the host and port of
each new connection, refuses the connection unless every address is allowed, and opens it to one of
those addresses. TLS still names the original host (SNI and certificate check), and so does the
Host header, because only the socket's address changes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import typing
from collections.abc import Awaitable, Callable, Mapping

import httpcore
import httpx

from tsunagu_partners.domain.webhook_urls import UrlRefused, WebhookUrlRules

Resolve = Callable[[str, int], Awaitable[list[str]]]
"""The addresses a host name has (the seam tests point at names of their own)."""


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def static_then_system(hosts: Mapping[str, list[str]]) -> Resolve:
    """Names in `hosts` answer with their listed addresses (a hosts file of the service's own, for
    drills and tests); every other name is asked of the system's resolver. Both are checked alike."""
    table = {name.lower(): list(addresses) for name, addresses in hosts.items()}

    async def resolve(host: str, port: int) -> list[str]:
        if host.lower() in table:
            return table[host.lower()]
        return await system_resolve(host, port)
    return resolve


def parse_static_hosts(value: str) -> dict[str, list[str]]:
    """TSUNAGU_PARTNERS_STATIC_HOSTS: a JSON object of host name to a list of addresses."""
    hosts = json.loads(value or "{}")
    if not isinstance(hosts, dict) or not all(isinstance(v, list) for v in hosts.values()):
        raise ValueError("TSUNAGU_PARTNERS_STATIC_HOSTS is a JSON object of host name to a list of addresses")
    return hosts


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, rules: WebhookUrlRules, resolve: Resolve):
        self.rules, self.resolve = rules, resolve
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.resolve(host, port)
        except OSError:
            raise httpcore.ConnectError("the webhook's host name did not resolve") from None
        if not addresses:
            raise httpcore.ConnectError("the webhook's host name has no address")
        loopback_only = host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost")
        for address in addresses:  # every one: a name with one bad address among good ones is refused
            self.rules.check_address(address, port, loopback_only=loopback_only)
        return await self.inner.connect_tcp(addresses[0], port, timeout=timeout, local_address=local_address,
                                            socket_options=socket_options)

    async def connect_unix_socket(self, *args, **kwargs):  # pragma: no cover - never a webhook's
        raise UrlRefused("scheme", "Webhook は UNIX ソケットには送れません。", "webhooks are not sent to UNIX sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class CheckedTransport(httpx.AsyncBaseTransport):
    """Checks each request's URL, then sends it over connections `_CheckedBackend` opened."""

    def __init__(self, rules: WebhookUrlRules, resolve: Resolve = system_resolve):
        self.rules = rules
        # trust_env=False: no proxy from the environment; a proxy would resolve and connect itself.
        self.inner = httpx.AsyncHTTPTransport(trust_env=False)
        self.inner._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=100, max_keepalive_connections=20,
            keepalive_expiry=5.0, network_backend=_CheckedBackend(rules, resolve))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.rules.check_url(str(request.url))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


__all__ = ["CheckedTransport", "Resolve", "UrlRefused", "parse_static_hosts", "static_then_system", "system_resolve"]
