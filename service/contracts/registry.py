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
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.contracts.atomic import fsync_dir, write_atomic
from service.contracts.card import ModelCard
from service.contracts.errors import (
    CorruptModelError,
    InvalidNameError,
    ModelNotFoundError,
    RegistryError,
    VersionExistsError,
)

__all__ = [  # the registry's errors live with the others; importable from here as well
    "CorruptModelError",
    "InvalidNameError",
    "ModelNotFoundError",
    "Registry",
    "RegistryError",
    "VersionExistsError",
]

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
CARD_MD_FILE = "card.md"
CHAMPION_FILE = "champion"
REQUIRED_FILES = (MODEL_FILE, CARD_FILE)
MAX_PREVIOUS = 20
STALE_AFTER = timedelta(minutes=30)
# (name, version) -> why the service could not serve that version, or None: the loader's
# check, passed in so that the registry itself needs no onnxruntime.
LoadCheck = Callable[[str, str], str | None]

# The same patterns as ModelCard.name / ModelCard.version: a first character that is not
# "." and no "/" make path traversal impossible and keep temporary entries out of listings.
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RESERVED_VERSIONS = frozenset({CHAMPION_FILE})  # would collide with the pointer file
_TEMP_SUFFIX = ".tmp"  # our version temp dirs and write_atomic's temp files both end so
_LOCK_FILE = ".lock"
_HASH_CHUNK = 1 << 20


# --------------------------------------------------------------------------- plain data


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


@dataclass(frozen=True)
class _VersionEntry:
    """A complete version directory and the time it sorts by."""

    version: str
    created: datetime


# --------------------------------------------------------------------------- helpers


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
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            None, f"invalid model name {name!r}: expected {_NAME_RE.pattern} (lower case)"
        )
    return name


def check_version(version: str) -> str:
    """Return ``version`` if it is a valid version id, else raise :class:`InvalidNameError`."""
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise InvalidNameError(None, f"invalid version {version!r}: expected {_VERSION_RE.pattern}")
    if version in _RESERVED_VERSIONS:
        raise InvalidNameError(None, f"version {version!r} is reserved (it names the pointer)")
    return version


def _check_file_name(file_name: str) -> str:
    """Files of a version are plain names inside it: no sub-directories, no hidden files."""
    if not isinstance(file_name, str) or not _FILE_RE.fullmatch(file_name):
        raise InvalidNameError(
            None, f"invalid file name {file_name!r}: expected {_FILE_RE.pattern}"
        )
    return file_name


def _sha256_file(path: Path) -> str:
    """Hash in chunks: a model may be larger than we want in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _as_utc(moment: datetime) -> datetime:
    """Naive and aware datetimes cannot be compared; cards written without a zone are UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _describe_validation(exc: ValidationError) -> str:
    """A one-line summary of the first few pydantic errors, field path first."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _parse_card(data: bytes | str, path: Path) -> ModelCard:
    """Validate card JSON into a ModelCard, or say which field is wrong and where."""
    try:
        return ModelCard.model_validate_json(data)
    except ValidationError as exc:
        raise CorruptModelError(
            path, f"not a valid model card: {_describe_validation(exc)}"
        ) from exc


def _check_card_matches(card: ModelCard, name: str, version: str, sha256: str, path: Path) -> None:
    """A card must describe the directory it sits in and the exact bytes beside it."""
    if card.name != name:
        raise CorruptModelError(path, f"card names model {card.name!r}, directory is {name!r}")
    if card.version != version:
        raise CorruptModelError(
            path, f"card names version {card.version!r}, directory is {version!r}"
        )
    if card.onnx_sha256 != sha256:
        raise CorruptModelError(
            path,
            f"sha256 of {MODEL_FILE} is {sha256}, card says {card.onnx_sha256}",
        )


def _write_new_file(path: Path, data: bytes) -> None:
    """Create (never replace) a read-only file and fsync it before the directory is renamed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and missing parents, fsyncing each parent that gained an entry."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
            path.mkdir()
        fsync_dir(path.parent)


def _parse_pointer(text: str, path: Path) -> ChampionPointer:
    """Read the champion JSON; a bare version id (a hand-written text file) is accepted too."""
    stripped = text.strip()
    if _VERSION_RE.fullmatch(stripped) and stripped not in _RESERVED_VERSIONS:
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
    if not isinstance(value, str) or not _VERSION_RE.fullmatch(value):
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
            if entry.is_dir() and _NAME_RE.fullmatch(entry.name) and self._complete_dirs(entry):
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
        return _parse_card(data, card_path)

    def verify(self, name: str, version: str) -> ModelCard:
        """Check a version before serving it: valid card, matching ids, matching sha256.

        The sha256 check is what makes the bytes onnxruntime loads the bytes the card
        describes (and the metrics were measured on).
        """
        card = self.read_card(name, version)
        directory = self.version_dir(name, version)
        model_path = directory / MODEL_FILE
        try:
            sha256 = _sha256_file(model_path)
        except OSError as exc:
            raise CorruptModelError(model_path, f"cannot read model: {exc.strerror}") from exc
        _check_card_matches(card, name, version, sha256, directory)
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
        return _parse_pointer(text, path)

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
            self._clean_name_dir(final.parent, time.time() - STALE_AFTER.total_seconds())
            self._publish(final, files)
        except OSError as exc:  # disk full, permissions: still one error family for the service
            raise RegistryError(final, f"cannot write version: {exc}") from exc
        return final

    def promote(self, name: str, version: str, check: LoadCheck | None = None) -> ChampionPointer:
        """Make ``version`` the champion; the current one goes on top of ``previous``.

        The version must exist and verify (a champion the service would refuse is no
        champion), and pass ``check`` when given: the service's loader, so that a version
        onnxruntime cannot load or score is refused (409) before the pointer moves, rather
        than found out at the next restart. Promoting the current champion changes nothing.
        The history is bounded to :data:`MAX_PREVIOUS` entries and holds each version once.
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
            return self._write_pointer(name, version, previous[:MAX_PREVIOUS])

    def rollback(self, name: str, check: LoadCheck | None = None) -> str:
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
                    return candidate
            raise RegistryError(
                self._pointer_path(name),
                f"no previous version of {name!r} left to roll back to "
                f"(tried {list(current.previous)})",
                status=409,
            )

    def _clean_name_dir(self, name_dir: Path, cutoff: float) -> list[Path]:
        removed = []
        for entry in name_dir.iterdir() if name_dir.is_dir() else ():
            if self._is_stale(entry, cutoff):
                self._remove(entry)
                removed.append(entry)
        return removed

    # ------------------------------------------------------------------ internals

    def _complete_dirs(self, name_dir: Path) -> list[Path]:
        """Version directories holding every required file; temp and stray entries skipped."""
        if not name_dir.is_dir():
            return []
        return [
            entry
            for entry in name_dir.iterdir()
            if _VERSION_RE.fullmatch(entry.name)
            and entry.name not in _RESERVED_VERSIONS
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
            _check_file_name(file_name)
        missing = [f for f in REQUIRED_FILES if f not in files]
        if missing:
            raise CorruptModelError(
                final, f"a version needs {list(REQUIRED_FILES)}; missing {missing}"
            )
        card = _parse_card(files[CARD_FILE], final / CARD_FILE)
        sha256 = hashlib.sha256(files[MODEL_FILE]).hexdigest()
        _check_card_matches(card, name, version, sha256, final)

    @classmethod
    def _publish(cls, final: Path, files: Mapping[str, bytes]) -> None:
        """Write into a temporary sibling, rename it to ``final``, persist the rename."""
        _make_dirs(final.parent)
        prefix = f".{final.name}."
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=_TEMP_SUFFIX, dir=final.parent))
        try:
            cls._fill_temp_dir(tmp, files)
            cls._rename_into_place(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(final.parent)

    @staticmethod
    def _fill_temp_dir(tmp: Path, files: Mapping[str, bytes]) -> None:
        """Write and fsync every file, then the directory, so the rename publishes data."""
        for file_name, data in files.items():
            _write_new_file(tmp / file_name, data)
        tmp.chmod(0o755)  # mkdtemp makes 0700; the service may run as another user
        fsync_dir(tmp)

    @staticmethod
    def _rename_into_place(tmp: Path, final: Path) -> None:
        """Atomic publish. A concurrent writer of the same id makes the rename fail.

        (Linux would let a rename replace an *empty* directory; an empty directory holds no
        version, so nothing stored can be lost that way.)
        """
        try:
            tmp.rename(final)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise VersionExistsError(
                    final, "version already exists; versions are immutable"
                ) from exc
            raise RegistryError(final, f"cannot rename {tmp.name} into place: {exc}") from exc

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

    @staticmethod
    def _is_stale(entry: Path, cutoff: float) -> bool:
        """A crashed write's leftover: ``.``-prefixed, ``.tmp``-suffixed, old enough."""
        if not (entry.name.startswith(".") and entry.name.endswith(_TEMP_SUFFIX)):
            return False
        try:
            return entry.lstat().st_mtime <= cutoff
        except FileNotFoundError:  # finished or cleaned by someone else meanwhile
            return False

    @staticmethod
    def _remove(entry: Path) -> None:
        """Delete a leftover file or directory tree, tolerating a concurrent cleaner."""
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
