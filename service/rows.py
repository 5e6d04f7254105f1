"""From what a historian sends to the rows a model scores, with per-row quality flags.

Lagged features are built by ``service.features.assemble_rows``, the same function training
used, over the stream's remembered history followed by the request's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from service.features import assemble_rows, derive_signals
from service.runtime import LoadedModel

Floats = NDArray[np.float64]


@dataclass
class Series:
    """Time-ordered raw signal values; NaN marks a value not sent (null)."""

    times: Floats  # POSIX seconds
    values: dict[str, Floats]

    def __len__(self) -> int:
        return len(self.times)

    def tail(self, n: int) -> Series:
        if n <= 0:
            return Series(self.times[:0], {k: v[:0] for k, v in self.values.items()})
        return Series(self.times[-n:], {k: v[-n:] for k, v in self.values.items()})


@dataclass
class Assembled:
    """Feature rows for the request's records, in order, and what is doubtful about each."""

    x: Floats
    missing_history: NDArray[np.bool_]
    imputed: list[list[str]] = field(default_factory=list)
    out_of_range: list[list[str]] = field(default_factory=list)
    filled: Series | None = None  # the request's values after imputation (for the stream)


def _concat(history: Series | None, batch: Series, names: tuple[str, ...]) -> Series:
    if history is None or len(history) == 0:
        return batch
    return Series(
        np.concatenate([history.times, batch.times]),
        {n: np.concatenate([history.values[n], batch.values[n]]) for n in names},
    )


def _forward_fill(values: Floats, fallback: float) -> Floats:
    """Carry the last seen value over NaN; before any value, use the fallback."""
    out = values.copy()
    bad = np.isnan(out)
    if not bad.any():
        return out
    idx = np.where(~bad, np.arange(len(out)), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, out[np.maximum(idx, 0)], fallback)
    return out


def assemble(model: LoadedModel, batch: Series, history: Series | None) -> Assembled:
    """Rows for every record of ``batch``; history supplies the lags of the first ones.

    A missing value is carried forward from the last one seen (flag ``imputed``); a row whose
    lags reach before the first known sample repeats the oldest one (flag
    ``missing_history``). Values outside the card's valid range are flagged, not changed.
    """
    n = len(batch)
    names = model.raw_signals
    series = _concat(history, batch, names)
    filled = {s: _forward_fill(series.values[s], model.fallback(s)) for s in names}
    pad = max(0, model.history + n - len(series))
    if pad:
        filled = {s: np.concatenate([np.full(pad, v[0]), v]) for s, v in filled.items()}
    signals = derive_signals(filled, model.derived)
    x = assemble_rows(signals, model.features)[-n:]
    missing = np.arange(n) < pad  # row i reaches back to i - history < 0 real samples
    raw = {s: batch.values[s] for s in names}
    imputed = [[s for s in names if np.isnan(raw[s][i])] for i in range(n)]
    out_of_range = []
    for i in range(n):
        row = []
        for s in names:
            v = raw[s][i]
            low, high = model.valid_range(s)
            if not np.isnan(v) and not low <= v <= high:
                row.append(s)
        out_of_range.append(row)
    tail = Series(batch.times, {s: filled[s][-n:] for s in names})
    return Assembled(x, missing, imputed, out_of_range, tail)
