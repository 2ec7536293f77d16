"""Transactional outbox for Tsunagu services.

A service writes its changes and the events they cause in one database transaction
(`append`); the `OutboxRelay` publishes what was committed, in order, and marks it. A notification
wakes the relay at once; a timed sweep picks up anything a lost notification left behind.
"""

from tsunagu_outbox.relay import OutboxRelay
from tsunagu_outbox.schema import SCHEMA_STATEMENTS
from tsunagu_outbox.store import NOTIFY_CHANNEL, append

__all__ = ["NOTIFY_CHANNEL", "SCHEMA_STATEMENTS", "OutboxRelay", "append"]
