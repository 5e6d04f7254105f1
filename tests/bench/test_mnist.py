"""MNIST reading (IDX format, checksums) and the classification path of the trainer."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from bench.mnist import FILES, MnistError, load_digits, read_idx, run_digits, verify_directory
from tests.bench.digits import write_digits, write_idx
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.experiment import RunConfig


def test_read_idx_returns_the_shape_and_bytes_written(tmp_path: Path) -> None:
    """A 3-D image file and a 1-D label file come back with their shape and values."""
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 1, 0], dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "i.gz", images)), images)
    got = read_idx(write_idx(tmp_path / "l.gz", labels))
    assert got.shape == (3,)
    assert got.tolist() == [7, 1, 0]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x05", "not unsigned byte"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x06", "announces 3 values"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path: Path, payload: bytes, message: str) -> None:
    """Wrong magic, element type, header or length fail with a message naming the problem."""
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(MnistError, match=message):
        read_idx(path)


def test_verify_directory_checks_presence_and_sha256(tmp_path: Path) -> None:
    """A missing file and a file that no longer matches SHA256SUMS are both refused."""
    with pytest.raises(MnistError, match="missing"):
        verify_directory(tmp_path)
    directory = write_digits(tmp_path / "mnist", n_train=5010, n_test=20)
    verify_directory(directory)
    write_idx(directory / FILES["test_labels"], np.zeros(20, dtype=np.uint8))
    with pytest.raises(MnistError, match="does not match SHA256SUMS"):
        verify_directory(directory)


def test_load_digits_carves_validation_from_the_end_of_training(tmp_path: Path) -> None:
    """The last 5k training images are validation; pixels are scaled to [0, 1]."""
    directory = write_digits(tmp_path / "mnist", n_train=5100, n_test=30)
    digits = load_digits(directory)
    assert digits.x_train.shape == (100, 784)
    assert digits.x_val.shape == (5000, 784)
    assert digits.x_test.shape == (30, 784)
    assert digits.x_train.min() >= 0.0 and digits.x_train.max() <= 1.0
    assert load_digits(directory, train_limit=40).x_train.shape == (40, 784)


def test_run_digits_learns_and_prunes(tmp_path: Path) -> None:
    """Cross-entropy training on learnable fake digits beats chance by far; CA prunes."""
    digits = load_digits(write_digits(tmp_path / "mnist", n_train=5600, n_test=300))
    cfg = RunConfig(
        method="ca",
        network=NetworkConfig(hidden=(32, 16), activation="relu"),
        train=TrainConfig(
            epochs=8,
            batch_size=64,
            weight_decay=0.0,
            progress=False,
        ),
        ca=CAConfig(tau=0.5, patience=1),
    )
    metrics, result = run_digits(digits, cfg)
    assert metrics["test_error"] < 0.3
    assert metrics["pruning_rate"] > 0.0
    assert metrics["params_before"] == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert result.model.layers[-1].out_features == 10
