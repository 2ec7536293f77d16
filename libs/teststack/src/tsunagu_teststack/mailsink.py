"""A local SMTP sink: accepts mail on the loopback, keeps it in memory, and lists it on a web page.

Tests use `MailSink` on a free port (a fixture in plugin.py), and can make it refuse: a reply code
for the next N messages (451: try again later; 550: refused for good). deploy/stack.py runs it as
`python -m tsunagu_teststack.mailsink` on the ports of deploy/stack.toml's [mailsink], so that mail
notices sent in development can be read at http://127.0.0.1:8026/. Nothing is ever relayed.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Mail:
    received_at: datetime
    mail_from: str
    to: tuple[str, ...]
    subject: str
    body: str
    message: EmailMessage = field(repr=False)

    @property
    def text(self) -> str:
        """Everything a reader of the mail sees: the headers and the decoded body."""
        headers = "\n".join(f"{k}: {v}" for k, v in self.message.items())
        return f"{headers}\n\n{self.body}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, sink: "MailSink"):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:
        return self.sink._receive(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.original_content)


class MailSink:
    """`async with MailSink() as sink:` an SMTP server on `sink.host`:`sink.port`; `sink.mails` lists
    what it accepted; `sink.refuse(451, times=1)` refuses the next message(s) with that code."""

    def __init__(self, host: str = LOOPBACK, port: int | None = None):
        self.host, self.port = host, port or _free_port()
        self._lock = threading.Lock()
        self._mails: list[Mail] = []
        self._refusals: list[int] = []
        self.refused = 0
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)

    def partner_env(self) -> dict[str, str]:
        """partner-notification's settings for sending its mail notices here (no STARTTLS: loopback)."""
        return {"TSUNAGU_PARTNERS_SMTP_HOST": self.host, "TSUNAGU_PARTNERS_SMTP_PORT": str(self.port),
                "TSUNAGU_PARTNERS_SMTP_STARTTLS": "false", "TSUNAGU_PARTNERS_MAIL_FROM": "tsunagu@city.example"}

    def refuse(self, code: int, times: int = 1) -> None:
        with self._lock:
            self._refusals += [code] * times

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.to]

    def _receive(self, mail_from: str, to: tuple[str, ...], content: bytes) -> str:
        with self._lock:
            if self._refusals:
                code = self._refusals.pop(0)
                self.refused += 1
                return f"{code} {'try again later' if code < 500 else 'refused'}"
            message = message_from_bytes(content, policy=policy.default)
            body = message.get_body(preferencelist=("plain", "html"))
            self._mails.append(Mail(datetime.now(UTC), mail_from, to, str(message.get("Subject", "")),
                                    body.get_content() if body is not None else "", message))
        return "250 OK"

    def start(self) -> "MailSink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    async def __aenter__(self) -> "MailSink":
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.stop)

    def page(self) -> str:
        """The received mail, newest first, as a Japanese HTML page (everything escaped)."""
        rows = "".join(
            f"<tr><td>{html.escape(m.received_at.astimezone().strftime('%Y-%m-%d %H:%M:%S'))}</td>"
            f"<td>{html.escape(', '.join(m.to))}</td><td>{html.escape(m.subject)}</td>"
            f"<td><pre>{html.escape(m.body)}</pre></td></tr>" for m in reversed(self.mails))
        return ("<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>送信されたメール（開発用）</title>"
                "<style>body{font-family:sans-serif;margin:1rem}table{border-collapse:collapse}"
                "td,th{border:1px solid #999;padding:.3rem;vertical-align:top;text-align:left}"
                "pre{white-space:pre-wrap;margin:0}</style></head><body>"
                "<h1>送信されたメール（開発用の受信箱）</h1>"
                f"<p>SMTP {html.escape(self.host)}:{self.port} で受け取ったメール {len(self.mails)} 通。"
                "外部には送信していません。Sent mail, kept in memory, never relayed.</p>"
                "<table><caption>受信したメール（新しい順）</caption><thead><tr><th scope=\"col\">受信日時</th>"
                "<th scope=\"col\">宛先</th><th scope=\"col\">件名</th><th scope=\"col\">本文</th></tr></thead>"
                f"<tbody>{rows}</tbody></table></body></html>")

    async def serve_page(self, host: str, port: int) -> asyncio.Server:
        """The page on http://host:port/ (any path), a plain HTTP/1.0 answer per connection."""
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                body = self.page().encode()
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                             b"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                pass
            finally:
                writer.close()
        return await asyncio.start_server(answer, host, port)


async def serve(host: str, smtp_port: int, http_port: int) -> None:
    async with MailSink(host, smtp_port) as sink:
        server = await sink.serve_page(host, http_port)
        print(f"mail sink: SMTP on {host}:{smtp_port}, page on http://{host}:{http_port}/", flush=True)
        async with server:
            await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="A local SMTP sink with a page listing what it received.")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--http-port", type=int, default=8026)
    args = parser.parse_args()
    if args.host != LOOPBACK:
        parser.error("the sink listens on the loopback only")
    try:
        asyncio.run(serve(args.host, args.smtp_port, args.http_port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()


__all__ = ["Mail", "MailSink", "serve"]
