"""The model registry on disk: immutable versions and an atomically switched champion.

Layout (see ``models/README.md``)::

    <root>/<name>/<version>/{model.onnx, card.json, card.md}
    <root>/<name>/champion          JSON pointer: {"version", "previous", "updated"}

Training writes versions; the service reads them and switches the champion pointer on an
authorized promote or rollback. Everything here is built so that a crash (kill, OOM, power
loss) at any instant leaves either the old state or the new one, never a half:

- a version is written into a ``.``-prefixed temporary directory beside its final place,
  every file and the directory are fsynced, and the directory is renamed into place (a
  directory rename is atomic), so a listing shows no version or a complete one;
- the champion pointer is replaced with :func:`service.contracts.atomic.write_atomic`.

Only the stdlib and pydantic are used: the serving image has no torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.contracts.atomic import write_atomic
from service.contracts.card import ModelCard
from service.contracts.champion import ChampionPointer, parse_pointer
from service.contracts.errors import (
    CorruptModelError,
    InvalidNameError,
    ModelNotFoundError,
    RegistryError,
    VersionExistsError,
)
from service.contracts.history import HISTORY_FILE, ChampionChange, append_change, now, read_changes
from service.contracts.integrity import (
    MODEL_FILE,
    check_card_matches,
    parse_card,
    sha256_file,
)
from service.contracts.names import (
    CHAMPION_FILE,
    NAME_RE,
    RESERVED_VERSIONS,
    VERSION_RE,
    check_file_name,
    check_name,
    check_version,
    new_version_id,
)
from service.contracts.version_dir import publish_dir, remove_stale

__all__ = [  # errors, names and the pointer live in their modules; importable from here too
    "CHAMPION_FILE",
    "MODEL_FILE",
    "ChampionPointer",
    "CorruptModelError",
    "InvalidNameError",
    "ModelNotFoundError",
    "Registry",
    "RegistryError",
    "VersionExistsError",
    "check_name",
    "check_version",
    "new_version_id",
]

CARD_FILE = "card.json"
CARD_MD_FILE = "card.md"
REQUIRED_FILES = (MODEL_FILE, CARD_FILE)
MAX_PREVIOUS = 20
STALE_AFTER = timedelta(minutes=30)
# (name, version) -> why the service could not serve that version, or None: the loader's
# check, passed in so that the registry itself needs no onnxruntime.
LoadCheck = Callable[[str, str], str | None]

_LOCK_FILE = ".lock"
UNKNOWN_ACTOR = "unknown"  # a caller that did not say who it acts for


# --------------------------------------------------------------------------- plain data


@dataclass(frozen=True)
class _VersionEntry:
    """A complete version directory and the time it sorts by."""

    version: str
    created: datetime


# --------------------------------------------------------------------------- helpers


def _as_utc(moment: datetime) -> datetime:
    """Naive and aware datetimes cannot be compared; cards written without a zone are UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --------------------------------------------------------------------------- registry


class Registry:
    """Versions of soft-sensor models under one root directory, and their champions.

    The root comes from the caller (settings live elsewhere); it need not exist until the
    first write. Reading never modifies anything; writing never modifies a stored version.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ paths

    def name_dir(self, name: str) -> Path:
        """``<root>/<name>``, after the name is validated (no traversal possible)."""
        return self.root / check_name(name)

    def _version_path(self, name: str, version: str) -> Path:
        """``<root>/<name>/<version>`` without checking it exists."""
        return self.name_dir(name) / check_version(version)

    def _pointer_path(self, name: str) -> Path:
        return self.name_dir(name) / CHAMPION_FILE

    # ------------------------------------------------------------------ reading

    def names(self) -> list[str]:
        """Model names that have at least one complete version, sorted.

        A directory left behind by a first write that crashed holds only a temporary
        directory; listing it as a model would offer the service something it cannot load.
        """
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            if entry.is_dir() and NAME_RE.fullmatch(entry.name) and self._complete_dirs(entry):
                found.append(entry.name)
        return sorted(found)

    def versions(self, name: str) -> list[str]:
        """Complete versions of ``name``, oldest first (card ``created``, then the id).

        Temporary (``.``-prefixed) directories and incomplete ones are skipped; a version
        whose card cannot be read sorts by its directory's modification time instead, so
        one bad card does not hide the others.
        """
        name_dir = self.name_dir(name)
        entries = [self._entry(name, path) for path in self._complete_dirs(name_dir)]
        return [e.version for e in sorted(entries, key=lambda e: (e.created, e.version))]

    def version_dir(self, name: str, version: str) -> Path:
        """The directory of a stored, complete version.

        Raises :class:`ModelNotFoundError` if it does not exist and
        :class:`CorruptModelError` if a required file is missing.
        """
        path = self._version_path(name, version)
        if not path.is_dir():
            raise ModelNotFoundError(path, f"no version {version!r} of model {name!r}")
        for file_name in REQUIRED_FILES:
            if not (path / file_name).is_file():
                raise CorruptModelError(path, f"incomplete version: {file_name} is missing")
        return path

    def read_card(self, name: str, version: str) -> ModelCard:
        """The version's card, validated by the ModelCard schema."""
        card_path = self.version_dir(name, version) / CARD_FILE
        try:
            data = card_path.read_bytes()
        except OSError as exc:
            raise CorruptModelError(card_path, f"cannot read card: {exc.strerror}") from exc
        return parse_card(data, card_path)

    def verify(self, name: str, version: str) -> ModelCard:
        """Check a version before serving it: valid card, matching ids, matching sha256.

        The sha256 check is what makes the bytes onnxruntime loads the bytes the card
        describes (and the metrics were measured on).
        """
        card = self.read_card(name, version)
        directory = self.version_dir(name, version)
        model_path = directory / MODEL_FILE
        try:
            sha256 = sha256_file(model_path)
        except OSError as exc:
            raise CorruptModelError(model_path, f"cannot read model: {exc.strerror}") from exc
        check_card_matches(card, name, version, sha256, directory)
        return card

    def pointer(self, name: str) -> ChampionPointer | None:
        """The champion pointer with its history, or None if no champion was ever set."""
        path = self._pointer_path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(path, f"cannot read champion pointer: {exc}") from exc
        return parse_pointer(text, path)

    def champion(self, name: str) -> str | None:
        """The version the service should serve, or None if no champion was set.

        The pointer is returned as written; loading it still goes through :meth:`verify`.
        """
        current = self.pointer(name)
        return None if current is None else current.version

    # ------------------------------------------------------------------ writing

    def write_version(self, name: str, version: str, files: Mapping[str, bytes]) -> Path:
        """Store a new version atomically and return its directory.

        ``files`` maps file names to contents and must hold ``model.onnx`` and a
        ``card.json`` whose name, version and sha256 match, because a stored version can
        never be fixed afterwards. Raises :class:`VersionExistsError` if the version is
        already there (nothing is overwritten), :class:`CorruptModelError` for bad content.
        Temporary entries that crashed writes of this name left (older than
        :data:`STALE_AFTER`) are removed first, so they cannot pile up over retrainings.
        """
        final = self._version_path(name, version)
        self._check_files(name, version, files, final)
        if final.exists():
            raise VersionExistsError(final, "version already exists; versions are immutable")
        try:
            remove_stale(final.parent, time.time() - STALE_AFTER.total_seconds())
            publish_dir(final, files)
        except OSError as exc:  # disk full, permissions: still one error family for the service
            raise RegistryError(final, f"cannot write version: {exc}") from exc
        return final

    def history(self, name: str) -> list[ChampionChange]:
        """Every promote and rollback of ``name`` recorded, oldest first, with who and why."""
        return read_changes(self.name_dir(name) / HISTORY_FILE)

    def _record(
        self,
        name: str,
        action: str,
        version: str,
        before: ChampionPointer | None,
        by: str,
        reason: str | None,
    ) -> None:
        """Append the change to the history, under the model's lock, once the pointer moved
        (a crash between the two leaves a change unrecorded, never a record of none)."""
        previous = None if before is None else before.version
        change = ChampionChange(now(), action, version, previous, by, reason)
        path = self.name_dir(name) / HISTORY_FILE
        try:
            append_change(path, change)
        except OSError as exc:
            raise RegistryError(path, f"cannot record the champion change: {exc}") from exc

    def promote(
        self,
        name: str,
        version: str,
        check: LoadCheck | None = None,
        *,
        by: str = UNKNOWN_ACTOR,
        reason: str | None = None,
    ) -> ChampionPointer:
        """Make ``version`` the champion; the current one goes on top of ``previous``.

        The version must exist and verify (a champion the service would refuse is no
        champion), and pass ``check`` when given: the service's loader, so that a version
        onnxruntime cannot load or score is refused (409) before the pointer moves, rather
        than found out at the next restart. Promoting the current champion changes nothing.
        The history is bounded to :data:`MAX_PREVIOUS` entries and holds each version once.
        The change is recorded in the model's champion history (``service.contracts.history``)
        with ``by`` (who) and ``reason`` (why).
        """
        self.verify(name, version)
        with self._locked(name):
            current = self.pointer(name)
            if current is not None and current.version == version:
                return current
            problem = None if check is None else check(name, version)
            if problem is not None:
                raise RegistryError(
                    self._version_path(name, version),
                    f"version {version} of {name!r} was not promoted: {problem}",
                    status=409,
                )
            history = [] if current is None else [current.version, *current.previous]
            previous = tuple(v for v in dict.fromkeys(history) if v != version)
            pointer = self._write_pointer(name, version, previous[:MAX_PREVIOUS])
            self._record(name, "promote", version, current, by, reason)
            return pointer

    def rollback(
        self,
        name: str,
        check: LoadCheck | None = None,
        *,
        by: str = UNKNOWN_ACTOR,
        reason: str | None = None,
    ) -> str:
        """Switch back to the most recent previous version that still exists, verifies and
        passes ``check`` (see :meth:`promote`).

        Versions skipped on the way (deleted or corrupt) and the champion rolled back from
        leave the history, so a second rollback goes further back rather than forth.
        Raises :class:`ModelNotFoundError` without a champion, and a 409
        :class:`RegistryError` when no previous version is usable.
        """
        with self._locked(name):
            current = self.pointer(name)
            if current is None:
                raise ModelNotFoundError(
                    self._pointer_path(name), f"model {name!r} has no champion to roll back"
                )
            for index, candidate in enumerate(current.previous):
                if self._usable(name, candidate) and (
                    check is None or check(name, candidate) is None
                ):
                    self._write_pointer(name, candidate, current.previous[index + 1 :])
                    self._record(name, "rollback", candidate, current, by, reason)
                    return candidate
            raise RegistryError(
                self._pointer_path(name),
                f"no previous version of {name!r} left to roll back to "
                f"(tried {list(current.previous)})",
                status=409,
            )

    # ------------------------------------------------------------------ internals

    def _complete_dirs(self, name_dir: Path) -> list[Path]:
        """Version directories holding every required file; temp and stray entries skipped."""
        if not name_dir.is_dir():
            return []
        return [
            entry
            for entry in name_dir.iterdir()
            if VERSION_RE.fullmatch(entry.name)
            and entry.name not in RESERVED_VERSIONS
            and entry.is_dir()
            and all((entry / f).is_file() for f in REQUIRED_FILES)
        ]

    def _entry(self, name: str, path: Path) -> _VersionEntry:
        """Sort key of one version: its card's ``created``, or the directory mtime."""
        try:
            created = _as_utc(self.read_card(name, path.name).created)
        except RegistryError:
            created = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        return _VersionEntry(path.name, created)

    def _usable(self, name: str, version: str) -> bool:
        """Whether a rollback may land on ``version``: it exists and verifies."""
        try:
            self.verify(name, version)
        except (ModelNotFoundError, CorruptModelError):
            return False
        return True

    @staticmethod
    def _check_files(name: str, version: str, files: Mapping[str, bytes], final: Path) -> None:
        """Refuse a version that could never be served, before anything touches the disk."""
        for file_name in files:
            check_file_name(file_name)
        missing = [f for f in REQUIRED_FILES if f not in files]
        if missing:
            raise CorruptModelError(
                final, f"a version needs {list(REQUIRED_FILES)}; missing {missing}"
            )
        card = parse_card(files[CARD_FILE], final / CARD_FILE)
        sha256 = hashlib.sha256(files[MODEL_FILE]).hexdigest()
        check_card_matches(card, name, version, sha256, final)

    def _write_pointer(self, name: str, version: str, previous: tuple[str, ...]) -> ChampionPointer:
        """Replace the pointer atomically: a crash leaves the old champion or the new one."""
        new = ChampionPointer(
            version=version, previous=previous, updated=datetime.now(UTC).replace(microsecond=0)
        )
        path = self._pointer_path(name)
        try:
            write_atomic(path, new.to_json())
        except OSError as exc:
            raise RegistryError(path, f"cannot write champion pointer: {exc}") from exc
        return new

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Serialize read-modify-write of one pointer between processes on this host.

        Without it two concurrent promotes could each drop the other from ``previous``.
        """
        name_dir = self.name_dir(name)
        if not name_dir.is_dir():
            raise ModelNotFoundError(name_dir, f"no model {name!r}")
        fd = os.open(name_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
