"""Tiny MNIST look-alikes in the real IDX .gz format, written by the tests themselves."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench.mnist import FILES


def write_idx(path: Path, array: NDArray[np.uint8]) -> Path:
    """IDX: 0, 0, type 0x08 (unsigned byte), ndim, big-endian sizes, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    return path


def write_digits(directory: Path, n_train: int = 5600, n_test: int = 300, seed: int = 0) -> Path:
    """Learnable fake digits: class k lights a 4x4 block at a class-specific spot, plus noise.

    Also writes SHA256SUMS, as the real directory has.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)

    def images(n: int) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        pix = rng.integers(0, 60, size=(n, 28, 28))
        for i, k in enumerate(labels):
            r, c = 2 + 2 * int(k), 4 + 2 * int(k)
            pix[i, r : r + 4, c : c + 4] = 255
        return pix.astype(np.uint8), labels

    x_train, y_train = images(n_train)
    x_test, y_test = images(n_test)
    arrays = {
        "train_images": x_train,
        "train_labels": y_train,
        "test_images": x_test,
        "test_labels": y_test,
    }
    lines = []
    for key, name in FILES.items():
        path = write_idx(directory / name, arrays[key])
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}")
    (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory
