"""What the services' hot paths rely on being installed where its absence would fail nothing and only
cost CPU (uvloop and httptools are asked for by name: a service without them does not start)."""

import asyncio
import sys

from httpcore._synchronization import current_async_library


def test_httpcore_names_the_async_library_without_searching_the_import_path_each_time():
    async def ask() -> str:
        return current_async_library()

    assert asyncio.run(ask()) == "asyncio"
    # httpcore imports sniffio inside the function: when it is missing, the failed import is not
    # remembered and every call searches the path again.
    assert "sniffio" in sys.modules

