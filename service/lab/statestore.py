"""One store interface, two engines: what the service keeps beyond a request, and where.

``SOFTSENSOR_STATE_URL`` picks the engine. ``sqlite:///path`` (the default, embedded) keeps
everything in one file on the box: one process owns the state, nothing to run beside it.
``postgresql://...`` keeps it in a database server that every replica shares: lab results,
the prediction log and each stream's carried state are seen by all of them.

The service talks to a :class:`StateStore` only; each engine is a plain class that has these
methods (no shared base class to inherit behaviour from), and the same tests run on both.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from service.lab.records import DEFAULT_STREAM, LabRecord, PredictionBatch, VoidRecord

SCHEMES = ("sqlite", "postgresql", "postgres")


@dataclass(frozen=True)
class SavedState:
    """A stream's carried state as one replica left it (``service.state.snapshot``).

    ``token`` names the write: a replica whose stream holds another token has not seen it.
    """

    model: str
    stream: str
    token: str
    version: str  # the model version the state was built with
    payload: bytes


class PredictionStore(Protocol):
    """The prediction log (each stream's estimate per sample time) and the streams' state."""

    def record(self, model: str, stream: str, rows: Sequence[tuple[float, float]]) -> int: ...

    def record_batches(
        self, batches: Sequence[PredictionBatch], states: Sequence[SavedState] = ()
    ) -> int:
        """Predictions (and the streams' states, if shared) in one transaction."""
        ...

    def find(
        self, model: str, sample_time: float, tolerance_s: float, stream: str | None = None
    ) -> float | None: ...

    def latest(self, model: str, stream: str) -> float | None: ...

    def prune(
        self, older_than: float, model: str | None = None, stream: str | None = None
    ) -> int: ...

    def load_state(self, model: str, stream: str, unless: str) -> SavedState | None:
        """The stream's saved state unless its token is ``unless`` (already held)."""
        ...


class StateStore(Protocol):
    """Lab results (acknowledged means durable), with the prediction log beside them."""

    @property
    def shared(self) -> bool:
        """Other processes write it too: live state must be refreshed from it."""
        ...

    @property
    def predictions(self) -> PredictionStore: ...

    @property
    def where(self) -> str:
        """For messages: the file, or the server and database (never a password)."""
        ...

    def close(self) -> None: ...

    def add_many(self, records: Sequence[LabRecord]) -> builtins.list[bool]: ...

    def list(
        self,
        model: str | None = None,
        since: float | None = None,
        limit: int = 100,
        stream: str | None = None,
    ) -> builtins.list[LabRecord]: ...

    def get(self, model: str, sample_time: float, stream: str = ...) -> LabRecord | None: ...

    def history(self, model: str, stream: str) -> builtins.list[LabRecord]: ...

    def streams(self, model: str) -> builtins.list[str]: ...

    def lab_counts(self, model: str) -> dict[str, int]:
        """Changes per stream (results stored, results voided): a count that moved means the
        bias did too."""
        ...

    def void(
        self, model: str, stream: str, sample_time: float, *, by: str, reason: str, at: float
    ) -> VoidRecord:
        """Move a stored result out of the stream's history into the audit trail, durably;
        ``LabResultNotFoundError`` (404) if none is stored."""
        ...

    def voids(self, model: str | None = None, limit: int = 100) -> builtins.list[VoidRecord]:
        """Voided results, the latest void first."""
        ...

    def serialized(
        self, model: str, streams: Sequence[str]
    ) -> contextlib.AbstractContextManager[None]:
        """Held while lab results of these streams are decided and stored: no other
        process decides on them meanwhile (one process needs nothing more than its lock)."""
        ...


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.strip("/"):
        raise ValueError(f"state_url: expected sqlite:///path/to/file, got {url!r}")
    return Path(parts.path[1:])


def open_store(url: str, *, pool_size: int = 8, timeout_s: float = 2.0) -> StateStore:
    """The engine ``url`` names, opened (schema created or migrated)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from service.lab.store import LabStore

        return LabStore(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        from service.lab.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size, timeout_s=timeout_s)
    raise ValueError(f"state_url: scheme must be one of {list(SCHEMES)}, got {scheme!r}")


def add_one(
    store: StateStore,
    model: str,
    sample_time: float,
    value: float,
    received: float,
    estimate: float | None = None,
    residual: float | None = None,
    accepted: bool = False,
    reason: str | None = None,
    *,
    stream: str = DEFAULT_STREAM,
) -> bool:
    """Store one lab result durably on either engine: ``add_many``'s one-result case; True
    if new, False if already stored (unchanged)."""
    record = LabRecord(
        model, sample_time, value, received, estimate, residual, accepted, reason, stream
    )
    return store.add_many([record])[0]
