"""From what a historian sends to the rows a model scores, with per-row quality flags.

Lagged features are built by ``service.features.FeaturePlan``, the same code training used,
over the stream's remembered history followed by the request's rows. Everything is a matrix
operation over the model's raw signals, so one row costs little more than a thousand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.runtime import LoadedModel

Floats = NDArray[np.float64]


@dataclass
class Series:
    """Time-ordered raw signal values [T, S] (columns = the model's raw signals).

    NaN marks a value not sent (null).
    """

    times: Floats  # POSIX seconds
    values: Floats

    def __len__(self) -> int:
        return len(self.times)

    def tail(self, n: int) -> Series:
        n = max(n, 0)
        return Series(self.times[len(self.times) - n :], self.values[len(self.values) - n :])


@dataclass
class Assembled:
    """Feature rows for the request's records, in order, and what is doubtful about each."""

    x: Floats
    padded: int  # the first rows, whose lags reach back before the first real sample
    imputed: NDArray[np.bool_]  # [n, S]: value not sent, carried forward
    out_of_range: NDArray[np.bool_]  # [n, S]: value outside the signal's valid range
    filled: Series  # the request's rows after imputation (what the stream remembers)

    @property
    def missing_history(self) -> NDArray[np.bool_]:
        """Per row: its lags were filled with invented history (the first ``padded`` rows)."""
        return np.arange(len(self.x)) < self.padded


def forward_fill(values: Floats, fallbacks: Floats, bad: NDArray[np.bool_] | None = None) -> Floats:
    """Carry each column's last seen value over NaN; before any value, use its fallback.

    ``bad`` is ``isnan(values)`` when the caller has it already.
    """
    bad = np.isnan(values) if bad is None else bad
    if not bad.any():
        return values
    idx = np.where(bad, -1, np.arange(len(values))[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    filled = values[np.maximum(idx, 0), np.arange(values.shape[1])[None, :]]
    return np.where(idx >= 0, filled, fallbacks[None, :])


def assemble(model: LoadedModel, batch: Series, history: Series | None) -> Assembled:
    """Rows for every record of ``batch``; history supplies the lags of the first ones.

    A missing value is carried forward from the last one seen (flag ``imputed``); a row whose
    lags reach before the first known sample repeats the oldest one (flag
    ``missing_history``). Values outside the card's valid range are flagged, not changed.
    """
    n = len(batch)
    raw = batch.values
    imputed = np.isnan(raw)
    if history is not None and len(history):  # remembered rows are filled already
        filled = forward_fill(np.vstack([history.values, raw]), model.fallbacks)
    else:
        filled = forward_fill(raw, model.fallbacks, imputed)
    pad = max(0, model.history + n - len(filled))
    if len(filled) == 1:  # a lone sample: every lag is the sample itself
        x = model.plan.assemble_steady(filled)
    else:
        padded = np.vstack([np.repeat(filled[:1], pad, axis=0), filled]) if pad else filled
        x = model.plan.assemble(padded)[-n:]
    outside = (raw < model.low) | (raw > model.high)  # NaN compares False, silently
    return Assembled(
        x=x,
        padded=min(pad, n),
        imputed=imputed,
        out_of_range=outside,
        filled=Series(batch.times, filled[-n:]),
    )
