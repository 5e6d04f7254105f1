"""The champion history: ``<root>/<name>/history``, one JSON line per champion change.

Every promote and rollback, whether the service made it (an admin token's name) or the
command line did (its user), is appended here with who made it and why, under the registry's
lock of that model and fsynced before the call returns. The champion pointer says what is
served now; this file says how it got there, for ``softsensor models show`` and the service's
audit trail. A line a crash cut short (the last one) is skipped, never fatal.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from service.contracts.names import HISTORY_FILE

__all__ = ["HISTORY_FILE", "ChampionChange", "append_change", "command_user", "read_changes"]
log = logging.getLogger("softsensor")


def command_user() -> str:
    """Who runs a command that moves a champion, for the history (a container may have no
    user name)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


@dataclass(frozen=True)
class ChampionChange:
    """One promote or rollback: the champion after it, the one before, who and why."""

    time: datetime
    action: str  # "promote" | "rollback"
    version: str
    previous: str | None
    by: str
    reason: str | None

    def to_line(self) -> str:
        payload = asdict(self) | {"time": self.time.isoformat()}
        return json.dumps(payload, sort_keys=True) + "\n"


def append_change(path: Path, change: ChampionChange) -> None:
    """Append one line and fsync it (the caller holds the model's registry lock)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, change.to_line().encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_changes(path: Path) -> list[ChampionChange]:
    """Every recorded change, oldest first; none if the file is absent."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for number, line in enumerate(lines, 1):
        try:
            raw = json.loads(line)
            raw["time"] = datetime.fromisoformat(raw["time"])
            out.append(ChampionChange(**raw))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s line %d skipped: %s", path, number, exc)
    return out


def now() -> datetime:
    return datetime.now(UTC)
