"""Names in the model registry: model names, version ids and file names, and their checks.

The patterns are ModelCard.name's and ModelCard.version's: a first character that is not
"." and no "/" make path traversal impossible and keep temporary entries out of listings.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from service.contracts.errors import InvalidNameError

CHAMPION_FILE = "champion"  # the pointer file beside the versions of a model
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HISTORY_FILE = "history"  # the champion history beside the pointer
RESERVED_VERSIONS = frozenset({CHAMPION_FILE, HISTORY_FILE})  # would collide with those files


def new_version_id(now: datetime | None = None, suffix: str | None = None) -> str:
    """A version id that sorts by time: ``20261126T120000Z`` or ``20261126T120000Z-3f2a9c1``.

    UTC and second resolution keep ids readable and lexicographically ordered; the optional
    ``suffix`` (e.g. the first 7 hex digits of the model's sha256) tells apart two versions
    written in the same second. A naive ``now`` is taken to be UTC.
    """
    moment = datetime.now(UTC) if now is None else now
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    version = stamp if suffix is None else f"{stamp}-{suffix}"
    return check_version(version)


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidNameError(
            None, f"invalid model name {name!r}: expected {NAME_RE.pattern} (lower case)"
        )
    return name


def check_version(version: str) -> str:
    """Return ``version`` if it is a valid version id, else raise :class:`InvalidNameError`."""
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise InvalidNameError(None, f"invalid version {version!r}: expected {VERSION_RE.pattern}")
    if version in RESERVED_VERSIONS:
        raise InvalidNameError(
            None, f"version {version!r} is reserved (it names the champion pointer or history)"
        )
    return version


def check_file_name(file_name: str) -> str:
    """Files of a version are plain names inside it: no sub-directories, no hidden files."""
    if not isinstance(file_name, str) or not FILE_RE.fullmatch(file_name):
        raise InvalidNameError(None, f"invalid file name {file_name!r}: expected {FILE_RE.pattern}")
    return file_name
