"""Outbox and applied-event tables (Revision ID: 0001)."""

from tsunagu_servicehost.migrations import create_messaging_tables as upgrade  # noqa: F401

revision = "0001"
down_revision = None
