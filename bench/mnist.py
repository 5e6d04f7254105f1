"""MNIST, the paper's second benchmark (benchmark_protocol.md section 3): reading the IDX files
and training the same pruners on 784-300-100-10 with cross-entropy.

The data is only ever read from a local directory (``../shared/datasets/mnist/``): nothing is
downloaded. Files are checked against the directory's ``SHA256SUMS`` before use, so a truncated
or substituted file fails loudly instead of quietly giving other numbers.

    digits = load_digits(Path("../shared/datasets/mnist"))
    metrics, report = run_digits(digits, RunConfig(method="ca", ...))
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.nn import functional as F  # noqa: N812

from service.contracts.arrays import FloatArray
from service.contracts.errors import SoftSensorError
from training.experiment import RunConfig, make_pruner, resolve_network
from training.network import count_dense_parameters
from training.scaling import Standardizer
from training.shrink import shrink
from training.trainer import Trainer, TrainResult, train

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
IDX_UBYTE = 0x08  # the only element type MNIST uses
VALIDATION_ROWS = 5000  # the last 5k training images: early stopping and appraisal only


class MnistError(SoftSensorError):
    """The MNIST directory is missing, incomplete or does not match its checksums."""


def read_idx(path: Path) -> NDArray[np.uint8]:
    """Read a gzip-compressed IDX file of unsigned bytes into an array of its shape.

    IDX: two zero bytes, the element type, the number of dimensions, then one big-endian
    32-bit size per dimension and the elements in row-major order.
    """
    raw = gzip.decompress(path.read_bytes())
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise MnistError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != IDX_UBYTE:
        raise MnistError(f"{path}: element type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise MnistError(f"{path}: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise MnistError(
            f"{path}: header announces {expected} values of shape {shape} "
            f"but the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def verify_directory(directory: Path) -> None:
    """Fail unless the four files are present and, if ``SHA256SUMS`` is there, match it."""
    missing = [name for name in FILES.values() if not (directory / name).is_file()]
    if missing:
        raise MnistError(f"{directory}: MNIST files missing: {', '.join(missing)}")
    sums = directory / "SHA256SUMS"
    if not sums.is_file():
        return
    for line in sums.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        name = name.lstrip("*")
        if name not in FILES.values():
            continue
        actual = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        if actual != digest.lower():
            raise MnistError(f"{directory / name}: SHA-256 {actual} does not match SHA256SUMS")


@dataclass
class Digits:
    """Pixels in [0, 1] (rows of 784) and labels 0-9 for the three parts."""

    x_train: FloatArray
    y_train: NDArray[np.int64]
    x_val: FloatArray
    y_val: NDArray[np.int64]
    x_test: FloatArray
    y_test: NDArray[np.int64]


def load_digits(
    directory: Path, *, validation: int = VALIDATION_ROWS, train_limit: int | None = None
) -> Digits:
    """Verify and read MNIST; the validation part is carved from the end of the training set.

    ``train_limit`` keeps only the first images of the training part (a quick run).
    """
    verify_directory(directory)
    parts = {key: read_idx(directory / name) for key, name in FILES.items()}
    for split in ("train", "test"):
        n_img, n_lab = len(parts[f"{split}_images"]), len(parts[f"{split}_labels"])
        if n_img != n_lab:
            raise MnistError(f"{directory}: {n_img} {split} images but {n_lab} labels")
    n = len(parts["train_labels"])
    if not 0 < validation < n:
        raise MnistError(f"validation rows must be in (0, {n}), got {validation}")

    def pixels(images: NDArray[np.uint8]) -> FloatArray:
        return images.reshape(len(images), -1).astype(np.float64) / 255.0

    def labels(values: NDArray[np.uint8]) -> NDArray[np.int64]:
        return values.astype(np.int64)

    cut = n - validation
    keep = cut if train_limit is None else min(cut, train_limit)
    return Digits(
        x_train=pixels(parts["train_images"][:keep]),
        y_train=labels(parts["train_labels"][:keep]),
        x_val=pixels(parts["train_images"][cut:]),
        y_val=labels(parts["train_labels"][cut:]),
        x_test=pixels(parts["test_images"]),
        y_test=labels(parts["test_labels"]),
    )


class ClassificationTrainer(Trainer):
    """The product's training loop on a classification task: one output (logit) per class,
    cross-entropy on integer labels, which are not scaled; all pixels scaled together.

    Pooled input scaling: pixels share one unit, and per-pixel scaling would blow up pixels
    that are almost always blank in training.
    """

    regression = False

    def _fit_input_scaler(self, x_train: FloatArray) -> Standardizer:
        return pooled_scaler(x_train)

    def _prepare_targets(self, y_train: FloatArray, y_val: FloatArray) -> int:
        self.y_scaler = Standardizer()  # the identity: labels stay labels
        self.y_scaler.mean_, self.y_scaler.scale_ = np.zeros(1), np.ones(1)
        self.yt = torch.as_tensor(np.asarray(y_train).ravel(), dtype=torch.long)
        self.yv = torch.as_tensor(np.asarray(y_val).ravel(), dtype=torch.long)
        self.loss_fn = F.cross_entropy
        return int(max(self.yt.max(), self.yv.max())) + 1


def pooled_scaler(x: FloatArray) -> Standardizer:
    """One mean and spread for every column (a spread of zero maps to 1)."""
    arr = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    scaler = Standardizer()
    std = arr.std()
    scaler.mean_ = np.full(arr.shape[1], arr.mean())
    scaler.scale_ = np.full(arr.shape[1], std if std > 0 else 1.0)
    return scaler


def predict_classes(result: TrainResult, x: FloatArray) -> NDArray[np.int64]:
    """Most likely class per raw pixel row."""
    z = torch.as_tensor(result.x_scaler.transform(x), dtype=torch.float32)
    result.model.eval()
    with torch.no_grad():
        classes = result.model(z).argmax(dim=1).numpy()
    return np.asarray(classes, dtype=np.int64)


def error_rate(result: TrainResult, x: FloatArray, y: NDArray[np.int64]) -> float:
    """Share of misclassified rows."""
    return float(np.mean(predict_classes(result, x) != y))


def run_digits(digits: Digits, cfg: RunConfig) -> tuple[dict[str, Any], TrainResult]:
    """Train one method on MNIST and measure it; the test part is only scored here.

    The trainer is ``ClassificationTrainer``. The metrics carry the same names as a
    regression run's where they mean the same thing (pruning rate, parameters, epochs, best
    validation loss), plus error rates instead of RMSE.
    """
    n_inputs, n_classes = digits.x_train.shape[1], int(digits.y_train.max()) + 1
    network = resolve_network(cfg, n_inputs, n_classes)
    train_cfg = replace(cfg.train, seed=cfg.seed)
    result = train(
        digits.x_train,
        digits.y_train.astype(np.float64),
        digits.x_val,
        digits.y_val.astype(np.float64),
        network,
        make_pruner(cfg),
        train_cfg,
        trainer_class=ClassificationTrainer,
    )
    model = result.model
    rate, per_layer = model.pruning_rate(), model.pruning_rate_per_layer()
    shrunk = shrink(model)
    nonzero, _ = shrunk.count_parameters()
    val_losses = [h.val_loss for h in result.history]
    test_error = error_rate(result, digits.x_test, digits.y_test)
    metrics: dict[str, Any] = {
        "method": cfg.method,
        "seed": cfg.seed,
        "noise": cfg.noise,
        "dataset": "mnist",
        "test_error": test_error,
        "test_accuracy": 1.0 - test_error,
        "val_error": error_rate(result, digits.x_val, digits.y_val),
        "train_error": error_rate(result, digits.x_train, digits.y_train),
        "pruning_rate": rate,
        "pruning_rate_per_layer": per_layer,
        "neurons_removed": [
            width - len(kept)
            for width, kept in zip(network.hidden, shrunk.hidden_kept, strict=True)
        ],
        "inputs_removed": n_inputs - len(shrunk.inputs_kept),
        "params_before": count_dense_parameters([n_inputs, *network.hidden, n_classes]),
        "params_after": nonzero,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch + 1,
        "best_val_loss": val_losses[result.best_epoch],
        "val_loss_auc": float(np.mean(val_losses)),
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": result.train_seconds / max(1, result.epochs_run),
        "pruner": result.pruner_config,
        "network": {"hidden": list(network.hidden), "activation": network.activation},
        "training": asdict(train_cfg),
        "rows": {"train": len(digits.y_train), "validation": len(digits.y_val)},
        "inputs_kept": shrunk.inputs_kept,
    }
    return metrics, result
