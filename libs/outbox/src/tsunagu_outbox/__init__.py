"""Transactional outbox and idempotent-consumer bookkeeping for Tsunagu services."""

from tsunagu_outbox.schema import SCHEMA_STATEMENTS

__all__ = ["SCHEMA_STATEMENTS"]
