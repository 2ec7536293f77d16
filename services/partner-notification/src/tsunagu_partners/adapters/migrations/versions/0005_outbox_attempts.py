"""The outbox counts failed publishes per row and parks a row after its attempts (Revision ID: 0005)."""

from tsunagu_servicehost.migrations import add_outbox_attempts as upgrade  # noqa: F401

revision = "0005"
down_revision = "0004"
