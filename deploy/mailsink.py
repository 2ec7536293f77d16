#!/usr/bin/env python3
"""The development mail sink of `make run`: SMTP and a page listing what was sent, on the loopback
ports of stack.toml's [mailsink]. It runs in the project's virtual environment (aiosmtpd); the sink
itself is tsunagu_teststack.mailsink, which the tests use too. Nothing it receives is relayed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc import stack  # noqa: E402
from tsunagu_teststack.mailsink import serve  # noqa: E402


def main() -> None:
    cfg = stack()["mailsink"]
    try:
        asyncio.run(serve(cfg["host"], cfg["smtp_port"], cfg["http_port"]))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
