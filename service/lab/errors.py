"""The store's failures, whichever engine keeps the state; each carries its HTTP status.

They are ``PathError``s (the file or the database they are about, and why), mapped to HTTP in
one place (``service.api.errors``).
"""

from __future__ import annotations

from typing import ClassVar

from service.contracts.errors import PathError, ServiceError


class StoreError(PathError):
    """Base of every store failure; ``status`` lets the service map it to HTTP in one place.

    Most are the server's trouble (disk full, database locked or corrupt): 500.
    """

    error = "store"


class StoreConflictError(StoreError):
    """A lab result for that model, stream and sample time is stored with another value.

    Stored results are never overwritten: the first value was acknowledged and may already
    have moved the bias. Correcting a lab value is a human decision, not a retry.
    """

    status = 409


class LabResultNotFoundError(StoreError):
    """No stored lab result for that model, stream and sample time (to void): a wrong key, or
    one voided already (the audit trail lists it)."""

    status = 404
    error = "not_found"


class StoreUnavailableError(StoreError):
    """The database server cannot be reached (down, restarting, network): try again later.

    Nothing was stored; the service reconnects by itself once the server is back, so the
    same request sent again then succeeds (lab results are idempotent).
    """

    status = 503
    error = "store_unavailable"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class StateUnavailableError(ServiceError):
    """A predict request that needs its stream's shared state, while the database is away:
    its own answer (503) among the requests scored with it, which may still be answered."""

    status = 503
    error = "store_unavailable"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}
