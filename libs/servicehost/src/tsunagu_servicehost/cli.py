"""`python -m <service> serve|migrate|openapi`: the one entry point of every service."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from uuid import UUID

from pydantic import ValidationError

from tsunagu_servicehost.service import Service
from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_telemetry import configure_logging


def _settings() -> ServiceSettings:
    try:
        return ServiceSettings()
    except ValidationError as exc:
        # Each variable and what is wrong with it; pydantic's messages leave the value out, so no password is printed.
        problems = "; ".join(f"TSUNAGU_{'_'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        sys.exit(f"[tsunagu] error: settings missing or invalid: {problems}")


def _kafka_settings() -> ServiceSettings:
    """Settings of a command that connects to Kafka: its credentials must be there."""
    settings = _settings()
    if reason := settings.kafka_credentials_missing:
        sys.exit(f"[tsunagu] error: settings missing or invalid: {reason}")
    return settings


def main(service: Service, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=service.title)
    parser.add_argument("command", choices=["serve", "migrate", "openapi", "replay-dead-letters", "replay-outbox",
                                            *service.commands])
    parser.add_argument("--limit", type=int, default=None, help="replay-dead-letters: at most this many")
    parser.add_argument("--event-id", type=UUID, action="append", dest="event_ids",
                        help="replay-outbox: release only this parked event (repeatable); all by default")
    parser.add_argument("--list", action="store_true", help="replay-outbox: list the parked rows, release nothing")
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in service.commands:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    configure_logging(service.name)

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    if args.command in service.commands:
        service.commands[args.command](_kafka_settings(), rest)
    elif args.command == "migrate":
        from tsunagu_servicehost.migrations import upgrade

        upgrade(service, _settings().database_url.get_secret_value())
    elif args.command == "replay-dead-letters":
        from tsunagu_servicehost.deadletters import replay_command

        replay_command(service, _kafka_settings(), args.limit)
    elif args.command == "replay-outbox":
        from tsunagu_servicehost.parked import release_command

        release_command(service, _settings(), args.event_ids, args.list)
    elif args.command == "openapi":
        from tsunagu_servicehost.app import build_app

        settings = ServiceSettings(http_port=1, database_url="postgresql://unused@localhost/unused")
        json.dump(build_app(service, settings).openapi(), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        import uvicorn

        from tsunagu_servicehost.app import build_app, settle_garbage_collection

        settings = _kafka_settings()
        missing = [name for name in ("staff_issuer", "staff_jwks_url", "staff_audience") if not getattr(settings, name)]
        if missing:
            sys.exit(f"[tsunagu] error: staff tokens cannot be checked: set {', '.join(f'TSUNAGU_{m.upper()}' for m in missing)}")
        if service.internal_http and not settings.internal_port:
            sys.exit("[tsunagu] error: TSUNAGU_INTERNAL_PORT is not set (the port of the internal API)")
        for check in service.checks:
            check()
        app = build_app(service, settings)
        settle_garbage_collection()
        # uvloop and httptools: the event loop and uvicorn's HTTP parser in C.
        uvicorn.run(app, host=settings.http_host, port=settings.http_port,
                    log_config=None, access_log=False, lifespan="on", loop="uvloop", http="httptools")
