"""A historian export's bytes, as pandas reads them: compressed by its name's extension.

Exports travel compressed (``unit7.csv.gz``, a ``.zip`` of one CSV); pandas reads those by
the extension, and every other read of the file here (its layout, its encoding, the line
of a bad cell) must see the same text, not the compressed bytes. A file that is no text at
all, such as an Excel workbook, is refused by what it is rather than parsed into nonsense.
A Parquet file keeps its time index (pandas writes a frame indexed by time so) as a column.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
from pathlib import Path
from typing import IO, Any, cast

import pandas as pd

from training.errors import DataError

# Binary formats people export instead of text, told by their first bytes.
DECOMPRESS: dict[str, Any] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
SAVE_AS_CSV = "save the sheet as CSV (UTF-8) and train on that"
MAGIC = {
    b"PK\x03\x04": ("a ZIP archive (an Excel .xlsx workbook?)", SAVE_AS_CSV),
    b"\xd0\xcf\x11\xe0": ("an Excel 97-2003 workbook (.xls)", SAVE_AS_CSV),
    b"PAR1": ("a Parquet file", "set source.format: parquet"),
}


def open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed as its extension says (.gz, .bz2, .xz, .zip of one
    file), as pandas' ``compression="infer"`` reads it."""
    suffix = path.suffix.lower()
    opener = DECOMPRESS.get(suffix)
    if opener is not None:  # each is a binary file object; typeshed types them apart
        return cast(IO[bytes], opener(path, "rb"))
    if suffix == ".zip":
        archive = zipfile.ZipFile(path)
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if len(names) != 1:
            archive.close()
            raise DataError(path, f"is a ZIP archive of {len(names)} files: it must hold one")
        return archive.open(names[0])
    return path.open("rb")


def open_text(path: Path, encoding: str) -> IO[str]:
    """The file as text lines, undecodable bytes replaced (for layout and line numbers)."""
    return io.TextIOWrapper(open_bytes(path), encoding=encoding, errors="replace")


def read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file's columns, its index among them when it holds data (a time index, as
    pandas writes a frame indexed by time): only a plain row count is dropped."""
    frame = pd.read_parquet(path)
    if isinstance(frame.index, pd.RangeIndex) and frame.index.name is None:
        return frame
    return frame.reset_index()


def refuse_binary(path: Path) -> None:
    """Stop with what the file is when its (decompressed) bytes are a binary format."""
    try:
        with open_bytes(path) as fh:
            head = fh.read(8)
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise DataError(path, f"cannot be read as its extension says: {exc}") from exc
    for magic, (what, remedy) in MAGIC.items():
        if head.startswith(magic):
            raise DataError(path, f"is {what}, not text: {remedy}")
