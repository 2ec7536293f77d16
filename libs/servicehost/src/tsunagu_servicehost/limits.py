"""A request body larger than the service accepts is answered 413 before anything reads it.

A pure ASGI middleware: a declared `Content-Length` over the limit is refused at once; a body without
one (chunked) is read up to the limit and refused as soon as it passes it, so no route, validation or
JSON parser ever sees more than the limit. What was read is handed to the application unchanged.

Before a refusal, up to DRAIN_BYTES more of the body are read and dropped: a server that answers
and closes while the client is still sending resets the connection, and the reset can reach the
client before the answer does. A body larger still gets the answer and the close at once.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 256 * 1024
DRAIN_BYTES = 1024 * 1024


def too_large_body(limit: int) -> dict[str, str]:
    """The 413 answer, in the shape of every other error answer (ERROR_ANSWERS)."""
    return {"message_ja": f"リクエストが大きすぎます（上限 {limit:,} バイト）。何も保存されていません。",
            "message_en": f"The request body is larger than {limit:,} bytes; nothing was stored."}


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app, self.limit = app, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            if declared.isdigit() and int(declared) <= DRAIN_BYTES:
                await _drain(receive, DRAIN_BYTES)
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: there is no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                if message.get("more_body", False):
                    await _drain(receive, DRAIN_BYTES - size)
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(too_large_body(self.limit), ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            # The rest of the body is not read: the connection is not reused for another request.
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of the body, at most `budget` bytes of it."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read as one message, then the client's own messages (its disconnect)."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
