"""The PostgreSQL schema, one numbered SQL file per version (``0001_*.sql``, ...).

A file is applied once, in its own transaction with the ``schema_version`` row that records
it, so a database is always at one version of this list; a database newer than the list
(a newer service wrote it) is refused, never downgraded.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """``(version, file name, SQL)`` of every migration, oldest first; numbered 1, 2, ...."""
    found = []
    for entry in resources.files(__name__).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [v for v, _, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, got {numbers}")
    return found
