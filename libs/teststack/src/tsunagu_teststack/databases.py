"""Scratch databases: each one empty, with its own login role, like a service's in production."""

from __future__ import annotations

import asyncio
import secrets
import warnings
from urllib.parse import urlsplit, urlunsplit

import asyncpg


class ScratchDatabases:
    """Creates databases owned by fresh roles that only they may connect to; drops them all at the end."""

    def __init__(self, admin_dsn: str):
        self.admin_dsn = admin_dsn
        self.created: list[str] = []

    async def create(self, prefix: str = "t") -> str:
        name = f"{prefix.replace('-', '_')}_{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(18)
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
            # The admin must be a member of the owner to create a database owned by it (PG 16+),
            # and CREATE DATABASE cannot run inside a transaction.
            await admin.execute(f"GRANT \"{name}\" TO CURRENT_USER")
            await admin.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
            await admin.execute(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
            await admin.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{name}" TO "{name}"')
        finally:
            await admin.close()
        self.created.append(name)
        parts = urlsplit(self.admin_dsn)
        netloc = f"{name}:{password}@{parts.hostname}:{parts.port or 5432}"
        return urlunsplit((parts.scheme, netloc, f"/{name}", "", ""))

    async def drop_all(self) -> None:
        if not self.created:
            return
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            for name in self.created:
                await self._drop(admin, name)
        finally:
            await admin.close()
        self.created.clear()

    @staticmethod
    async def _drop(admin: asyncpg.Connection, name: str, attempts: int = 10) -> None:
        # A session PostgreSQL itself runs in the database (autovacuum) may refuse to be ended for a
        # moment; it finishes soon, and a leftover scratch database must not fail the test run.
        for attempt in range(attempts):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
                return
            except asyncpg.InsufficientPrivilegeError:
                if attempt == attempts - 1:
                    warnings.warn(f"scratch database {name} could not be dropped; it is left behind", stacklevel=1)
                    return
                await asyncio.sleep(0.5)
