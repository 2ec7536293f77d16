"""Where a partner's webhook may point: rules checked at registration, at a change of URL, and again
at each send on the addresses the host name resolves to (adapters/webhook_transport.py connects to
the address it checked, so a name that changes its answer between the check and the connection
gains nothing).

A webhook URL is chosen by someone outside the city. Without these rules it could make the service
send requests into the city's own network, the cloud's metadata endpoint or the stack itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

STACK_PORTS: frozenset[int] = frozenset({
    8000,                          # the web console
    8001, 8002, 8003, 8004,        # the four services
    8101,                          # intake's internal API
    9092, 9093, 9094, 9192,        # Kafka's client ports (one to three nodes) and its controller
    5432,                          # PostgreSQL
    16686, 16685, 4317, 4318,      # Jaeger's UI and query API, OTLP gRPC and HTTP
    8025, 8026,                    # the development mail sink (SMTP and its page)
})
"""The stack's own ports (deploy/stack.toml): never a webhook's, on any host."""

METADATA_ADDRESSES: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"))
"""Cloud instance metadata endpoints (AWS, ECS, AWS over IPv6, Alibaba). Every one is also in a
refused range; they are named so that the reason says what they are."""

LOCALHOST_NAMES = ("localhost", "localhost.")

NAT64 = ipaddress.ip_network("64:ff9b::/96")
"""The well-known NAT64 prefix (RFC 6052): its last 32 bits are the IPv4 address reached."""
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
"""Local-use NAT64 (RFC 8215): where it leads is the network's own business, so it is refused."""
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
"""Deprecated IPv4-compatible addresses (::a.b.c.d); :: and ::1 are handled as themselves."""


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to, when it carries one (mapped, 6to4, Teredo, NAT64,
    IPv4-compatible): the rules are checked on that address, so `::ffff:10.0.0.1`,
    `2002:a9fe:a9fe::` or `64:ff9b::7f00:1` is refused like the address inside it."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64 or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class UrlRefused(Exception):
    """A webhook URL, or the address its host resolves to, that the service does not send to.

    `code` is what a delivery records as its error: it says why, never the URL (which may hold the
    partner's own token)."""

    def __init__(self, code: str, message_ja: str, message_en: str):
        super().__init__(message_en)
        self.code, self.message_ja, self.message_en = code, message_ja, message_en


def _refused(code: str, ja: str, en: str) -> UrlRefused:
    return UrlRefused(code, ja, en)


@dataclass(frozen=True)
class WebhookUrlRules:
    """`https` to a public address, on a port that is not the stack's.

    `allow_loopback` (development and tests only) also admits 127.0.0.0/8, ::1 and `localhost`,
    over http or https, still never on the stack's ports.
    """

    allow_loopback: bool = False
    refused_ports: frozenset[int] = field(default=STACK_PORTS)

    def check_url(self, url: str) -> None:
        """Raises UrlRefused when the URL itself breaks a rule (scheme, credentials, host, port)."""
        try:
            parts = urlsplit(url)
            port = parts.port
            host = parts.hostname
        except ValueError:
            raise _refused("malformed", "Webhook URL の形式が正しくありません。", "the webhook URL is malformed") from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            raise _refused("scheme", "Webhook URL は https:// で始めてください。",
                           "a webhook URL must use https")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise _refused("credentials", "Webhook URL に利用者名やパスワードを含めることはできません。",
                           "a webhook URL may not carry a user name or password")
        if not host:
            raise _refused("malformed", "Webhook URL にホスト名がありません。", "the webhook URL has no host")
        port = port or (443 if scheme == "https" else 80)
        self.check_port(port)
        loopback_name = host.lower() in LOCALHOST_NAMES or host.lower().endswith(".localhost")
        literal = _literal_address(host)
        if loopback_name or (literal is not None and literal.is_loopback):
            if not self.allow_loopback:
                raise _refused("loopback", "Webhook URL にこのサーバー自身（ループバック）は指定できません。",
                               "a webhook URL may not point to the server itself (loopback)")
            return
        if scheme != "https":
            raise _refused("scheme", "Webhook URL は https:// で始めてください。",
                           "a webhook URL must use https")
        if literal is not None:
            self.check_address(str(literal), port)

    def check_port(self, port: int) -> None:
        if port in self.refused_ports:
            raise _refused("stack_port", "このポートは Webhook の送信先に指定できません（システム自身が使用しています）。",
                           f"port {port} belongs to the system itself and is not a webhook's")

    def check_address(self, address: str, port: int, *, loopback_only: bool = False) -> None:
        """Raises UrlRefused unless the service may connect to `address`:`port`.

        `loopback_only`: the URL named the loopback (`localhost`, or plain http, which is allowed
        only there), so its host must resolve to nothing else."""
        self.check_port(port)
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address):
            ip = embedded_ipv4(ip) or ip
        if ip.is_loopback:
            if self.allow_loopback:
                return
            raise _refused("loopback", "Webhook の送信先がこのサーバー自身（ループバック）になっています。",
                           "the webhook's host resolves to the server itself (loopback)")
        if loopback_only:
            raise _refused("not_loopback", "http の Webhook URL はループバックにしか送れません。",
                           "plain http is allowed only to the loopback, and the host resolves elsewhere")
        if ip in METADATA_ADDRESSES:
            raise _refused("metadata", "Webhook の送信先がクラウドのメタデータのアドレスになっています。",
                           "the webhook's host resolves to a cloud metadata address")
        if ip.is_link_local:
            raise _refused("link_local", "Webhook の送信先がリンクローカルアドレスになっています。",
                           "the webhook's host resolves to a link-local address")
        if ip.is_unspecified or ip.is_multicast:
            raise _refused("unspecified_or_multicast", "Webhook の送信先に使えないアドレスです（未指定またはマルチキャスト）。",
                           "the webhook's host resolves to an unspecified or multicast address")
        if ip.is_private or not ip.is_global or getattr(ip, "is_site_local", False) or ip in LOCAL_NAT64:
            raise _refused("private", "Webhook の送信先が内部ネットワーク（プライベートアドレス）になっています。",
                           "the webhook's host resolves to a private or reserved address")


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


__all__ = ["METADATA_ADDRESSES", "STACK_PORTS", "UrlRefused", "WebhookUrlRules"]
