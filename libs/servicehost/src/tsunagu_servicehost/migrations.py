"""Schema migrations with Alembic, on the service's own database and role.

Each service keeps an Alembic script directory whose `env.py` calls `run_alembic_env()`.
"""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from tsunagu_outbox import ATTEMPT_STATEMENTS, SCHEMA_STATEMENTS
from tsunagu_servicehost.service import Service


def alembic_config(service: Service, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(service.migrations))
    # Kept out of the ini options so that '%' in a password needs no escaping.
    config.attributes["database_url"] = database_url
    return config


def upgrade(service: Service, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


def _async_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql+asyncpg://{rest}" if scheme in {"postgres", "postgresql"} else url


def run_alembic_env() -> None:
    """Body of every service's `env.py`: run the pending migrations online."""
    from alembic import context

    url = _async_url(context.config.attributes["database_url"])

    def run(connection) -> None:
        context.configure(connection=connection, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())


def create_messaging_tables() -> None:
    """The first migration of every service: its outbox and applied-event tables."""
    from alembic import op

    for statement in SCHEMA_STATEMENTS:
        op.execute(statement)


def add_outbox_attempts() -> None:
    """A later migration of every service: the outbox's attempt count, retry time and parking."""
    from alembic import op

    for statement in ATTEMPT_STATEMENTS:
        op.execute(statement)


def run_sql(script: str) -> None:
    """Run a migration written as plain SQL statements separated by `;` at line ends.

    asyncpg prepares each statement, and a prepared statement holds one command only.
    """
    from alembic import op

    for statement in script.split(";\n"):
        if statement.strip():
            op.execute(statement)
