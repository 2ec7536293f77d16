"""Time-ordered event ids (UUID version 7, RFC 9562).

Python's standard library gains uuid7 only in 3.14; this is the RFC's layout: 48 bits of Unix
milliseconds, the version and variant bits, and random bits. A counter in the 12 "rand_a" bits
keeps ids from one process strictly increasing within the same millisecond.
"""

from __future__ import annotations

import os
import threading
import time
from uuid import UUID

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> UUID:
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, int.from_bytes(os.urandom(2), "big") & 0x3FF
        else:
            # Same (or an earlier, if the clock stepped back) millisecond: keep ordering.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
            ms = _last_ms
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | _counter << 64 | 0b10 << 62 | rand_b
    return UUID(int=value)
