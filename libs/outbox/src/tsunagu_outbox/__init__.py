"""Transactional outbox for Tsunagu services.

A service writes its changes and the events they cause in one database transaction
(`append`); the `OutboxRelay` publishes what was committed, in order per topic and key, and marks
it. A notification wakes the relay at once; a timed sweep picks up anything a lost notification
left behind. A row the broker keeps refusing is parked after its attempts so the others move on;
`release_parked` puts it back in line. A handler works in a `UnitOfWork`: a repository over the
transaction's connection, and the events it emits, appended on commit; its `on_append` hands the
service what it appended, in the same transaction (a read model of the service's own events). A
unit of work's transaction (and a consumer's) remembers the transaction-scoped locks it took
(`locks`), so that it asks for each once.
"""

from tsunagu_outbox.parking import parked, release_parked
from tsunagu_outbox.relay import OutboxMetrics, OutboxRelay, RelayPolicy
from tsunagu_outbox.schema import ATTEMPT_STATEMENTS, SCHEMA_STATEMENTS
from tsunagu_outbox.store import NOTIFY_CHANNEL, append, record_of
from tsunagu_outbox.unit_of_work import (
    Forward, NewUnitOfWork, OnAppend, UnitOfWork, in_unit_of_work, unit_of_work, unit_of_work_on,
)

__all__ = ["ATTEMPT_STATEMENTS", "NOTIFY_CHANNEL", "SCHEMA_STATEMENTS", "Forward", "NewUnitOfWork", "OnAppend",
           "OutboxMetrics", "OutboxRelay", "RelayPolicy", "UnitOfWork", "append", "in_unit_of_work", "parked",
           "record_of", "release_parked", "unit_of_work", "unit_of_work_on"]
