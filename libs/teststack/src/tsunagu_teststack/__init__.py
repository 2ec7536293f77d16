"""Kafka and PostgreSQL for tests: one fixture, three back ends.

1. `TSUNAGU_TEST_KAFKA_BOOTSTRAP` and `TSUNAGU_TEST_POSTGRES_DSN` (a role that may create
   databases and roles) point at infrastructure you run yourself;
2. otherwise testcontainers, when a Docker engine answers;
3. otherwise the native stack from deploy/ (Kafka from Maven Central, Debian's PostgreSQL),
   started or reused.

Load it as a pytest plugin (`pytest_plugins = ["tsunagu_teststack.plugin"]`).
"""

from tsunagu_teststack.infrastructure import Infrastructure
from tsunagu_teststack.services import ServiceProcess

__all__ = ["Infrastructure", "ServiceProcess"]
