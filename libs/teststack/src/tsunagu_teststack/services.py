"""A service as a real process on a free loopback port, the way `make run` starts it."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tsunagu_teststack.infrastructure import stack_config
from tsunagu_teststack.tokens import token_env
from tsunagu_topics import KafkaCredentials


# One set of secrets per test session, as a deployment would have (signing keys: tokens.py).
SERVICE_SECRETS = {
    "TSUNAGU_INTAKE_PII_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "TSUNAGU_INTAKE_INDEX_KEY": secrets.token_urlsafe(32),
    "TSUNAGU_PARTNERS_SECRET_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "TSUNAGU_HOUSING_PII_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    # The tests' webhook receivers (receivers.py) listen on loopback.
    "TSUNAGU_PARTNERS_ALLOW_LOOPBACK_WEBHOOKS": "true",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_env(credentials: KafkaCredentials | None) -> dict[str, str]:
    if credentials is None:
        return {"TSUNAGU_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    return {"TSUNAGU_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TSUNAGU_KAFKA_USERNAME": credentials.username,
            "TSUNAGU_KAFKA_PASSWORD": credentials.password}


class ServiceProcess:
    """`python -m <service module> <command>` with the service's settings in its environment."""

    def __init__(self, service: str, *, kafka_bootstrap: str, database_url: str, log_dir: Path,
                 extra_env: dict[str, str] | None = None, kafka_credentials: KafkaCredentials | None = None):
        """`kafka_credentials`: the service's SCRAM user; None for a PLAINTEXT broker."""
        self.service = service
        config = stack_config()["services"][service]
        self.module = config["module"]
        self.port = free_port()
        self.internal_port = free_port() if "internal_port" in config else None
        self.log_path = log_dir / f"{service}-{self.port}.log"
        self.env = {
            **os.environ,
            "TSUNAGU_HTTP_HOST": "127.0.0.1",
            "TSUNAGU_HTTP_PORT": str(self.port),
            "TSUNAGU_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "TSUNAGU_DATABASE_URL": database_url,
            **kafka_env(kafka_credentials),
            **SERVICE_SECRETS,
            **token_env(service),
            **({"TSUNAGU_INTERNAL_PORT": str(self.internal_port)} if self.internal_port else {}),
            # Webhooks link a referral's details on the service's own address (`detailsurl`).
            **({"TSUNAGU_PARTNERS_PUBLIC_URL": f"http://127.0.0.1:{self.port}"}
               if service == "partner-notification" else {}),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.database_url = database_url

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def internal_url(self) -> str:
        """The internal API (service to service), on its own loopback port."""
        if self.internal_port is None:
            raise AssertionError(f"{self.service} serves no internal API")
        return f"http://127.0.0.1:{self.internal_port}"

    async def migrate(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, "migrate", env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            raise AssertionError(f"{self.service} migrate failed:\n{output.decode()[-3000:]}")

    async def start(self, wait_for: float = 60.0) -> None:
        """Start serving and wait until /healthz answers (readiness is the test's business)."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", self.module, "serve"], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            for _ in range(int(wait_for / 0.2)):
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.service} exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.service} did not answer /healthz within {wait_for}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    async def kill(self) -> None:
        """SIGKILL: the process dies at whatever it was doing, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)

    async def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.process.wait), 20)
            except TimeoutError:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)


def service_app(name: str):
    """A service's application built as `serve` builds it, without connecting to anything."""
    import importlib

    from tsunagu_servicehost import ServiceSettings, build_app

    service = importlib.import_module(f"{stack_config()['services'][name]['module']}.bootstrap").build_service()
    return build_app(service, ServiceSettings(http_port=1, database_url="postgresql://unused@localhost/unused"))
