"""From what a historian sends to the rows a model scores, with per-row quality flags.

Lagged features are built by ``service.contracts.features.FeaturePlan``, the same code training
used, over the stream's remembered history followed by the request's rows. Everything is a
matrix operation over the model's raw signals, so one row costs little more than a thousand, and
the requests that arrive together are assembled in one pass (``assemble_many``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray
from service.contracts.features import BULK_VALUES, gap_breaks
from service.scoring.runtime import LoadedModel


@dataclass
class Series:
    """Time-ordered raw signal values [T, S] (columns = the model's raw signals).

    NaN marks a value not sent (null).
    """

    times: FloatArray  # POSIX seconds
    values: FloatArray

    def __len__(self) -> int:
        return len(self.times)

    def tail(self, n: int) -> Series:
        """The newest ``n`` rows, or all of them when there are fewer."""
        start = max(len(self.times) - max(n, 0), 0)  # never negative: that would count from the end
        return Series(self.times[start:], self.values[start:])


@dataclass
class Assembled:
    """Feature rows for the request's records, in order, and what is doubtful about each."""

    x: FloatArray
    padded: int  # the first rows, whose lags reach back before the first real sample
    imputed: NDArray[np.bool_]  # [n, S]: value not sent, carried forward
    out_of_range: NDArray[np.bool_]  # [n, S]: value outside the signal's valid range
    filled: Series  # the request's rows after imputation (what the stream remembers)
    # per row: its lags would reach back over a gap in time inside the request (None: none)
    after_gap: NDArray[np.bool_] | None = None

    @property
    def missing_history(self) -> NDArray[np.bool_]:
        """Per row: its lags were filled with invented history (the first ``padded`` rows,
        and the first rows after a gap in time)."""
        first = np.arange(len(self.x)) < self.padded
        return first if self.after_gap is None else first | self.after_gap

    def with_history(self, estimate: FloatArray) -> tuple[FloatArray, FloatArray] | None:
        """The feature rows whose lags are all real samples, with their ``estimate``; None
        when no row's are."""
        if self.after_gap is None:
            pad = self.padded
            return None if pad >= len(estimate) else (self.x[pad:], estimate[pad:])
        real = ~self.missing_history
        return (self.x[real], estimate[real]) if real.any() else None


def forward_fill(
    values: FloatArray, fallbacks: FloatArray, bad: NDArray[np.bool_] | None = None
) -> FloatArray:
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


@dataclass
class Assembly:
    """Several requests' rows, assembled together for one onnxruntime call.

    Row ``k`` of ``x`` belongs to the request whose ``bounds`` span contains it; ``parts``
    holds each request's own view (its rows, flags and filled values).
    """

    x: FloatArray
    doubtful: NDArray[np.bool_]  # per row: a value was imputed or out of range
    holes: bool  # some value was imputed
    bounds: list[tuple[int, int]]
    parts: list[Assembled]


def assemble_many(model: LoadedModel, parts: Sequence[tuple[Series, Series | None]]) -> Assembly:
    """Rows for several requests at once; each request's lags see only its own window.

    Every request gets what it would get alone: its history (if any) followed by its rows,
    forward filled, padded in front with copies of its oldest row until its first row has
    full history. The requests' segments are stacked and their rows gathered in one pass,
    each lag stopping at its own segment's first row (which is what the padding gives).

    A missing value is carried forward from the last one seen (flag ``imputed``); a row
    whose lags reach before the first known sample repeats the oldest one (flag
    ``missing_history``). Values outside the card's valid range are flagged, not changed.
    """
    h = model.history
    one = len(parts) == 1
    raw = parts[0][0].values if one else np.concatenate([b.values for b, _ in parts])
    gaps = [_gaps(model.gap_s, batch.times) for batch, _ in parts]
    # A long series (a bulk request) is assembled by slices; anything else by one gather.
    bulk = one and gaps[0] is None and len(raw) * len(model.features) > BULK_VALUES
    plausible, imputed, outside = _flags(model, raw)
    holes = not plausible and bool(imputed.any())
    blocks: list[FloatArray] = []  # segment k: request k's history rows (if any), then its rows
    owns: list[FloatArray] = []
    pads: list[int] = []
    at: list[int] = []  # in the stacked segments: each request row ...
    first: list[int] = []  # ... and the first row of its segment
    row = start = 0
    for (batch, history), breaks in zip(parts, gaps, strict=True):
        n = len(batch)
        own = raw[row : row + n]
        kept = 0 if history is None else len(history)
        if history is not None and kept:  # remembered rows are filled already
            blocks.append(history.values)
            if holes:
                own = forward_fill(np.vstack([history.values, own]), model.fallbacks)[kept:]
        elif holes:
            own = forward_fill(own, model.fallbacks, imputed[row : row + n])
        blocks.append(own)
        owns.append(own)
        pads.append(max(0, h - kept))
        if not bulk:
            at.extend(range(start + kept, start + kept + n))
            first.extend(_first_rows(start, kept, n, breaks))
        row += n
        start += kept + n
    if bulk:  # copied at most once here
        stacked = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        if pads[0]:
            stacked = np.concatenate([np.repeat(stacked[:1], pads[0], axis=0), stacked])
        x = model.plan.assemble(stacked)[-len(raw) :]
    else:
        stacked = raw if len(blocks) == len(parts) and not holes else np.concatenate(blocks)
        x = model.plan.assemble_at(
            stacked, np.array(at, dtype=np.intp), np.array(first, dtype=np.intp)
        )
    bounds, assembled = _per_request(parts, pads, owns, x, imputed, outside)
    for part, breaks in zip(assembled, gaps, strict=True):
        if breaks is not None:
            part.after_gap = _after_gap(breaks, len(part.x), h)
    doubtful = np.zeros(len(raw), dtype=bool) if plausible else np.any(imputed | outside, axis=1)
    return Assembly(x, doubtful, holes, bounds, assembled)


def _gaps(gap_s: float | None, times: FloatArray) -> NDArray[np.intp] | None:
    """The rows of a request that come after a gap in time, in order; None when there is
    none (or rows are samples)."""
    breaks = gap_breaks(times, gap_s)
    return breaks if len(breaks) else None


def _segment_starts(breaks: NDArray[np.intp], n: int) -> NDArray[np.intp]:
    """Per row of ``n``: the first row of its segment (0 before the first gap)."""
    at = np.searchsorted(breaks, np.arange(n), side="right")
    return np.where(at > 0, breaks[np.maximum(at - 1, 0)], 0)


def _first_rows(start: int, kept: int, n: int, breaks: NDArray[np.intp] | None) -> list[int]:
    """Per request row, the earliest stacked row its lags may read: its segment's first (the
    history's), or after a gap in time the first row after it."""
    if breaks is None:
        return [start] * n
    after = _segment_starts(breaks, n)  # 0 before the first gap: those rows read the history
    return np.where(after > 0, start + kept + after, start).tolist()  # type: ignore[no-any-return]


def _after_gap(breaks: NDArray[np.intp], n: int, history: int) -> NDArray[np.bool_]:
    """Per row of ``n``: whether its lags (``history`` rows) would reach back over a gap."""
    rows = np.arange(n)
    return np.asarray((rows - _segment_starts(breaks, n) < history) & (rows >= breaks[0]))


def _flags(
    model: LoadedModel, raw: FloatArray
) -> tuple[bool, NDArray[np.bool_], NDArray[np.bool_]]:
    """Whether every value is sent and plausible, and per value: not sent (NaN, to impute)
    and outside its signal's valid range. The usual request is told by one comparison; its
    two flag arrays are then the same all-False array (read only, never written)."""
    if ((raw >= model.low) & (raw <= model.high)).all():  # NaN compares False: not "all"
        nothing = np.zeros(raw.shape, dtype=bool)
        nothing.flags.writeable = False  # shared by both: a write would change the other
        return True, nothing, nothing
    return False, np.isnan(raw), (raw < model.low) | (raw > model.high)  # NaN compares False


def _per_request(
    parts: Sequence[tuple[Series, Series | None]],
    pads: list[int],
    owns: list[FloatArray],
    x: FloatArray,
    imputed: NDArray[np.bool_],
    outside: NDArray[np.bool_],
) -> tuple[list[tuple[int, int]], list[Assembled]]:
    """Each request's rows of the stacked assembly (views, no copies)."""
    bounds: list[tuple[int, int]] = []
    assembled: list[Assembled] = []
    row = 0
    for (batch, _), pad, own in zip(parts, pads, owns, strict=True):
        n = len(own)
        bounds.append((row, row + n))
        assembled.append(
            Assembled(
                x=x[row : row + n],
                padded=min(pad, n),
                imputed=imputed[row : row + n],
                out_of_range=outside[row : row + n],
                filled=Series(batch.times, own),
            )
        )
        row += n
    return bounds, assembled
