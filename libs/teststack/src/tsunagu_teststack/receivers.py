"""Real HTTP webhook receivers on loopback, each behaving as a partner's endpoint might."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers with `answers[i]` for the i-th request (the last one repeats); `hang` seconds first.

    With `drip`, the answer's headers go out at once and its body follows one byte every `drip`
    seconds for `drip_for` seconds, or until the sender hangs up: a receiver that is never quite
    silent, so no read timeout ever fires. `most_open` is the most requests it held open at once.
    """

    answers: list[int] = field(default_factory=lambda: [200])
    hang: float = 0.0
    retry_after: str | None = None  # sent with every non-2xx answer
    drip: float = 0.0
    drip_for: float = 60.0
    body: bytes = b""  # the answer's body, with `content_type`
    content_type: str | None = None
    received: list[Received] = field(default_factory=list)
    open: int = 0
    most_open: int = 0

    def status_for(self, n: int) -> int:
        return self.answers[min(n, len(self.answers) - 1)]

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received if r.event["type"] == event_type]


class ReceiverServer:
    """One uvicorn server on 127.0.0.1 serving any number of receivers at /<name>."""

    def __init__(self):
        self.receivers: dict[str, Receiver] = {}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                                interface="asgi3")
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task | None = None

    def add(self, name: str, receiver: Receiver) -> str:
        self.receivers[name] = receiver
        return f"http://127.0.0.1:{self.port}/{name}"

    async def app(self, scope, receive: Callable, send: Callable) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender died mid-request (a fault test kills it): nothing was delivered
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        receiver = self.receivers.get(scope["path"].strip("/"))
        if receiver is None:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        n = len(receiver.received)
        receiver.received.append(Received({k.decode(): v.decode() for k, v in scope["headers"]}, body,
                                          asyncio.get_running_loop().time()))
        receiver.open += 1
        receiver.most_open = max(receiver.most_open, receiver.open)
        try:
            await self.answer(receiver, n, receive, send)
        finally:
            receiver.open -= 1

    async def answer(self, receiver: Receiver, n: int, receive: Callable, send: Callable) -> None:
        if receiver.hang:
            try:
                await asyncio.sleep(receiver.hang)
            except asyncio.CancelledError:
                return  # the server is shutting down; a hanging receiver never answers
        status = receiver.status_for(n)
        if receiver.drip:
            await self.drip(receiver, status, receive, send)
            return
        headers = [(b"content-length", str(len(receiver.body)).encode())]
        if receiver.content_type:
            headers.append((b"content-type", receiver.content_type.encode()))
        if receiver.retry_after and status >= 300:
            headers.append((b"retry-after", receiver.retry_after.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": receiver.body})

    @staticmethod
    async def drip(receiver: Receiver, status: int, receive: Callable, send: Callable) -> None:
        size = max(1, int(receiver.drip_for / receiver.drip))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(size).encode())]})
        # The request body was read, so the next message is the sender hanging up.
        hung_up = asyncio.ensure_future(receive())
        try:
            for i in range(size):
                await asyncio.wait({hung_up}, timeout=receiver.drip)
                if hung_up.done():
                    return
                await send({"type": "http.response.body", "body": b".", "more_body": i < size - 1})
        except asyncio.CancelledError:
            return  # the server is shutting down
        finally:
            hung_up.cancel()

    async def __aenter__(self) -> "ReceiverServer":
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        await asyncio.wait_for(self.task, 10)
