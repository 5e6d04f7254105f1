"""The audit trail an admin reads: champion changes from the registry's history of each
served model, voids from the state store, merged newest first.

Each is kept where its change is made durable (a champion change beside the pointer it moved,
possibly by the command line; a void in the transaction that voids), so this module only reads.
"""

from __future__ import annotations

from datetime import UTC

from service.api.admin_schemas import AuditEvent
from service.contracts.errors import ModelNotFoundError
from service.dataplane import SoftSensorService
from service.state.clock import from_posix


def audit_trail(service: SoftSensorService, model: str | None, limit: int) -> list[AuditEvent]:
    """The ``limit`` newest events of ``model`` (default: every served model)."""
    if model is not None and model not in service.served:
        raise ModelNotFoundError(None, f"model {model!r} is not served here")
    names = [model] if model is not None else list(service.served)
    events: list[AuditEvent] = []
    for name in names:
        try:
            changes = service.registry.history(name)
        except ModelNotFoundError:
            changes = []
        events += [
            AuditEvent(
                time=c.time if c.time.tzinfo else c.time.replace(tzinfo=UTC),
                action="promote" if c.action == "promote" else "rollback",
                model=name,
                actor=c.by,
                reason=c.reason,
                version=c.version,
                previous=c.previous,
            )
            for c in changes
        ]
        events += [
            AuditEvent(
                time=from_posix(v.voided_at),
                action="void",
                model=name,
                actor=v.voided_by,
                reason=v.reason,
                stream=v.record.stream,
                sample_time=from_posix(v.record.sample_time),
                value=v.record.value,
            )
            for v in reversed(service.labs_store().voids(name, limit))
        ]
    # each source is oldest first: on equal times, the later entry of a source stays later
    order = sorted(enumerate(events), key=lambda pair: (pair[1].time, pair[0]), reverse=True)
    return [event for _, event in order[:limit]]
