"""A version directory published atomically, and the leftovers of crashed writes removed.

A version is written into a ``.``-prefixed temporary directory beside its final place, every
file and the directory are fsynced, and the directory is renamed into place (a directory
rename is atomic): a listing shows no version or a complete one.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from service.contracts.atomic import fsync_dir, make_dirs, write_new_file
from service.contracts.errors import RegistryError, VersionExistsError

TEMP_SUFFIX = ".tmp"  # our version temp dirs and write_atomic's temp files both end so


def remove_stale(name_dir: Path, cutoff: float) -> list[Path]:
    """Remove the leftovers of crashed writes in ``name_dir`` older than ``cutoff``
    (a time stamp): a write in progress elsewhere is younger, and kept."""
    removed = []
    for entry in name_dir.iterdir() if name_dir.is_dir() else ():
        if _is_stale(entry, cutoff):
            _remove(entry)
            removed.append(entry)
    return removed


def publish_dir(final: Path, files: Mapping[str, bytes]) -> None:
    """Write into a temporary sibling, rename it to ``final``, persist the rename."""
    make_dirs(final.parent)
    prefix = f".{final.name}."
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=final.parent))
    try:
        _fill_temp_dir(tmp, files)
        rename_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(final.parent)


def _fill_temp_dir(tmp: Path, files: Mapping[str, bytes]) -> None:
    """Write and fsync every file, then the directory, so the rename publishes data."""
    for file_name, data in files.items():
        write_new_file(tmp / file_name, data)
    tmp.chmod(0o755)  # mkdtemp makes 0700; the service may run as another user
    fsync_dir(tmp)


def rename_into_place(tmp: Path, final: Path) -> None:
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


def _is_stale(entry: Path, cutoff: float) -> bool:
    """A crashed write's leftover: ``.``-prefixed, ``.tmp``-suffixed, old enough."""
    if not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)):
        return False
    try:
        return entry.lstat().st_mtime <= cutoff
    except FileNotFoundError:  # finished or cleaned by someone else meanwhile
        return False


def _remove(entry: Path) -> None:
    """Delete a leftover file or directory tree, tolerating a concurrent cleaner."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
