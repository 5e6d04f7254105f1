"""The champion pointer: ``<root>/<name>/champion``, the served version and the ones before it.

Written atomically by the registry (``service.contracts.registry``); read here, with every
malformed field refused with the file named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from service.contracts.errors import RegistryError
from service.contracts.names import RESERVED_VERSIONS, VERSION_RE


@dataclass(frozen=True)
class ChampionPointer:
    """What ``<root>/<name>/champion`` holds: the served version and the ones before it."""

    version: str
    previous: tuple[str, ...] = ()
    updated: datetime | None = None

    def to_json(self) -> str:
        """The file's content: small, readable JSON, newest previous version first."""
        payload: dict[str, Any] = {
            "version": self.version,
            "previous": list(self.previous),
            "updated": None if self.updated is None else self.updated.isoformat(),
        }
        return json.dumps(payload, indent=2) + "\n"


def parse_pointer(text: str, path: Path) -> ChampionPointer:
    """Read the champion JSON; a bare version id (a hand-written text file) is accepted too."""
    stripped = text.strip()
    if VERSION_RE.fullmatch(stripped) and stripped not in RESERVED_VERSIONS:
        return ChampionPointer(version=stripped)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(path, f"champion pointer is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise RegistryError(path, "champion pointer must be a JSON object with 'version'")
    return ChampionPointer(
        version=_pointer_version(raw.get("version"), "version", path),
        previous=_pointer_previous(raw.get("previous", []), path),
        updated=_pointer_updated(raw.get("updated"), path),
    )


def _pointer_version(value: object, where: str, path: Path) -> str:
    """One version id from the pointer, refused with the file named if malformed."""
    if not isinstance(value, str) or not VERSION_RE.fullmatch(value):
        raise RegistryError(path, f"champion pointer {where} is not a valid version: {value!r}")
    return value


def _pointer_previous(value: object, path: Path) -> tuple[str, ...]:
    """The history list; each entry must be a valid version id."""
    if not isinstance(value, list):
        raise RegistryError(path, f"champion pointer 'previous' must be a list, got {value!r}")
    return tuple(_pointer_version(v, f"previous[{i}]", path) for i, v in enumerate(value))


def _pointer_updated(value: object, path: Path) -> datetime | None:
    """The time of the last switch, informative only, but it must parse if present."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RegistryError(path, f"champion pointer 'updated' must be a string, got {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise RegistryError(path, f"champion pointer 'updated' is not ISO 8601: {value!r}") from exc
